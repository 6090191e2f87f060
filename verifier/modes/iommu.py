"""Protection mode ``iommu``: an emulated IOMMU between each device and memory.

Like Intel VT-d with one domain per device: every DMA address the device
puts on the bus is an IO virtual address (IOVA), translated page by page
through the domain's table.  An IOVA with no mapping, or a write through a
mapping without write permission (a read without read permission), is a
fault: the access is blocked and audited, as the kernel logs
"DMAR: [DMA Read] ... fault reason 0x06".  Tenants map IOVA = their virtual
address, as VFIO users commonly do, so a descriptor carries the same number
the tenant's pointer has.

The table is kept as sorted numpy arrays (IOVA page, frame, access) and a
whole batch of accesses is translated with searchsorted; an access must stay
within one run of IOVA pages that map to consecutive frames, since the DMA
engine moves one physically contiguous range per access.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from ring.memory import PAGE_MASK, PAGE_SHIFT
from ring.syscalls import DmaRegion
from verifier.modes.base import ProtectionMode, QueueHandler, QueueRefused, QueueRequest
from verifier.modes.protection import Protection
from verifier.nic_control import Nic, program_ring
from verifier.pins import Access, Pin

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Faults:
    """The blocked accesses of one translated batch, in batch order (one fault each, as VT-d records them)."""

    device: str
    iova: U64
    length: I64
    write: bool
    permission: Mask  # True: mapped without the access (IOMMU_PERMISSION); False: not mapped (IOMMU_NOT_MAPPED)

    def __len__(self) -> int:
        return int(self.iova.size)


#: Called once per translated batch that had faults.
FaultHandler = Callable[[Faults], None]


@dataclass
class Domain:
    """One device's IO page table."""

    entries: dict[int, tuple[int, int]] = field(default_factory=dict)  # iova page -> (frame, access)
    pages: U64 = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    frames: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    access: npt.NDArray[np.uint8] = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))

    def rebuild(self) -> None:
        keys = sorted(self.entries)
        self.pages = np.array(keys, dtype=np.uint64)
        self.frames = np.array([self.entries[k][0] for k in keys], dtype=np.int64)
        self.access = np.array([self.entries[k][1] for k in keys], dtype=np.uint8)


class Iommu:
    """Domains for every device, translation, and the fault log."""

    def __init__(self, on_fault: FaultHandler | None = None) -> None:
        """``on_fault``: told about each batch's faults at once (the kernel audits one record per fault)."""
        self.domains: dict[str, Domain] = {}
        self.on_fault = on_fault
        self.faults = 0

    def map(self, device: str, iova: int, frames: I64, access: Access) -> None:
        """Map consecutive IOVA pages from ``iova`` to ``frames`` (VFIO_IOMMU_MAP_DMA)."""
        domain = self.domains.setdefault(device, Domain())
        first = iova >> PAGE_SHIFT
        for i, frame in enumerate(frames.tolist()):
            domain.entries[first + i] = (frame, int(access))
        domain.rebuild()

    def unmap(self, device: str, iova: int, pages: int) -> None:
        """Remove mappings (VFIO_IOMMU_UNMAP_DMA); later DMA to them faults."""
        domain = self.domains.get(device)
        if domain is None:
            return
        first = iova >> PAGE_SHIFT
        for page in range(first, first + pages):
            domain.entries.pop(page, None)
        domain.rebuild()

    def translate(self, device: str, addrs: U64, lengths: I64, write: bool) -> tuple[U64, Mask]:
        """Translate a batch of accesses; faults are blocked (mask False) and reported."""
        n = addrs.size
        phys = np.zeros(n, dtype=np.uint64)
        ok = np.zeros(n, dtype=bool)
        domain = self.domains.get(device)
        if n == 0:
            return phys, ok
        addrs = addrs.astype(np.uint64)
        span = np.maximum(lengths.astype(np.int64), 1) - 1
        end = addrs + span.astype(np.uint64)
        no_wrap = end >= addrs
        first = addrs >> np.uint64(PAGE_SHIFT)
        last = end >> np.uint64(PAGE_SHIFT)
        reason = np.full(n, 1, dtype=np.uint8)  # 1 = not mapped, 2 = permission, 0 = ok
        if domain is not None and domain.pages.size:
            pages = domain.pages
            i = np.searchsorted(pages, first)
            j = np.searchsorted(pages, last)
            i_c = np.minimum(i, pages.size - 1)
            j_c = np.minimum(j, pages.size - 1)
            mapped = no_wrap & (pages[i_c] == first) & (pages[j_c] == last) & (j - i == (last - first).astype(np.int64))
            contiguous = (domain.frames[j_c] - domain.frames[i_c]) == (last - first).astype(np.int64)
            mapped &= contiguous
            need = int(Access.WRITE if write else Access.READ)
            allowed_pages = (domain.access & need) != 0
            prefix = np.concatenate(([0], np.cumsum(allowed_pages)))
            permitted = (prefix[j_c + 1] - prefix[i_c]) == (j_c - i_c + 1)
            ok = mapped & permitted
            reason = np.where(ok, 0, np.where(mapped, 2, 1)).astype(np.uint8)
            phys = np.where(
                ok, (domain.frames[i_c].astype(np.uint64) << np.uint64(PAGE_SHIFT)) | (addrs & np.uint64(PAGE_MASK)), 0
            ).astype(np.uint64)
        bad = np.flatnonzero(reason != 0)
        self.faults += int(bad.size)
        if bad.size and self.on_fault is not None:
            self.on_fault(Faults(device, addrs[bad], lengths[bad].astype(np.int64), write, reason[bad] == 2))
        return phys, ok


