"""One audit record as a sink takes it, and the counters every sink keeps of them.

A record is one refusal (invariant 6): who (tenant), where (NIC, queue,
kind, ring slot), what (the raw descriptor and its fields), why (a stable
reason code and its detail).  Every sink takes the same ``AuditRecord``
(``AuditSink.record``), every batch of refusals yields them
(``RecordRows.records``), the in-memory store keeps them and the file
writer encodes them: the fields are declared here once.

The counters are what ``XDP_STATISTICS`` reports per socket: refusals per
queue and reason (``tx_invalid_descs``, ``rx_invalid_descs``), kept apart
per kind so TX queue n and RX queue n do not mix.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, NamedTuple

#: ``(nic, queue, reason)``: what ``AuditSink.counters`` counts.
CounterKey = tuple[str | None, int | None, str]
#: ``(nic, kind, queue, reason)``: the same, TX and RX apart.
KindKey = tuple[str | None, str, int | None, str]
#: ``(nic, kind, queue)``: one queue of one kind, every reason.
StreamKey = tuple[str | None, str, int | None]


class AuditRecord(NamedTuple):
    """One refusal, before a sink numbers and stores it (a tuple: a batch's records are built by the thousand)."""

    tenant: int
    tenant_name: str
    nic: str | None
    queue: int | None
    kind: str  # "tx", "rx", "register", "iommu", "pin" (verifier/audit/log.py KINDS)
    ring_index: int | None  # the ring slot the record names, if any
    raw: bytes | None  # the 16 descriptor bytes as judged, if the record is about a descriptor
    fields: dict[str, Any] | None  # those bytes decoded, field by field
    reason: str  # a stable code (verifier/rules/reasons.py)
    detail: dict[str, Any]  # the rule broken and what the kernel saw


class AuditCounters:
    """Records per (NIC, kind, queue) and reason, the one store; per (NIC, queue, reason) and per (NIC, kind, queue,
    reason) made from it when asked.  The sink holding it locks around it."""

    def __init__(self) -> None:
        #: records per ``(nic, kind, queue)`` and reason: one queue's reasons without a walk over every key (the
        #: fuzzer's oracle reads a queue's counts several times a doorbell); the other views are made from it
        self.by_stream: dict[StreamKey, Counter[str]] = {}

    @property
    def by_kind(self) -> Counter[KindKey]:
        """The counts by ``(nic, kind, queue, reason)``: made from ``by_stream`` when asked (rarely), not kept beside
        it -- a writer adds a doorbell's counts once per doorbell, and every count kept twice shows."""
        kinds: Counter[KindKey] = Counter()
        for (nic, kind, queue), c in self.by_stream.items():
            for reason, n in c.items():
                kinds[(nic, kind, queue, reason)] = n
        return kinds

    @property
    def by_queue(self) -> Counter[CounterKey]:
        """The counts by ``(nic, queue, reason)``, kinds summed: made from ``by_stream`` when asked (rarely)."""
        queues: Counter[CounterKey] = Counter()
        for (nic, _kind, queue), c in self.by_stream.items():
            for reason, n in c.items():
                queues[(nic, queue, reason)] += n
        return queues

    def add(self, nic: str | None, kind: str, queue: int | None, counts: Mapping[str, int]) -> None:
        """Count ``counts`` (reason -> records) of one queue and kind."""
        stream = self.by_stream.get((nic, kind, queue))
        if stream is None:
            stream = self.by_stream[(nic, kind, queue)] = Counter()
        stream.update(counts)

    def add_record(self, entry: AuditRecord) -> None:
        self.add(entry.nic, entry.kind, None if entry.queue is None else int(entry.queue), {entry.reason: 1})

    def statistics(self, nic: str | None, queue: int | None, kind: str | None = None) -> dict[str, int]:
        """Per-reason counts of one queue (all kinds, or ``kind`` only), sorted by reason."""
        if kind is None:
            items = [(r, n) for (c_nic, c_queue, r), n in self.by_queue.items() if (c_nic, c_queue) == (nic, queue)]
        else:
            items = list(self.by_stream.get((nic, kind, queue), {}).items())
        return dict(sorted(items))

    def records(self, nic: str | None, queue: int | None, kind: str) -> int:
        """Records of one queue and kind, every reason: ``sum(statistics(nic, queue, kind).values())``, summed over
        that queue's few reasons only (no sorted dict, no walk over other queues)."""
        stream = self.by_stream.get((nic, kind, queue))
        return 0 if stream is None else sum(stream.values())
