"""``--jobs N``: disjoint blocks in worker processes, merged; the same seed and job count reproduce the counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fuzz.campaign import ProgressInfo, run_campaign
from fuzz.jobs import merge, run_jobs
from sandbox import cli


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
