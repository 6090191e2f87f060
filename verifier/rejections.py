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


def record_descriptors(
    audit: AuditSink,
    origin: Origin,
    slots: npt.NDArray[np.int64],
    descs: npt.NDArray[np.void],
    verdicts: Verdicts,
    mask: npt.NDArray[np.bool_],
    extra: dict[str, Any] | None = None,
) -> list[int]:
    """One record per descriptor selected by ``mask``; returns their sequence numbers.

    The selected descriptors and verdicts are turned into Python values once
    per batch (``tolist``), not field by field: a flood of rejections costs
    one dict per record, not a numpy scalar access per field.
    """
    picked = np.flatnonzero(mask)
    if picked.size == 0:
        return []
    chosen = descs[picked]
    names = chosen.dtype.names or ()
    rows = chosen.tolist()
    raws = chosen.view(np.uint8).reshape(picked.size, -1)
    seqs = []
    for j, (code, bad, owner, slot) in enumerate(
        zip(
            verdicts.reason[picked].tolist(),
            verdicts.bad_byte[picked].tolist(),
            verdicts.owner[picked].tolist(),
            slots[picked].tolist(),
            strict=True,
        )
    ):
        detail: dict[str, Any] = {"rule": _RULES[code]}
        if bad != -1:  # -1: not an address problem; a byte at or above 2**63 reads negative in int64
            bad %= 1 << 64
            detail["first_bad_byte"] = f"{bad:#x}"
            detail["frame"] = bad >> PAGE_SHIFT
        if owner != NO_OWNER:
            detail["owner"] = owner_label(owner, origin.tenant)
        if extra:
            detail.update(extra)
        seqs.append(
            audit.record(
                tenant=origin.tenant,
                tenant_name=origin.tenant_name,
                nic=origin.nic,
                queue=origin.queue,
                kind=origin.kind,
                ring_index=slot,
                raw=raws[j].tobytes(),
                fields=dict(zip(names, rows[j], strict=True)),
                reason=_NAMES[code],
                detail=detail,
            )
        )
    return seqs


_RULES = {r.code: r.rule for r in R.all_reasons()}
_NAMES = {r.code: r.name for r in R.all_reasons()}


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
