"""An audit sink that keeps records in memory: for tests, benchmarks and the fuzzer's inner loop.

It counts exactly like the file-backed AuditLog (``AuditCounters``: per
NIC, queue and reason) and keeps the most recent records in a bounded store
(``LazyRecords``), so a flood of rejections cannot exhaust memory.  It is
not durable: anything that must survive a crash belongs in
verifier/audit/log.py's AuditLog.

A doorbell's rejected descriptors (and a DMA batch's IOMMU faults) arrive
as one ``RecordRows`` batch (``record_batch``): the counters grow once per
reason, the batch is kept as columns, and a record dict is built only when
someone reads it.  Seq numbers, counters and records are exactly those of
one ``record()`` call per row.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

from verifier.audit.lazy_records import LazyRecords, RecordSpan, as_record
from verifier.audit.record import AuditCounters, AuditRecord, CounterKey, KindKey
from verifier.audit.rejection_batch import RecordRows, reason_counts


class MemoryAudit:
    """The newest ``keep`` records in memory, every record counted (``AuditSink``)."""

    def __init__(self, keep: int = 100_000) -> None:
        self.records = LazyRecords(maxlen=keep)
        self.tally = AuditCounters()
        self.seq = 0
        self.commits = 0
        # the device thread (IOMMU faults) and tenant threads (doorbells) may record at once, as with AuditLog
        self._lock = threading.Lock()

    def record(self, entry: AuditRecord) -> int:
        with self._lock:
            seq = self.seq
            self.seq += 1
            self.tally.add_record(entry)
            self.records.append(as_record(seq, entry))
        return seq

    def record_batch(self, batch: RecordRows) -> range:
        """One record per row of ``batch``, seq numbers in row order; returns them."""
        counts = reason_counts(batch)
        with self._lock:
            first = self.seq
            self.seq += len(batch)
            self.tally.add(batch.nic, batch.kind, batch.queue, counts)
            self.records.add_batch(first, batch)
            return range(first, self.seq)

    def since(self, seq: int) -> list[dict[str, Any] | RecordSpan]:
        """The held records from ``seq`` on, batches as column spans (``LazyRecords.since``).

        Under the lock: the store's chunks are walked and narrowed (eviction) in Python steps, and
        the device thread may record an IOMMU fault meanwhile.
        """
        with self._lock:
            return self.records.since(seq)

    def commit(self) -> None:
        self.commits += 1

    def close(self) -> None:
        """Nothing to write: memory is all there is."""
        self.commit()

    @property
    def next_seq(self) -> int:
        return self.seq

    @property
    def path(self) -> Path | None:
        """No file: the records are here only."""
        return None

    @property
    def capacity(self) -> int | None:
        """How many of the newest records ``since`` can show (``keep``)."""
        return self.records.maxlen

    @property
    def counters(self) -> Counter[CounterKey]:
        """Records taken, keyed by ``(nic, queue, reason)`` (a copy)."""
        with self._lock:
            return Counter(self.tally.by_queue)

    @property
    def kind_counters(self) -> Counter[KindKey]:
        """Records taken, keyed by ``(nic, kind, queue, reason)`` (a copy)."""
        with self._lock:
            return Counter(self.tally.by_kind)

    def statistics(self, nic: str | None, queue: int | None, kind: str | None = None) -> dict[str, int]:
        """Per-reason counts of one queue (as ``AuditLog.statistics``); under the lock, as a recorder may add a key."""
        with self._lock:
            return self.tally.statistics(nic, queue, kind)

    def records_of(self, nic: str | None, queue: int | None, kind: str) -> int:
        """Records of one queue and kind, every reason (``AuditCounters.records``): a counter read, no dict built."""
        with self._lock:
            return self.tally.records(nic, queue, kind)
