"""Refusals in bulk, kept as columns: one audit record per row, built when asked.

Two kinds: the rejected descriptors of one doorbell (``RejectionBatch``) and
the IOMMU faults of one DMA batch (``IommuFaultBatch``).  A flood of them is
the common case under attack (the fuzzer sends hundreds per doorbell).
Building a record dict per row at doorbell time costs microseconds each, so
a sink takes the whole batch (``record_batch``): ``MemoryAudit`` keeps these
columns and turns a row into a record only when someone reads it;
``AuditLog`` encodes the rows' JSON in one call and still hashes each record.
A batch yields its rows as ``AuditRecord`` values (``records``): the records
a sink would take one ``record()`` call at a time.  Every way gives identical
records (invariant 6: one record per rejected descriptor, one per IOMMU fault).

Real kernels validate descriptors in batches too (AF_XDP's
``xskq_cons_read_desc_batch`` in net/xdp/xsk_queue.h) but keep only a
counter per socket (``invalid_descs``, one per bad descriptor); the detail
per descriptor is this sandbox's addition, so it is built lazily.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from ring.memory import PAGE_SHIFT
from verifier.audit.record import AuditRecord
from verifier.rules import reasons as R
from verifier.rules.checks import NO_OWNER, owner_label

#: Reason code -> stable name (the audit record's ``reason``): plain data, readable by an outside observer.
REASON_NAMES: Mapping[int, str] = MappingProxyType({r.code: r.name for r in R.all_reasons()})
_RULES: Mapping[int, str] = {r.code: r.rule for r in R.all_reasons()}


class RecordRows(Protocol):
    """What a sink needs of a batch of refusals: where, a reason code per row, and the rows as records."""

    @property
    def nic(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def queue(self) -> int | None: ...
    @property
    def ring_index(self) -> npt.NDArray[np.int64] | None:
        """The ring slot each row's record names (None: the rows name no descriptor)."""

    @property
    def reason(self) -> npt.NDArray[np.uint8]: ...
    @property
    def names(self) -> Mapping[int, str]: ...

    def __len__(self) -> int: ...

    def records(self, lo: int = 0, hi: int | None = None) -> Iterator[AuditRecord]:
        """The records of rows ``lo..hi-1``, in order: what one ``AuditSink.record`` call per row would take."""
        ...


def reason_counts(rows: RecordRows, upto: int | None = None) -> dict[str, int]:
    """``{reason name: rows}`` of rows ``0..upto-1`` (all by default): what a sink adds to its counters, in one pass.

    One ``bincount`` and one ``tolist``; the few codes (at most 256: they are bytes) walked in Python, which costs
    less than finding the non-zero ones with numpy and indexing each (once per doorbell, so it shows).
    """
    names = rows.names
    counts = np.bincount(rows.reason[:upto]).tolist()
    return {names[code]: n for code, n in enumerate(counts) if n}


