"""Turning verdicts into audit records: exactly one record per rejected descriptor (invariant 6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from verifier.audit.rejection_batch import RecordRows, RejectionBatch
from verifier.rules import reasons as R
from verifier.rules.checks import Verdicts


class AuditSink(Protocol):
    """What the kernel needs of the audit log (AuditLog, MemoryAudit; ``record_batch`` optional: ``record_rows``)."""

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
    ) -> int: ...

    def commit(self) -> None: ...


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

    The selected rows are copied into one ``RejectionBatch``.  A sink with
    ``record_batch`` takes the whole batch at once (``MemoryAudit`` keeps it
    as columns and builds record dicts only when they are read; ``AuditLog``
    encodes it in one call, one hash per record); any other sink gets one
    ``record()`` call per row.
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
    """Hand a batch of refusals to ``audit``: whole (``record_batch``) if it can take one, else row by row."""
    take = getattr(audit, "record_batch", None)
    if take is not None:
        seqs: Sequence[int] = take(rows)
        return seqs
    return [audit.record(**row) for row in rows.arguments()]


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
