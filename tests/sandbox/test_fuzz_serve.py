"""``nic-sandbox fuzz --serve``: the real command on a free loopback port, asked over HTTP (urllib) while it runs.

The campaign's numbers in the view are checked against the report it
writes; each reproducer downloaded is the file ``fuzz replay`` loads; the
server lingers as asked, a SIGTERM ends the linger with the campaign's own
exit code, and the port and processes are gone afterwards.  Without a
terminal and without ``--serve-linger`` the command ends with its campaign.
With ``--ray`` (a real local cluster, confined as in tests/fuzz/cluster/)
the numbers streamed by the Ray driver end equal to the report.
"""

from __future__ import annotations

import contextlib
import json
import os
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
from tests.fuzz.cluster.rayprocs import descendants, ray_processes
from tests.needs import need_module, need_root
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
                            text=True, env={**os.environ, "PYTHONFAULTHANDLER": "1"})  # fmt: skip
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


def until(url: str, test: Any, proc: subprocess.Popen[str]) -> dict[str, Any]:
    """GET ``url`` (JSON) until ``test(answer)`` holds; past ``WAIT_S`` the test fails with what the command was
    doing (``hung``)."""
    deadline = time.monotonic() + WAIT_S
    last: Any = None
    while True:
        try:
            status, body = get(url)
            last = (status, body[:2000])
            if status == 200 and test(json.loads(body)):
                return dict(json.loads(body))
        except OSError as e:
            last = e
        if time.monotonic() > deadline:  # a hang guard, not a speed assert
            pytest.fail(f"{url} never answered as expected; last answer {last!r}\n{hung(proc)}")
        time.sleep(0.1)


def hung(proc: subprocess.Popen[str]) -> str:
    """Every thread's stack of the command and of each process below it (faulthandler, on SIGABRT: ``start`` sets
    PYTHONFAULTHANDLER), then the command's stderr: what a hang was waiting for."""
    pids = [proc.pid]
    for pid in pids:  # breadth first: the server, the --jobs workers, anything they started
        pids += children(pid)
    for pid in reversed(pids):  # one at a time: their stacks go to one pipe
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGABRT)
        time.sleep(0.5)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return f"processes {pids}; stderr:\n{err[-20000:]}"


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
        done = until(url + "api/campaign", lambda c: c["state"] == "done", proc)
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
        status = until(url + "api/status", lambda s: not s["indexing"], proc)
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


def test_ray_campaign_is_served_live_and_ends_equal_to_its_report(tmp_path: Path) -> None:
    need_module("ray", "nic-sandbox[ray]")
    need_root("a private network namespace for the local Ray cluster")
    out = tmp_path / "fz"
    # --serve-linger: the last view is read once the report is written (with 0 the port closes then), then SIGTERM
    proc, url = start(out, "--ray", "--jobs", "2", "--iterations", "600", "--coverage", "--serve-linger", "120")
    seen: list[dict[str, Any]] = []
    early: dict[str, bytes] = {}  # reproducers downloaded while the campaign ran (the cases as they arrived)
    mine: set[int] = set()  # the Ray processes under the command (its cluster); others on the machine are not ours
    try:

        def watch(c: dict[str, Any]) -> bool:
            seen.append(c)
            mine.update(descendants(proc.pid) & {p for p, _ in ray_processes()})
            for e in c["escapes"] if c["state"] == "running" else []:
                if e["download"] and e["file"] not in early:
                    status, body = get(url + e["download"])
                    assert status == 200, body
                    early[e["file"]] = body
            return bool(c["state"] == "done")

        done = until(url + "api/campaign", watch, proc)
        report = json.loads((out / "report.json").read_text())
        downloads = {e["case"]: get(url + e["download"]) for e in done["escapes"]}
        status = until(url + "api/status", lambda s: not s["indexing"], proc)  # the two workers' audit logs, as a set
        assert sorted(Path(p).name for p in status["files"]) == ["audit.jsonl.job0", "audit.jsonl.job1"]
        proc.send_signal(signal.SIGTERM)
        stdout, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        left = time.monotonic() + 10
        while {p for p, _ in ray_processes()} & mine and time.monotonic() < left:
            time.sleep(0.2)
        leftover = {p for p, _ in ray_processes()} & mine
        for pid in leftover:  # only those this test started, by id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 1, err
    assert json.loads(stdout) == report and "Traceback" not in err
    assert mine and leftover == set(), "the local cluster was not shut down"
    # the driver's last report is the view's (no count is taken from the merged result): equal to report.json
    assert done["jobs"] == 2 == report["ray"]["workers"] and done["iterations"] == report["iterations"] == 600
    for row in done["classes"]:
        expected = {k: v for k, v in report["classes"][row["name"]].items() if k != "escapes_in_principle"}
        assert {k: v for k, v in row.items() if k not in ("name", "rate_now")} == expected
    assert done["coverage"] == report["coverage"]["lines"] > 0
    # while it ran the counts only grew, never past the report's (a block is counted once)
    generated = [c["totals"]["generated"] for c in seen if c["state"] == "running"]
    assert generated == sorted(generated) and generated[-1] <= report["descriptors"]
    findings = {(f["class"], f["kind"]): f for f in report["findings"]}
    assert sorted((e["class"], e["kind"]) for e in done["escapes"]) == sorted(findings)
    for e in done["escapes"]:
        f = findings[e["class"], e["kind"]]
        assert e["case"] == f["case"] and e["reproduces"] == f["reproduces"] is True
        assert case_mod.Case.load(f["case"]).cls == e["class"]
        assert e["replay"] == f"nic-sandbox fuzz replay {f['case']} --protection none"
        assert downloads[f["case"]] == (200, Path(f["case"]).read_bytes())
    for name, body in early.items():  # each is a case `fuzz replay` loads
        assert case_mod.Case.from_dict(json.loads(body)).protection.value == "none", name
    assert closed(url) and children(proc.pid) == []
