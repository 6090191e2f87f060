"""An audit sink that keeps records in memory: for tests, benchmarks and the fuzzer's inner loop.

It counts exactly like the file-backed AuditLog (per NIC, queue and reason)
and keeps the most recent records in a bounded store (``LazyRecords``), so
a flood of rejections cannot exhaust memory.  It is not durable: anything
that must survive a crash belongs in verifier/audit/log.py's AuditLog.

A doorbell's rejected descriptors (and a DMA batch's IOMMU faults) arrive
as one ``RecordRows`` batch (``record_batch``): the counters grow once per
reason, the batch is kept as columns, and a record dict is built only when
someone reads it.  Seq numbers, counters and records are exactly those of
one ``record()`` call per row.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from verifier.audit.lazy_records import LazyRecords, RecordSpan, as_record
from verifier.audit.rejection_batch import RecordRows, reason_counts


class MemoryAudit:
    def __init__(self, keep: int = 100_000) -> None:
        self.records = LazyRecords(maxlen=keep)
        self.counters: Counter[tuple[str | None, int | None, str]] = Counter()
        self.kind_counters: Counter[tuple[str | None, str, int | None, str]] = Counter()
        self.seq = 0
        self.commits = 0
        # the device thread (IOMMU faults) and tenant threads (doorbells) may record at once, as with AuditLog
        self._lock = threading.Lock()

    def record(
        self,
        *,
        tenant: int,
        tenant_name: str,
        nic: str | None,
        queue: int | None,
        kind: str,
        ring_index: int | None,
        raw: bytes | None,
        fields: dict[str, Any] | None,
        reason: str,
        detail: dict[str, Any],
    ) -> int:
        row = {
            "tenant": tenant,
            "tenant_name": tenant_name,
            "nic": nic,
            "queue": queue,
            "kind": kind,
            "ring_index": ring_index,
            "raw": raw,
            "fields": fields,
            "reason": reason,
            "detail": detail,
        }
        with self._lock:
            seq = self.seq
            self.seq += 1
            self.counters[(nic, queue, reason)] += 1
            self.kind_counters[(nic, kind, queue, reason)] += 1
            self.records.append(as_record(seq, row))
        return seq

    def record_batch(self, batch: RecordRows) -> range | list[int]:
        """One record per row of ``batch``, seq numbers in row order; returns them.

        A subclass that overrides ``record`` (to watch or alter each record)
        gets one ``record`` call per row instead, so it still sees every record.
        """
        if type(self).record is not MemoryAudit.record:
            return [self.record(**row) for row in batch.arguments()]
        counts = reason_counts(batch)
        nic, kind, queue = batch.nic, batch.kind, batch.queue
        with self._lock:
            first = self.seq
            self.seq += len(batch)
            for reason, n in counts.items():
                self.counters[(nic, queue, reason)] += n
                self.kind_counters[(nic, kind, queue, reason)] += n
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

    def statistics(self, nic: str | None, queue: int | None, kind: str | None = None) -> dict[str, int]:
        """Per-reason counts of one queue (as ``AuditLog.statistics``); under the lock, as a recorder may add a key."""
        with self._lock:
            if kind is None:
                return {r: n for (k_nic, k_queue, r), n in self.counters.items() if (k_nic, k_queue) == (nic, queue)}
            return {
                r: n
                for (k_nic, k_kind, k_queue, r), n in self.kind_counters.items()
                if (k_nic, k_kind, k_queue) == (nic, kind, queue)
            }
