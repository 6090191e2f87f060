"""Budgets hold: a stopped campaign keeps what it did and says what did not run; one machine is reset, not rebuilt;
a time-bounded campaign keeps time for the audit log's end check (fuzz/budget.py).

No wall clock here (tests/test_project_rules.py): the bounds are arenas alive and records, the figures are in
``make bench`` (bench/fuzz_memory.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fuzz import budget
from fuzz import campaign as campaign_mod
from fuzz.arena import Arena
from fuzz.campaign import run_campaign
from sandbox.flags import open_audit
from verifier.audit.memory import MemoryAudit
from verifier.audit.read import verify
from verifier.modes.protection import Protection


def _after(n: int) -> Any:
    calls = iter(range(10**9))
    return lambda: next(calls) >= n


def test_a_stop_keeps_what_was_done_and_names_the_classes_that_did_not_run() -> None:
    result = run_campaign(
        "none", 1, ["kernel-tx", "straddle", "wrap"], iterations=10**6, stop=_after(4)
    )  # asked before the block and each batch
    assert result.interrupted and not result.audit_checked and result.audit_problems == []
    assert result.iterations == 3 and result.stats["kernel-tx"].batches == 3
    assert result.not_run == ["straddle", "wrap"]
    assert result.findings and result.escapes > 0  # protection none: the first kernel-tx batch escapes


def test_an_uninterrupted_campaign_has_no_class_left_out() -> None:
    result = run_campaign("verifier", 1, ["kernel-tx", "straddle"], iterations=4, batch=8)
    assert not result.interrupted and result.audit_checked and result.not_run == []


def test_one_machine_per_campaign_reset_for_every_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    """use-after-unpin needs the machine as built for every sequence: the campaign's one arena is reset, not rebuilt,
    so memory stays flat (one machine alive per configuration: the default one, and the one without the accelerator
    that odd rounds run on) however many sequences run."""
    built: list[Arena] = []

    class Counting:
        @staticmethod
        def build(*args: Any, **kwargs: Any) -> Arena:
            arena = Arena.build(*args, **kwargs)
            built.append(arena)
            return arena

    monkeypatch.setattr(campaign_mod, "Arena", Counting)
    result = run_campaign("verifier", 1, ["use-after-unpin", "interleave"], iterations=24, arena_every=4)
    assert result.escapes == 0
    assert sorted(a.machine for a in built) == ["", "numpy"]
    assert all(a.snapshot is not None for a in built)
    assert sum(a.snapshot.resets for a in built if a.snapshot is not None) > 6


def test_an_in_memory_sink_reserves_nothing() -> None:
    assert budget.EndCheck(MemoryAudit(), verify).reserve() == 0.0


@pytest.mark.parametrize("schema", [1, 2])
def test_a_file_backed_log_reserves_time_for_its_end_check(tmp_path: Path, schema: int) -> None:
    """The cost per record is measured on a sample of the log, in either schema: a v2 sample ends on a checkpoint
    (cut mid-batch it would not verify, the prior of 120 us a record would be kept, and a campaign writing v2 stopped
    after a fifth of its --seconds)."""
    log = tmp_path / "a.jsonl"
    sink = open_audit(str(log), Protection.VERIFIER, "never", clock="virtual", schema=schema)
    try:
        run_campaign("verifier", 1, ["kernel-tx"], iterations=24, audit=sink)
        check = budget.EndCheck(sink, verify)
        assert sink.next_seq >= budget.SAMPLE_LINES
        reserve = check.reserve()
        assert check.per_record is not None and check.per_record > 0  # measured on a sample of the log
        assert reserve == pytest.approx(sink.next_seq * check.per_record * budget.MARGIN)
    finally:
        sink.close()
    assert verify([log]).ok