@dataclass(frozen=True, eq=False)
class RejectionBatch:
    """Rejected descriptors of one queue and one doorbell: row ``i`` is one audit record.

    Every array is a private copy (the caller's verdicts and ring may change
    after the doorbell); ``descs`` holds the descriptors exactly as judged.
    """

    tenant: int
    tenant_name: str
    nic: str
    queue: int
    kind: str  # "tx" or "rx"
    ring_index: npt.NDArray[np.int64]  # the user ring slot of each descriptor
    reason: npt.NDArray[np.uint8]  # reason codes (verifier/rules/reasons.py)
    bad_byte: npt.NDArray[np.int64]  # first offending byte, -1 when not an address problem
    owner: npt.NDArray[np.int32]  # ground-truth owner of the offending frame, or NO_OWNER
    descs: npt.NDArray[np.void]  # the descriptors, TX_DESC or RX_DESC
    extra: Mapping[str, Any] | None = None  # detail keys shared by every row (after the per-row ones)
    names: ClassVar[Mapping[int, str]] = REASON_NAMES

    def __len__(self) -> int:
        return int(self.reason.size)

    @property
    def owner_labels(self) -> npt.NDArray[np.str_]:
        """Each row's ``detail.owner`` as its record says it (``""`` where the record names no owner): a column
        for an observer that judges the claim, built from the few distinct owners of the batch."""
        owner = self.owner
        if owner.size:
            first = owner[0]
            same = owner == first
            if bool(same.all()):  # the common batch: one owner (np.unique costs ~5x)
                code = int(first)
                label = np.array("" if code == NO_OWNER else owner_label(code, self.tenant), dtype=np.str_)
                return np.full(owner.size, label, dtype=label.dtype)  # dtype=np.str_ alone: one character wide
            rest = owner[~same]
            if bool((rest == rest[0]).all()):  # the next most common (a quarter of the fuzzer's): two owners
                a, b = ("" if c == NO_OWNER else owner_label(c, self.tenant) for c in (int(first), int(rest[0])))
                return np.where(same, np.str_(a), np.str_(b))
        codes, inverse = np.unique(owner, return_inverse=True)
        labels = ["" if code == NO_OWNER else owner_label(code, self.tenant) for code in codes.tolist()]
        return np.array(labels, dtype=np.str_)[inverse.reshape(-1)]

    def records(self, lo: int = 0, hi: int | None = None) -> Iterator[AuditRecord]:
        """The records of rows ``lo..hi-1``, in order.

        The rows are turned into Python values once (``tolist``), not field by
        field: numpy scalar access per field would cost more than the record.
        """
        part = slice(lo, len(self) if hi is None else hi)
        chosen = self.descs[part]
        names = chosen.dtype.names or ()
        rows = chosen.tolist()
        raws = chosen.view(np.uint8).reshape(len(rows), -1)
        tenant = self.tenant
        extra = self.extra
        for j, (slot, code, bad, owner) in enumerate(
            zip(
                self.ring_index[part].tolist(),
                self.reason[part].tolist(),
                self.bad_byte[part].tolist(),
                self.owner[part].tolist(),
                strict=True,
            )
        ):
            detail: dict[str, Any] = {"rule": _RULES[code]}
            if bad != -1:  # -1: not an address problem; a byte at or above 2**63 reads negative in int64
                bad %= 1 << 64
                detail["first_bad_byte"] = f"{bad:#x}"
                detail["frame"] = bad >> PAGE_SHIFT
            if owner != NO_OWNER:
                detail["owner"] = owner_label(owner, tenant)
            if extra:
                detail.update(extra)
            yield AuditRecord(
                tenant,
                self.tenant_name,
                self.nic,
                self.queue,
                self.kind,
                slot,
                raws[j].tobytes(),
                dict(zip(names, rows[j], strict=True)),
                self.names[code],
                detail,
            )


@dataclass(frozen=True, eq=False)
class IommuFaultBatch:
    """IOMMU faults of one DMA batch of one device: row ``i`` is one ``iommu`` record.

    VT-d reports a fault per blocked request (one fault recording entry
    each), so each blocked access is one record.
    """

    tenant: int  # the owner of the device's domain, or -1
    tenant_name: str
    nic: str  # the device
    iova: npt.NDArray[np.uint64]
    length: npt.NDArray[np.int64]
    write: bool
    reason: npt.NDArray[np.uint8]  # IOMMU_NOT_MAPPED or IOMMU_PERMISSION
    kind: str = "iommu"
    queue: None = None
    ring_index: None = None
    names: ClassVar[Mapping[int, str]] = REASON_NAMES

    def __len__(self) -> int:
        return int(self.reason.size)

    def records(self, lo: int = 0, hi: int | None = None) -> Iterator[AuditRecord]:
        """The records of rows ``lo..hi-1``, in order."""
        part = slice(lo, len(self) if hi is None else hi)
        access = "write" if self.write else "read"
        vtd = "0x05" if self.write else "0x06"  # VT-d reports the request kind: 0x05 write, 0x06 read
        for addr, length, code in zip(
            self.iova[part].tolist(), self.length[part].tolist(), self.reason[part].tolist(), strict=True
        ):
            detail = {"rule": _RULES[code], "iova": f"{addr:#x}", "length": length, "access": access,
                      "vtd_fault_reason": vtd}  # fmt: skip
            yield AuditRecord(self.tenant, self.tenant_name, self.nic, None, "iommu", None, None, None,
                              self.names[code], detail)  # fmt: skip
