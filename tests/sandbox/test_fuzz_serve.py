"""``nic-sandbox fuzz --serve``: the real command on a free loopback port, asked over HTTP (urllib) while it runs.

The campaign's numbers in the view are checked against the report it
writes; each reproducer downloaded is the file ``fuzz replay`` loads; the
server lingers as asked, a SIGTERM ends the linger with the campaign's own
exit code, and the port and processes are gone afterwards.  Without a
terminal and without ``--serve-linger`` the command ends with its campaign.
"""

from __future__ import annotations

import json
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.needs import IN_CI

if not IN_CI:  # under CI=true the [audit] extra is installed: a missing package fails the command
    pytest.importorskip("uvicorn", reason="fuzz --serve needs uvicorn (pip install 'nic-sandbox[audit]')")

from fuzz import case as case_mod
from sandbox import cli
from tests.processes import children

ROOT = Path(__file__).resolve().parents[2]
NEEDS = "serving beyond this machine needs --serve-allow-remote and a token"
#: Longest wait for the server or the campaign (a hang guard, not a speed assert).
WAIT_S = 60.0


def start(out: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """``fuzz --serve --serve-port 0`` with no terminal; returns the process and the URL it printed on stderr."""
    argv = [sys.executable, "-m", "sandbox", "fuzz", "--protection", "none", "--classes", "kernel-tx,straddle,wrap",
            "--batch", "16", "--out", str(out), "--serve", "--serve-port", "0", "--json", *extra]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], WAIT_S)
    first = proc.stderr.readline() if ready else ""
    found = re.search(r"http://127\.0\.0\.1:\d+/", first)
    if not found:
        proc.kill()
        pytest.fail(f"fuzz --serve did not say where it serves: {first!r} {proc.communicate()[1]}")
    return proc, found.group(0)


def get(url: str) -> tuple[int, bytes]:
    """GET ``url``: (status, body); a refused connection raises ``OSError``."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def until(url: str, test: Any) -> dict[str, Any]:
    """GET ``url`` (JSON) until ``test(answer)`` holds."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            status, body = get(url)
            if status == 200 and test(json.loads(body)):
                return dict(json.loads(body))
        except OSError:
            pass
        if time.monotonic() > deadline:  # a hang guard, not a speed assert
            pytest.fail(f"{url} never answered as expected")
        time.sleep(0.1)


def closed(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_jobs_campaign_is_served_live_lingers_and_stops_on_sigterm(tmp_path: Path) -> None:
    out = tmp_path / "fz"
    proc, url = start(out, "--jobs", "2", "--iterations", "60", "--serve-linger", "120")
    try:
        assert json.loads(get(url + "api/about")[1]) == {"audit": True, "campaign": True}
        assert b"nic-sandbox" in get(url)[1]
        done = until(url + "api/campaign", lambda c: c["state"] == "done")
        report = json.loads((out / "report.json").read_text())
        # the merged progress of two workers is the report's, class by class
        assert done["jobs"] == 2 and done["iterations"] == report["iterations"] == 60
        for row in done["classes"]:
            expected = {k: v for k, v in report["classes"][row["name"]].items() if k != "escapes_in_principle"}
            assert {k: v for k, v in row.items() if k not in ("name", "rate_now")} == expected
        # escapes in the order they arrived from the workers (their download index stays put); the report's order
        # is by (block, iteration)
        findings = {(f["class"], f["kind"]): f for f in report["findings"]}
        assert sorted((e["class"], e["kind"]) for e in done["escapes"]) == sorted(findings)
        for e in done["escapes"]:
            f = findings[e["class"], e["kind"]]
            assert e["case"] == f["case"] and e["minimised"] and e["reproduces"] == f["reproduces"]
            assert get(url + e["download"]) == (200, Path(f["case"]).read_bytes())
            assert case_mod.Case.load(f["case"]).cls == e["class"]  # what `fuzz replay` loads
            assert e["replay"] == f"nic-sandbox fuzz replay {f['case']} --protection none"
        # the campaign's audit log: each worker's, as a set of chains
        status = until(url + "api/status", lambda s: not s["indexing"])
        assert sorted(Path(p).name for p in status["files"]) == ["audit.jsonl.job0", "audit.jsonl.job1"]
        assert proc.poll() is None  # still serving: --serve-linger 120
        proc.send_signal(signal.SIGTERM)
        stdout, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err  # the campaign's code (escapes), not the signal's: the linger was asked to end
    assert json.loads(stdout) == report
    assert "Traceback" not in err and "still serving" in err
    assert closed(url) and children(proc.pid) == []


def test_without_a_terminal_the_server_ends_with_the_campaign(tmp_path: Path) -> None:
    out = tmp_path / "fz"
    proc, url = start(out, "--iterations", "24")
    try:
        stdout, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "still serving" not in err and "Traceback" not in err
    assert json.loads(stdout)["escapes"] > 0 and closed(url)


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--ray"], "--serve: not yet with --ray"),
        (["--serve-host", "0.0.0.0"], "--serve-host 0.0.0.0: not a loopback address; " + NEEDS),
        (["--serve-host", "0.0.0.0", "--serve-allow-remote"], "--serve-allow-remote needs a token"),
        (["--serve-token-file", "/nonexistent/token"], "--serve-token-file /nonexistent/token: No such file"),
        (["--serve-port", "70000"], "--serve-port"),
        (["--serve-linger", "-1"], "--serve-linger"),
    ],
)
def test_bad_serve_flags_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], said: str
) -> None:
    code = cli.main(["fuzz", "--iterations", "1", "--out", str(tmp_path), "--serve", *extra])
    err = capsys.readouterr().err
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = cli.main(["fuzz", "--iterations", "1", "--out", str(tmp_path), "--serve", "--serve-port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and f"--serve-host 127.0.0.1 --serve-port {port}: cannot listen" in err, err
    assert not (tmp_path / "report.json").exists()  # nothing ran
