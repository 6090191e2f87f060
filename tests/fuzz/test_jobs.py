"""``--jobs N``: disjoint blocks in worker processes, merged; the same seed and job count reproduce the counts."""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from fuzz.campaign import ProgressInfo, run_campaign
from fuzz.jobs import WorkerDied, how_it_ended, merge, run_jobs
from sandbox import cli
from verifier.audit.memory import MemoryAudit
from verifier.audit.rejections import AuditSink


def test_jobs_merge_equals_one_process_and_reproduces() -> None:
    one = run_campaign("none", 1, classes="kernel-tx,straddle,wrap", iterations=12, batch=32)
    two = run_jobs("none", 1, "kernel-tx,straddle,wrap", 2, iterations=12, batch=32)
    again = run_jobs("none", 1, "kernel-tx,straddle,wrap", 2, iterations=12, batch=32)
    assert two.jobs == 2 and two.iterations == 12
    assert two.as_dict() == again.as_dict()  # same seed, same job count: same merged campaign
    assert {k: v for k, v in two.as_dict().items() if k != "findings"} == {
        k: v for k, v in one.as_dict().items() if k != "findings"
    }
    assert [f.key for f in two.findings] == [f.key for f in one.findings]  # deduplicated by (class, kind)
    assert len({f.key for f in two.findings}) == len(two.findings) > 0


def test_progress_of_one_process_carries_what_the_web_view_needs() -> None:
    seen: list[ProgressInfo] = []
    result = run_campaign("none", 1, classes="kernel-tx,straddle", iterations=8, batch=16, coverage=True,
                          progress=seen.append)  # fmt: skip
    last = seen[-1]
    assert {name: s.as_dict() for name, s in last.stats.items()} == {
        name: s.as_dict() for name, s in result.stats.items()
    }
    assert [f.key for f in last.findings] == [f.key for f in result.findings] and last.findings
    assert last.coverage == len(result.coverage or ()) > 0
    assert seen[0].stats is not last.stats and all(s is not result.stats[n] for n, s in last.stats.items())


def test_jobs_progress_is_merged_from_the_workers() -> None:
    seen: list[ProgressInfo] = []
    result = run_jobs("none", 1, "kernel-tx,straddle,wrap", 2, iterations=12, batch=32, progress=seen.append)
    last = seen[-1]
    assert last.iterations == result.iterations == 12 and last.descriptors == result.descriptors
    assert {name: s.as_dict() for name, s in last.stats.items()} == {
        name: s.as_dict() for name, s in result.stats.items()
    }
    assert sorted(f.key for f in last.findings) == sorted(f.key for f in result.findings)
    assert last.coverage is None  # coverage off


def test_jobs_with_coverage_are_deterministic() -> None:
    a = run_jobs("verifier", 4, "straddle,race", 2, iterations=12, batch=16, coverage=True)
    b = run_jobs("verifier", 4, "straddle,race", 2, iterations=12, batch=16, coverage=True)
    assert a.coverage and a.kept and a.as_dict() == b.as_dict() and a.coverage == b.coverage


def test_workers_run_disjoint_blocks() -> None:
    parts = [
        run_campaign("verifier", 2, classes="kernel-tx", iterations=8, batch=8, arena_every=1, job=j, jobs=3)
        for j in range(3)
    ]
    assert [p.iterations for p in parts] == [3, 3, 2]  # blocks 0,3,6 / 1,4,7 / 2,5
    merged = merge(parts)
    assert merged.iterations == 8 and merged.stats["kernel-tx"].generated == 64
    whole = run_campaign("verifier", 2, classes="kernel-tx", iterations=8, batch=8, arena_every=1)
    assert merged.as_dict()["classes"] == whole.as_dict()["classes"]
    with pytest.raises(ValueError, match="job must be"):
        run_campaign("verifier", 2, iterations=1, job=3, jobs=3)


def test_cli_jobs_audit_log_per_worker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "audit.jsonl"
    args = ["fuzz", "--protection", "verifier", "--iterations", "16", "--batch", "16", "--jobs", "2"]
    code = cli.main([*args, "--out", str(tmp_path), "--audit-log", str(log), "--json"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["jobs"] == 2 and report["audit_logs"] == [f"{log}.job0", f"{log}.job1"]
    rejected = sum(c["rejected"] for c in report["classes"].values())
    lines = [line for p in report["audit_logs"] for line in Path(p).read_text().splitlines()]
    records = [line for line in lines if '"checkpoint":' not in line]  # schema v2: a checkpoint line per batch
    assert rejected > 0 and len(records) == rejected  # one record per rejection, over the workers' logs


def test_cli_jobs_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["fuzz", "--jobs", "0"]) == 2
    err = capsys.readouterr().err
    assert "--jobs must be between" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["fuzz", "replay", "x.json", "--jobs", "2"]) == 2
    assert "unrecognized arguments: --jobs 2" in capsys.readouterr().err


class _Marking(MemoryAudit):
    """A worker's sink that leaves ``marker`` once the oracle has read it a few times (the worker is batches in)."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = marker
        self.reads = 0

    def records_of(self, *args: Any, **kwargs: Any) -> int:
        self.reads += 1
        if self.reads == 20:
            self.marker.touch()
        return super().records_of(*args, **kwargs)


def _dies_as(job: int, victim: int, how: str, marker: Path) -> AuditSink:
    """An audit factory (run in the worker): worker ``victim`` ends (SIGKILLed or ``os._exit``) once the other
    worker has done some batches (its marker), so what the survivor found is there to keep."""
    if job != victim:
        return _Marking(marker)
    deadline = time.monotonic() + 60  # a hang guard, not a speed assert
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(7)


@pytest.mark.parametrize(("how", "said"), [("kill", "killed by SIGKILL"), ("exit", "exit code 7")])
def test_a_dead_worker_is_raised_with_what_the_others_found(tmp_path: Path, how: str, said: str) -> None:
    factory = functools.partial(_dies_as, victim=1, how=how, marker=tmp_path / "busy")
    with pytest.raises(WorkerDied) as raised:
        run_jobs("none", 1, "kernel-tx,straddle", 2, iterations=4000, batch=16, audit_factory=factory)
    died = raised.value
    assert died.job == 1 and said in str(died)
    assert died.partial is not None and died.partial.interrupted and not died.partial.audit_checked
    assert died.partial.jobs == 1 and 0 < died.partial.iterations < 4000 and died.partial.findings


def test_every_worker_dead_leaves_no_partial() -> None:
    with pytest.raises(WorkerDied) as raised:
        run_jobs("none", 1, "kernel-tx", 2, iterations=4, batch=16, audit_factory=_both_die)
    assert raised.value.partial is None and "exit code 9" in str(raised.value)


def _both_die(job: int) -> AuditSink:
    os._exit(9)


def test_a_workers_exception_reaches_the_parent() -> None:
    with pytest.raises(ValueError, match="no such class"):
        run_jobs("none", 1, "kernel-tx", 2, iterations=4, batch=16, audit_factory=_raises)


def _raises(job: int) -> AuditSink:
    raise ValueError(f"no such class in worker {job}")


def test_how_a_process_ended_in_words() -> None:
    assert how_it_ended(-9) == "killed by SIGKILL" and how_it_ended(3) == "exit code 3"
    assert how_it_ended(None) == "still running" and how_it_ended(-200) == "killed by signal 200"
