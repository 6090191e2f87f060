"""bench/fuzz_bench.py: the batch figure keeps its call; the sequence-mode figure covers the sequence classes."""

from __future__ import annotations

from bench import fuzz_bench


def test_measure_keeps_its_signature() -> None:
    r = fuzz_bench.measure("verifier", 16, iterations=4)
    assert r.descriptors > 0 and r.batches > 0 and r.classes == "all" and r.rate > 0


def test_sequence_mode_figure() -> None:
    r = fuzz_bench.measure_sequence("none", iterations=24)  # three blocks of 8: one per sequence class
    assert r.classes == ",".join(fuzz_bench.SEQUENCE_CLASSES)
    assert r.batches > 0 and r.batch_rate > 0 and r.rate > 0
    one = fuzz_bench.measure_sequence("verifier", iterations=8, classes=("race",))
    assert one.classes == "race" and one.escapes == 0


def test_goal_rows_are_issue_12s_two_fuzzer_rows() -> None:
    rows = fuzz_bench.goal_rows(1.0)  # long enough that a loaded machine still runs a batch
    assert len(rows) == 2
    batch, disk = rows
    assert batch.unit == "desc/s" and batch.goal == 600_000 and batch.baseline == "-" and batch.value > 0
    assert disk.unit == "x" and disk.goal == 0.7 and disk.value > 0
    assert "desc/s" in disk.figure and "in memory" in disk.baseline


def test_disk_campaign_writes_and_verifies_its_log() -> None:
    r = fuzz_bench.measure_disk("verifier", seconds=1.0, classes="kernel-tx", batch=16)
    assert r.descriptors > 0 and r.escapes == 0  # the end check verified the chain and matched every mark


def test_the_on_disk_row_runs_the_same_campaign_both_ways() -> None:
    """The ratio compares like with like: the same blocks, descriptors and escapes in memory and on disk."""
    memory, disk = fuzz_bench.same_campaign(blocks=2, rounds=1)
    assert memory.descriptors == disk.descriptors > 0 and memory.batches == disk.batches
    assert memory.escapes == disk.escapes == 0
