"""An audit sink that keeps records in memory: for tests, benchmarks and the fuzzer's inner loop.

It counts exactly like the file-backed AuditLog (per NIC, queue and reason)
and keeps the most recent records in a bounded deque, so a flood of
rejections cannot exhaust memory.  It is not durable: anything that must
survive a crash belongs in verifier/audit.py's AuditLog.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any


class MemoryAudit:
    def __init__(self, keep: int = 100_000) -> None:
        self.records: deque[dict[str, Any]] = deque(maxlen=keep)
        self.counters: Counter[tuple[str | None, int | None, str]] = Counter()
        self.kind_counters: Counter[tuple[str | None, str, int | None, str]] = Counter()
        self.seq = 0
        self.commits = 0

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
        seq = self.seq
        self.seq += 1
        self.counters[(nic, queue, reason)] += 1
        self.kind_counters[(nic, kind, queue, reason)] += 1
        self.records.append(
            {
                "seq": seq,
                "tenant": tenant,
                "tenant_name": tenant_name,
                "nic": nic,
                "queue": queue,
                "kind": kind,
                "ring_index": ring_index,
                "desc_hex": raw.hex() if raw is not None else None,
                "desc": fields,
                "reason": reason,
                "detail": detail,
            }
        )
        return seq

    def commit(self) -> None:
        self.commits += 1

    def statistics(self, nic: str | None, queue: int | None, kind: str | None = None) -> dict[str, int]:
        if kind is None:
            return {r: n for (k_nic, k_queue, r), n in self.counters.items() if (k_nic, k_queue) == (nic, queue)}
        return {
            r: n
            for (k_nic, k_kind, k_queue, r), n in self.kind_counters.items()
            if (k_nic, k_kind, k_queue) == (nic, kind, queue)
        }