class IommuMode(ProtectionMode):
    """Mode ``iommu``: one domain per device, owned by the first tenant that opens a queue on it.

    The owner gets the device's whole register window (the BAR passed
    through, as VFIO hands a device to one process); its pins are mapped
    into the domain at IOVA = virtual address, before and after it opens
    its queue; another tenant's accesses do not reach the device.
    """

    protection: ClassVar[Protection] = Protection.IOMMU

    def __init__(self, on_fault: FaultHandler | None = None) -> None:
        self.iommu: Iommu = Iommu(on_fault)

    def open_queue(self, request: QueueRequest) -> QueueHandler | None:
        r, nic = request, request.nic
        if nic.iommu_owner not in (None, r.tenant):
            raise QueueRefused(f"iommu mode: {nic.name} is in tenant {nic.iommu_owner}'s domain (one per device)")
        if nic.iommu_owner is None:
            nic.iommu_owner = r.tenant
            for pin in r.pins.pins.values():
                self.iommu.map(nic.name, pin.vaddr & ~PAGE_MASK, pin.frames, pin.access)
        ring_frames = np.arange(r.phys >> PAGE_SHIFT, (r.phys + r.ring.size - 1 >> PAGE_SHIFT) + 1, dtype=np.int64)
        self.iommu.map(nic.name, r.ring.vaddr & ~PAGE_MASK, ring_frames, Access.READ_WRITE)
        program_ring(nic.bus, r.tx, r.index, r.ring.vaddr, r.size)
        return None

    def writes_reach_device(self, nic: Nic, tenant: int) -> bool:
        return nic.iommu_owner == tenant  # the BAR passed through, to the domain's owner only

    def reads_reach_device(self, nic: Nic, tenant: int, offset: int) -> bool:
        return nic.iommu_owner == tenant

    def dma_region(self, region: DmaRegion) -> DmaRegion:
        # IOVA = virtual address: descriptors carry the tenant's own pointers
        return DmaRegion(region.vaddr, region.vaddr, region.size, region.view)

    def pinned(self, nics: Iterable[Nic], tenant: int, iova: int, frames: I64, access: Access) -> None:
        for nic in nics:
            if nic.iommu_owner == tenant:
                self.iommu.map(nic.name, iova, frames, access)

    def unpinned(self, nics: Iterable[Nic], tenant: int, pin: Pin) -> None:
        for nic in nics:
            if nic.iommu_owner == tenant:
                self.iommu.unmap(nic.name, pin.vaddr & ~PAGE_MASK, pin.frames.size)
