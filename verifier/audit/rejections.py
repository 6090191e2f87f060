"""Turning verdicts into audit records: exactly one record per rejected descriptor (invariant 6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from verifier.audit.lazy_records import RecordSpan
from verifier.audit.record import AuditRecord, CounterKey
from verifier.audit.rejection_batch import RecordRows, RejectionBatch
from verifier.rules import reasons as R
from verifier.rules.checks import Verdicts


class AuditSink(Protocol):
    """Everything the kernel and its observers ask of an audit sink (``AuditLog``, ``MemoryAudit``).

    One record per refusal (invariant 6), numbered from 0 in the order
    taken (``next_seq`` is the next number); counted per queue and reason as
    ``XDP_STATISTICS`` counts invalid descriptors (``counters``,
    ``statistics``); the newest ``capacity`` records readable as data
    (``since``; a file-backed log holds none in memory and names its file,
    ``path``).  ``commit`` ends a doorbell's batch (group commit), ``close``
    ends the sink.
    """

    def record(self, entry: AuditRecord) -> int:
        """Take one record; its seq."""
        ...

    def record_batch(self, rows: RecordRows) -> Sequence[int]:
        """Take one record per row of ``rows``, in order, as one ``record`` call each would; their seqs."""
        ...

    def commit(self) -> None: ...

    def close(self) -> None: ...

    @property
    def next_seq(self) -> int: ...

    @property
    def counters(self) -> Mapping[CounterKey, int]:
        """Records taken since the sink opened, by ``(nic, queue, reason)``."""
        ...

    def statistics(self, nic: str | None, queue: int | None, kind: str | None = None) -> dict[str, int]:
        """Per-reason counts of one queue (``kind`` keeps TX queue n and RX queue n apart)."""
        ...

    def records_of(self, nic: str | None, queue: int | None, kind: str) -> int:
        """Records of one queue and kind, every reason: the sum of ``statistics(nic, queue, kind)``, kept as a count."""
        ...

    @property
    def capacity(self) -> int | None:
        """How many of the newest records ``since`` can show (None: all, 0: none)."""
        ...

    def since(self, seq: int) -> list[dict[str, Any] | RecordSpan]:
        """The held records from ``seq`` on, oldest first: a dict per single record, a column span per batch."""
        ...

    @property
    def path(self) -> Path | None:
        """The file the records are in (None: memory only)."""
        ...


@dataclass(frozen=True)
class Origin:
    """Who and where: the queue a batch of descriptors came from."""

    tenant: int
    tenant_name: str
    nic: str
    queue: int
    kind: str  # "tx" or "rx"


def record_descriptors(
    audit: AuditSink,
    origin: Origin,
    slots: npt.NDArray[np.int64],
    descs: npt.NDArray[np.void],
    verdicts: Verdicts,
    mask: npt.NDArray[np.bool_],
    extra: dict[str, Any] | None = None,
) -> Sequence[int]:
    """One record per descriptor selected by ``mask``; returns their sequence numbers.

    The selected rows are copied into one ``RejectionBatch``, and the sink
    takes the whole batch at once (``MemoryAudit`` keeps it as columns and
    builds record dicts only when they are read; ``AuditLog`` formats it from
    templates, one hash per record).
    """
    picked = np.flatnonzero(mask)
    if picked.size == 0:
        return []
    batch = RejectionBatch(
        tenant=origin.tenant,
        tenant_name=origin.tenant_name,
        nic=origin.nic,
        queue=origin.queue,
        kind=origin.kind,
        ring_index=slots[picked],
        reason=verdicts.reason[picked],
        bad_byte=verdicts.bad_byte[picked],
        owner=verdicts.owner[picked],
        descs=descs[picked],
        extra=dict(extra) if extra else None,
    )
    return record_rows(audit, batch)


def record_rows(audit: AuditSink, rows: RecordRows) -> Sequence[int]:
    """Hand a batch of refusals to ``audit`` whole; their seqs."""
    return audit.record_batch(rows)


def record_event(
    audit: AuditSink,
    origin: Origin,
    kind: str,
    reason: int,
    detail: dict[str, Any],
    ring_index: int | None = None,
) -> int:
    """A rejection that is not about one descriptor: a ring index, a register write, an unpin."""
    return audit.record(
        AuditRecord(
            tenant=origin.tenant,
            tenant_name=origin.tenant_name,
            nic=origin.nic or None,
            queue=origin.queue if origin.queue >= 0 else None,
            kind=kind,
            ring_index=ring_index,
            raw=None,
            fields=None,
            reason=R.name(reason),
            detail={"rule": R.BY_CODE[reason].rule, **detail},
        )
    )
