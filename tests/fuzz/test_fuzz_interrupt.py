"""Nothing is lost: Ctrl-C, SIGTERM and SIGKILL during ``nic-sandbox fuzz``, and an --out that cannot be written.

SIGINT and SIGTERM stop the campaign between batches: the report of what
was done is written, marked interrupted, with every finding and its
reproducer, and the exit code is 130 or 143.  A --jobs worker SIGKILLed
stops the others; the report holds what they found, and the exit code is
3.  SIGKILL of the command leaves nothing a chance to write: what was acknowledged before stays intact -- the audit log
verifies up to its last complete record -- and no worker process is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driver.netns import process_alive
from fuzz import case as case_mod
from sandbox import cli
from tests.processes import children
from verifier.audit.read import verify

#: How long a campaign may take to start writing before the test gives up (not a speed assertion).
START_TIMEOUT_S = 60.0


def _fuzz(out: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "sandbox", "fuzz", "--seconds", "600", "--out", str(out), *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(done: object, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not done() and proc.poll() is None and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]
    assert done(), "the campaign never got going"  # type: ignore[operator]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_writes_the_report_so_far_with_every_reproducer(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "fz"
    proc = _fuzz(out, "--protection", "none", "--classes", "kernel-tx,straddle", "--json")
    log = out / "audit.jsonl"
    try:
        _wait_for(log.exists, proc)
        time.sleep(1.0)  # some batches in: escapes found
        proc.send_signal(sig)
        stdout, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    report = json.loads((out / "report.json").read_text())
    assert report == json.loads(stdout)
    assert report["interrupted"] == sig.name
    assert report["findings"], "protection none: kernel-tx escapes from its first batch"
    for finding in report["findings"]:
        assert finding["reproduces"], finding
        assert case_mod.replay(case_mod.Case.load(finding["case"])).escaped
    assert "Interrupted by" in (out / "report.md").read_text()
    assert verify([log]).ok


def test_jobs_stop_together_and_leave_no_worker(tmp_path: Path) -> None:
    out = tmp_path / "fz"
    proc = _fuzz(out, "--protection", "verifier", "--jobs", "2", "--audit-log", str(tmp_path / "a.jsonl"), "--json")
    try:
        _wait_for(lambda: len(children(proc.pid)) >= 2 and (tmp_path / "a.jsonl.job1").exists(), proc)
        workers = children(proc.pid)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        stdout, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    report = json.loads(stdout)
    assert report["interrupted"] == "SIGTERM" and report["escapes"] == 0
    assert sum(c["batches"] for c in report["classes"].values()) > 0
    assert not any(process_alive(pid) for pid in workers)
    for job in (0, 1):
        assert verify([tmp_path / f"a.jsonl.job{job}"]).ok


def test_sigkill_leaves_a_verifiable_log_and_no_worker(tmp_path: Path) -> None:
    out = tmp_path / "fz"
    log = tmp_path / "a.jsonl"
    proc = _fuzz(out, "--protection", "verifier", "--jobs", "2", "--audit-log", str(log))
    try:
        _wait_for(lambda: len(children(proc.pid)) >= 2 and (tmp_path / "a.jsonl.job0").exists(), proc)
        workers = children(proc.pid)
        time.sleep(1.0)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10  # PR_SET_PDEATHSIG: the kernel kills the workers with the parent
    while any(process_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_alive(pid) for pid in workers)
    for job in (0, 1):
        path = tmp_path / f"a.jsonl.job{job}"
        result = verify([path])
        if not result.ok:  # a record torn by the kill: everything before it verifies
            assert "torn" in str(result.problem) and result.records > 0, result.problem
        assert result.records > 0


def test_a_worker_killed_ends_the_campaign_with_what_the_others_found(tmp_path: Path) -> None:
    """A --jobs worker SIGKILLed (the OOM killer's way): the campaign used to wait for it forever (Pool)."""
    out = tmp_path / "fz"
    log = tmp_path / "a.jsonl"
    proc = _fuzz(out, "--protection", "verifier", "--jobs", "2", "--audit-log", str(log), "--json")
    try:
        _wait_for(lambda: len(children(proc.pid)) >= 2 and (tmp_path / "a.jsonl.job1").exists(), proc)
        time.sleep(1.0)
        victim = max(children(proc.pid))  # the second worker (the first fork has the lower pid)
        os.kill(victim, signal.SIGKILL)
        stdout, err = proc.communicate(timeout=120)  # a hang guard, not a speed assert: it used to wait forever
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "died (killed by SIGKILL)" in lines[0] and str(out) in lines[0], err
    report = json.loads(stdout)
    assert report == json.loads((out / "report.json").read_text())
    assert report["interrupted"] == "worker died" and "killed by SIGKILL" in report["worker_died"]
    assert report["jobs"] == 1 and sum(c["batches"] for c in report["classes"].values()) > 0  # the survivor's
    assert children(proc.pid) == [] and not process_alive(victim)
    survivor = [j for j in (0, 1) if verify([tmp_path / f"a.jsonl.job{j}"]).ok]
    assert survivor, "the surviving worker's log verifies"


@pytest.mark.parametrize(
    ("where", "message"),
    [("file/x", "Not a directory"), ("file", "not a directory")],
)
def test_an_out_that_cannot_be_written_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, message: str
) -> None:
    (tmp_path / "file").write_text("")
    code = cli.main(["fuzz", "--iterations", "1000000", "--out", str(tmp_path / where)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_cases_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cases").write_text("")
    code = cli.main(["fuzz", "--iterations", "1000000", "--no-audit-log", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "cases: not a directory" in err, err
