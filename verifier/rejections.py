"""Turning verdicts into audit records: exactly one record per rejected descriptor (invariant 6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ring.descriptors import RX_DESC, TX_DESC
from ring.memory import PAGE_SHIFT
from verifier import reasons as R
from verifier.checks import NO_OWNER, Verdicts, owner_label


class AuditSink(Protocol):
    """What the kernel needs of the audit log (verifier/audit.py implements it)."""

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


def decode(desc: np.void) -> dict[str, int]:
    """A descriptor's fields as plain integers, for the audit log."""
    return {name: int(desc[name]) for name in desc.dtype.names or ()}


def record_descriptors(
    audit: AuditSink,
    origin: Origin,
    slots: npt.NDArray[np.int64],
    descs: npt.NDArray[np.void],
    verdicts: Verdicts,
    mask: npt.NDArray[np.bool_],
    extra: dict[str, Any] | None = None,
) -> list[int]:
    """One record per descriptor selected by ``mask``; returns their sequence numbers."""
    seqs = []
    for i in np.flatnonzero(mask).tolist():
        code = int(verdicts.reason[i])
        detail: dict[str, Any] = {"rule": R.BY_CODE[code].rule}
        bad = int(verdicts.bad_byte[i])
        if bad != -1:  # -1: not an address problem; a byte at or above 2**63 reads negative in int64
            bad %= 1 << 64
            detail["first_bad_byte"] = f"{bad:#x}"
            detail["frame"] = bad >> PAGE_SHIFT
        owner = int(verdicts.owner[i])
        if owner != NO_OWNER:
            detail["owner"] = owner_label(owner, origin.tenant)
        if extra:
            detail.update(extra)
        desc = descs[i]
        seqs.append(
            audit.record(
                tenant=origin.tenant,
                tenant_name=origin.tenant_name,
                nic=origin.nic,
                queue=origin.queue,
                kind=origin.kind,
                ring_index=int(slots[i]),
                raw=desc.tobytes(),
                fields=decode(desc),
                reason=R.name(code),
                detail=detail,
            )
        )
    return seqs


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


DESC_DTYPE = {"tx": TX_DESC, "rx": RX_DESC}
