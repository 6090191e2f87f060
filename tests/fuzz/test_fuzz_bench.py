"""bench/fuzz_bench.py: the batch figure keeps its call; the sequence-mode figure covers the sequence classes."""

from __future__ import annotations

from bench import fuzz_bench


def test_measure_keeps_its_signature() -> None:
    r = fuzz_bench.measure("verifier", 16, seconds=0.05)
    assert r.descriptors > 0 and r.batches > 0 and r.classes == "all" and r.rate > 0


def test_sequence_mode_figure() -> None:
    r = fuzz_bench.measure_sequence("none", seconds=0.3)
    assert r.classes == ",".join(fuzz_bench.SEQUENCE_CLASSES)
    assert r.batches > 0 and r.batch_rate > 0 and r.rate > 0
    one = fuzz_bench.measure_sequence("verifier", seconds=0.05, classes=("race",))
    assert one.classes == "race" and one.escapes == 0
