"""The oracle's liveness budget and audit completeness (fuzz/oracle/judge.py), judged without the verifier."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fuzz.arena import RING, Arena
from fuzz.classes import CLASSES, GOOD, MORE, tx_batch
from fuzz.oracle.audit import AuditWatch, audit_complete, refusal_marks
from fuzz.oracle.judge import Oracle
from fuzz.oracle.liveness import Budget, bounded_step
from ring.memory import PhysicalMemory
from tests.fuzz.test_oracle import FakeBatch
from verifier.audit.log import AuditLog
from verifier.audit.memory import MemoryAudit
from verifier.audit.read import verify
from verifier.audit.record import AuditRecord
from verifier.audit.rejection_batch import RecordRows

FAST = Budget(ring=RING, seconds=2.0)


def campaign(
    arena_sink: Any, mode: str, classes: list[str], steps: int = 4, watch: AuditWatch | None = None
) -> list[Any]:
    """A small campaign loop that calls the new checks the way fuzz/campaign.py should."""
    watch = watch if watch is not None else AuditWatch(arena_sink)
    found: list[Any] = []
    for block, name in enumerate(classes):
        arena = Arena.build(mode, 1, arena_sink, detail_limit=4)
        watch.watch(arena)
        rng = np.random.default_rng([1, block])
        for _ in range(steps):
            b = CLASSES[name].generate(rng, arena.map, 64)
            found += bounded_step(arena.oracle, partial(b.run, arena), FAST)
            arena.settle()
    return found + audit_complete(watch)


# -- liveness ---------------------------------------------------------------------------------
def test_a_step_that_raises_is_a_crash_and_a_hang_is_interrupted() -> None:
    oracle = Oracle(PhysicalMemory(1 << 20, 1 << 16, seed=1), {})

    def boom() -> None:
        raise RuntimeError("device fell over")

    assert [e.kind for e in bounded_step(oracle, boom)] == ["crash"]

    def forever() -> None:
        while True:
            pass

    found = bounded_step(oracle, forever, Budget(seconds=0.2))  # returns at all only if the deadline interrupts
    assert found and all(e.kind == "liveness" for e in found) and "interrupted" in found[0].what
    assert oracle.escapes[-1] is found[-1]  # findings also go where settle() reads them


def test_a_fetch_longer_than_a_ring_breaks_the_budget() -> None:
    memory = PhysicalMemory(1 << 20, 1 << 16, seed=1)
    oracle = Oracle(memory, {"nicX": 7})

    def fetch() -> None:
        oracle.on_dma(FakeBatch("nicX", "tx-desc", "read", np.array([(RING + 1) * 16]), np.array([0], np.uint64),
                                np.ones(1, bool)))  # fmt: skip

    found = bounded_step(oracle, fetch, FAST)
    assert [e.kind for e in found] == ["liveness"] and f"fetched {RING + 1} descriptors" in found[0].what
    assert bounded_step(oracle, lambda: None, FAST) == []  # the counts are per step


@pytest.mark.parametrize("mode", ["none", "verifier", "unsafe-inplace", "iommu"])
def test_hostile_rings_finish_bounded(mode: str) -> None:
    """A packet that never ends (no EOP, ever), one fragment per doorbell around the ring, and tails beyond it."""
    sink = MemoryAudit()
    arena = Arena.build(mode, 1, sink)
    watch = AuditWatch(sink)
    watch.watch(arena)
    pin = arena.map.read_pin.bus
    one = tx_batch([pin], [64], MORE)
    steps: list[Callable[[], None]] = [partial(arena.tx, tx_batch(np.full(255, pin, np.uint64), 64, MORE))]  # no EOP
    steps += [partial(arena.tx, one) for _ in range(2 * RING)]  # and on, one fragment a doorbell, around the ring
    steps += [partial(arena.tx, tx_batch([pin], [64], GOOD), t) for t in (RING, RING + 1, 0xFFFF, 2**32 - 1)]
    steps += [partial(arena.tx, tx_batch(np.full(200, pin, np.uint64), 64, GOOD))]  # the ring still works after
    most = 0
    for step in steps:
        found = bounded_step(arena.oracle, step, FAST)
        assert found == [], found
        most = max(most, arena.oracle.work.max_fetch)
        assert arena.settle() == []
    assert 0 < most <= RING  # every step also kept the FAST budget's wall-clock bound, judged by bounded_step
    assert audit_complete(watch) == []


# -- audit completeness -----------------------------------------------------------------------
def test_refusal_marks_are_read_from_the_tenants_ring() -> None:
    sink = MemoryAudit()
    arena = Arena.build("verifier", 1, sink)
    arena.tx(tx_batch([arena.map.kernel.phys, arena.map.read_pin.bus], [64, 64]))
    assert refusal_marks("tx", arena.tx_ring).tolist() == [0]
    arena.rx(np.array([arena.map.kernel.phys, arena.map.write_pin.bus], dtype=np.uint64))
    assert refusal_marks("rx", arena.rx_ring).tolist() == [0]


@pytest.mark.parametrize("mode", ["verifier", "unsafe-inplace", "iommu", "none"])
def test_every_refusal_has_exactly_one_record(mode: str) -> None:
    sink = MemoryAudit()
    watch = AuditWatch(sink)
    assert campaign(sink, mode, list(CLASSES), watch=watch) == []
    if mode in ("verifier", "unsafe-inplace"):
        assert sum(watch.marks.values()) > 100


class LossySink(MemoryAudit):
    """Drops the ``lose``-th record: it returns a seq, but neither stores nor counts it."""

    def __init__(self, lose: int) -> None:
        super().__init__()
        self.lose = lose
        self.calls = 0

    def record(self, entry: AuditRecord) -> int:
        self.calls += 1
        if self.calls == self.lose:
            return self.seq
        return super().record(entry)

    def record_batch(self, batch: RecordRows) -> Any:
        return [self.record(entry) for entry in batch.records()]


def test_a_sink_that_loses_a_record_fails_the_check() -> None:
    sink = LossySink(lose=3)
    found = campaign(sink, "verifier", ["kernel-tx"], steps=1)
    assert found and {e.kind for e in found} == {"audit"}, found
    assert "refused in the ring" in found[0].what


def test_counters_must_equal_records() -> None:
    sink = MemoryAudit()
    watch = AuditWatch(sink)
    assert campaign(sink, "verifier", ["kernel-tx"], steps=1, watch=watch) == []
    sink.records.pop()  # a record vanishes after it was counted
    found = audit_complete(watch)
    assert {e.kind for e in found} == {"audit"}
    assert any("counters do not equal records" in e.what for e in found), found


def test_file_backed_log_chain_and_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with pytest.raises(ValueError, match="verify"):
        AuditWatch(AuditLog(tmp_path / "other.jsonl", "verifier", fsync="never"))
    log = AuditLog(path, "verifier", fsync="never", rotate_bytes=64 << 10)
    watch = AuditWatch(log, verify=verify)
    assert campaign(log, "verifier", ["kernel-tx", "kernel-rx", "ring-index"], steps=3, watch=watch) == []
    assert len(list(tmp_path.glob("audit.jsonl.*"))) >= 1  # rotated: the check followed the chain across files
    log.commit()
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3] + lines[4:]))  # delete one record
    found = audit_complete(watch)
    assert [e.kind for e in found] == ["audit"] and "does not verify" in found[0].what
    log.close()


def test_file_backed_log_missing_records_are_found(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", "verifier", fsync="never")
    watch = AuditWatch(log, verify=verify)
    campaign(log, "verifier", ["kernel-tx"], steps=2, watch=watch)
    watch.marks[("nic2", "tx", 0, 999)] += 1  # a refusal the oracle saw that no record names
    found = audit_complete(watch)
    assert [e.kind for e in found] == ["audit"] and "1 refused descriptors without a record" in found[0].what
    log.close()
