"""Refusals in bulk (verifier/audit/: rejection_batch.py, lazy_records.py, memory.py): the same records, built later.

A ``MemoryAudit`` takes a doorbell's rejected descriptors (and a DMA batch's
IOMMU faults) as one batch and builds record dicts only when they are read.
These tests hold the lazy path to the eager one: the same records, seq
numbers and counters as one ``record()`` call per row, and the same
behaviour as the bounded deque it replaced.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ring.descriptors import RX_DESC, TX_DESC
from ring.memory import OWNER_FREE, OWNER_KERNEL
from verifier.audit.lazy_records import LazyRecords, RecordSpan
from verifier.audit.log import AuditLog
from verifier.audit.memory import MemoryAudit
from verifier.audit.read import read_records, verify
from verifier.audit.record import AuditRecord
from verifier.audit.rejection_batch import IommuFaultBatch, RecordRows, RejectionBatch
from verifier.audit.rejections import record_rows
from verifier.rules import reasons as R
from verifier.rules.checks import NO_OWNER, OWNER_SELF_UNPINNED


class EagerAudit(MemoryAudit):
    """A MemoryAudit that takes every batch row by row: the reference."""

    def record_batch(self, batch: RecordRows) -> Any:
        return [self.record(entry) for entry in batch.records()]


def tx_batch(n: int = 6, seed: int = 1, extra: dict[str, Any] | None = None) -> RejectionBatch:
    """Rejected TX descriptors with every kind of detail: no address problem, a byte >= 2**63, all owner labels."""
    rng = np.random.default_rng(seed)
    descs = np.zeros(n, dtype=TX_DESC)
    descs["addr"] = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)
    descs["length"] = rng.integers(0, 1 << 16, n)
    descs["cmd"] = rng.integers(0, 256, n)
    owners = [NO_OWNER, OWNER_SELF_UNPINNED, OWNER_FREE, OWNER_KERNEL, 2, 5]
    codes = [R.ADDR_NOT_PINNED, R.LEN_ZERO, R.ADDR_WRAP, R.ACCESS_NO_READ, R.PKT_BAD_FRAGMENT, R.CSUM_OFFSET]
    return RejectionBatch(
        tenant=2,
        tenant_name="mallory",
        nic="nic2",
        queue=0,
        kind="tx",
        ring_index=rng.permutation(max(n, 64))[:n].astype(np.int64),
        reason=np.array([codes[i % len(codes)] for i in range(n)], dtype=np.uint8),
        bad_byte=np.array([-1, 0x1234, -2, 2**62, -1, 77][:n] * (n // 6 + 1), dtype=np.int64)[:n],
        owner=np.array([owners[i % len(owners)] for i in range(n)], dtype=np.int32),
        descs=descs,
        extra=extra,
    )


def fault_batch(n: int = 4, write: bool = True) -> IommuFaultBatch:
    iova = np.arange(n, dtype=np.uint64) * np.uint64(4096) + np.uint64(0x7F00_0000)
    reason = np.where(np.arange(n) % 2 == 0, R.IOMMU_NOT_MAPPED, R.IOMMU_PERMISSION).astype(np.uint8)
    return IommuFaultBatch(3, "eve", "nic2", iova, np.full(n, 64, dtype=np.int64), write, reason)


def both(*batches: Any) -> tuple[MemoryAudit, EagerAudit]:
    lazy, eager = MemoryAudit(), EagerAudit()
    for sink in (lazy, eager):
        sink.record(AuditRecord(tenant=1, tenant_name="bob", nic="nic1", queue=None, kind="register", ring_index=None,
                    raw=None, fields=None, reason="REG_NOT_DOORBELL", detail={"rule": "x"}))  # fmt: skip
        for b in batches:
            assert list(record_rows(sink, b)) == list(range(sink.seq - len(b), sink.seq))
    return lazy, eager


# -- lazy records equal eager ones ------------------------------------------------------------------
def test_lazy_records_equal_eager_ones() -> None:
    rx = dataclasses.replace(tx_batch(5, seed=2, extra={"checked_bytes": 2048}), kind="rx",
                             descs=tx_batch(5, seed=2).descs.view(RX_DESC))  # fmt: skip
    lazy, eager = both(tx_batch(), fault_batch(), rx, fault_batch(3, write=False))
    assert isinstance(lazy.records, LazyRecords) and len(lazy.records) == len(eager.records) == 1 + 6 + 4 + 5 + 3
    assert list(lazy.records) == list(eager.records)
    assert [r["seq"] for r in lazy.records] == list(range(19))
    assert [lazy.records[i] for i in range(-19, 19)] == [eager.records[i] for i in range(-19, 19)]
    assert list(reversed(lazy.records)) == list(reversed(list(eager.records)))
    assert lazy.counters == eager.counters and lazy.kind_counters == eager.kind_counters


def test_a_record_carries_every_detail() -> None:
    lazy, _ = both(tx_batch(6, extra={"neutralised_in_place": True}))
    recs = list(lazy.records)[1:]
    assert [r["detail"].get("owner") for r in recs] == [None, "own-unpinned", "free", "kernel", "own", "tenant5"]
    assert recs[2]["detail"]["first_bad_byte"] == f"{2**64 - 2:#x}"  # a byte >= 2**63 is shown unsigned
    assert "first_bad_byte" not in recs[0]["detail"] and recs[1]["detail"]["frame"] == 0x1234 >> 12
    assert all(
        r["detail"]["neutralised_in_place"] is True
        and len(r["desc_hex"]) == 32
        and list(r["desc"]) == list(TX_DESC.names or ())
        for r in recs
    )
    assert recs[0]["detail"]["rule"] == R.BY_CODE[R.ADDR_NOT_PINNED].rule


def test_counters_equal_records() -> None:
    lazy, _ = both(tx_batch(40, seed=3), fault_batch(9), tx_batch(17, seed=4))
    assert Counter((r["nic"], r["queue"], r["reason"]) for r in lazy.records) == lazy.counters
    assert Counter((r["nic"], r["kind"], r["queue"], r["reason"]) for r in lazy.records) == lazy.kind_counters
    assert sum(lazy.statistics("nic2", 0, "tx").values()) == 57
    assert lazy.statistics("nic2", None, "iommu") == {"IOMMU_NOT_MAPPED": 5, "IOMMU_PERMISSION": 4}


def test_the_file_log_gets_the_same_records(tmp_path: Path) -> None:
    """AuditLog takes the same batches (its own ``record_batch``, one hash per record) and writes the same records."""
    lazy, _ = both(tx_batch(), fault_batch())
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, "verifier", fsync="never") as log:
        log.record(AuditRecord(tenant=1, tenant_name="bob", nic="nic1", queue=None, kind="register", ring_index=None,
                   raw=None, fields=None, reason="REG_NOT_DOORBELL", detail={"rule": "x"}))  # fmt: skip
        assert list(record_rows(log, tx_batch())) == list(range(1, 7))
        assert list(record_rows(log, fault_batch())) == list(range(7, 11))
        assert log.counters == dict(lazy.counters)
    assert verify([path]).ok
    written = [{k: r[k] for k in lazy.records[0]} for r in read_records([path])]
    assert written == list(lazy.records)


# -- the store behaves as the bounded deque it replaced ---------------------------------------------
@pytest.mark.parametrize("keep", [0, 1, 5, 13, 40])
def test_bounded_like_a_deque(keep: int) -> None:
    rnd = random.Random(keep)
    lazy, ref = MemoryAudit(keep=keep), deque[dict[str, Any]](maxlen=keep)
    eager = EagerAudit(keep=10_000)
    for step in range(60):
        roll = rnd.random()
        if roll < 0.5:
            b = tx_batch(rnd.randrange(1, 9), seed=step)
            record_rows(lazy, b), record_rows(eager, b)
            ref.extend(list(eager.records)[-len(b) :])
        elif roll < 0.8:
            kw: dict[str, Any] = {"tenant": 0, "tenant_name": "a", "nic": "nic0", "queue": 0, "kind": "tx",
                                  "ring_index": step, "raw": None, "fields": None, "reason": "LEN_ZERO",
                                  "detail": {}}  # fmt: skip
            lazy.record(AuditRecord(**kw)), eager.record(AuditRecord(**kw))
            ref.append(eager.records[-1])
        elif roll < 0.9 and ref:
            assert lazy.records.pop() == ref.pop()
        elif ref:
            assert lazy.records.popleft() == ref.popleft()
        assert len(lazy.records) == len(ref) and lazy.records.maxlen == keep
        assert list(lazy.records) == list(ref)
        if ref:
            assert lazy.records[0] == ref[0] and lazy.records[-1] == ref[-1]
    with pytest.raises(IndexError):
        lazy.records[len(ref)]
    lazy.records.clear()
    assert len(lazy.records) == 0 and list(lazy.records) == []
    with pytest.raises(IndexError):
        lazy.records.pop()


def test_since_gives_columns_for_batches_and_dicts_for_single_records() -> None:
    lazy, _ = both(tx_batch(6), fault_batch(4), tx_batch(3, seed=9))
    items = lazy.since(3)  # from the middle of the first batch
    assert [type(i) for i in items] == [RecordSpan, RecordSpan, RecordSpan]
    first, faults, last = items
    assert isinstance(first, RecordSpan) and isinstance(faults, RecordSpan) and isinstance(last, RecordSpan)
    assert (first.seq, len(first), faults.seq, len(faults), last.seq) == (3, 4, 7, 4, 11)
    assert first.ring_index is not None and first.ring_index.tolist() == tx_batch(6).ring_index[2:].tolist()
    assert faults.ring_index is None and faults.queue is None and faults.kind == "iommu"
    assert [first.names[c] for c in first.reason.tolist()] == [r["reason"] for r in list(lazy.records)[3:7]]
    assert isinstance(lazy.since(0)[0], dict) and lazy.since(lazy.seq) == []
    small = MemoryAudit(keep=5)
    record_rows(small, tx_batch(6))
    assert sum(len(i) for i in small.since(0)) == 5  # evicted records are absent: the reader counts


def test_threads_record_and_read_at_once() -> None:
    """The device thread (faults) and a tenant thread (doorbells) record while the oracle reads ``since``."""
    sink = MemoryAudit(keep=50)
    doorbell, faults = tx_batch(5), fault_batch(3)
    errors: list[BaseException] = []

    def run(batch: Any) -> None:
        try:
            for _ in range(300):
                record_rows(sink, batch)
        except BaseException as err:  # a thread's failure must reach the assertion below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(b,)) for b in (doorbell, faults)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        held = sink.since(0)
        assert sum(len(i) if isinstance(i, RecordSpan) else 1 for i in held) <= 50
        sink.statistics("nic2", 0, "tx")
    for t in threads:
        t.join()
    assert errors == [] and sink.seq == 300 * (5 + 3) and sum(sink.counters.values()) == sink.seq
    assert [r["seq"] for r in sink.records] == list(range(sink.seq - 50, sink.seq))
