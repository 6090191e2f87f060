"""Protection mode ``iommu``: an emulated IOMMU between each device and memory.

Like Intel VT-d with one domain per device: every DMA address the device
puts on the bus is an IO virtual address (IOVA), translated page by page
through the domain's table.  An IOVA with no mapping, or a write through a
mapping without write permission (a read without read permission), is a
fault: the access is blocked and audited, as the kernel logs
"DMAR: [DMA Read] ... fault reason 0x06".  Tenants map IOVA = their virtual
address, as VFIO users commonly do, so a descriptor carries the same number
the tenant's pointer has.

Translation has two levels, as in the hardware.  The IOTLB (``Iotlb``, one
per domain) caches the translation of each page the device touched; an
access whose pages are all cached is translated from it without a walk.  A
miss walks the domain's table (``Domain.walk``: sorted numpy arrays, a whole
batch at once with searchsorted) and fills the IOTLB with the present pages
it found.  Faults are never cached (VT-d caches only present entries outside
caching mode), so a faulting access walks every time.  Changing a present
entry (unmap, or a map over an existing page) invalidates the cached pages
before the call returns, as the VT-d driver issues a page-selective IOTLB
invalidation after clearing a PTE, or a domain-selective one when the range
is larger than the IOTLB (VT-d spec 6.5, "IOTLB invalidation").  A stale entry
would let a device reach a frame its tenant gave back: the one bug an IOTLB
must not have.

An access must stay within one run of IOVA pages that map to consecutive
frames, since the DMA engine moves one physically contiguous range per
access.  The IOTLB answers accesses of one or two pages (every frame and
descriptor burst of a standard ring); longer ones walk.
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
U8 = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]

_SHIFT = np.uint64(PAGE_SHIFT)
_OFFSET = np.uint64(PAGE_MASK)
_PAGE_SIZE = np.int64(PAGE_MASK + 1)
_U64_TOP = 1 << 64

_READ, _WRITE = int(Access.READ), int(Access.WRITE)

#: Fault reasons of one walked access (the audit turns them into IOMMU_NOT_MAPPED / IOMMU_PERMISSION).
OK, NOT_MAPPED, PERMISSION = 0, 1, 2

#: IOTLB entries per domain (direct-mapped on the low bits of the IOVA page number).
IOTLB_SETS = 4096
#: A tag no IOVA page has (page numbers are below 2**52): the entry is invalid.
_NO_TAG = np.uint64(2**64 - 1)

_ALL_TRUE = np.ones(1 << 12, dtype=bool)
_ALL_TRUE.flags.writeable = False


def _all_true(n: int) -> Mask:
    """A read-only mask of ``n`` Trues, shared: a batch with no fault costs no mask allocation."""
    return _ALL_TRUE[:n] if n <= _ALL_TRUE.size else np.ones(n, dtype=bool)


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
class IotlbCounters:
    """What the IOTLB did, over every domain: the counters a VT-d driver's debugfs shows per IOMMU.

    ``hits`` and ``misses`` count accesses (an access hits when every page it
    touches was cached); invalidations count requests, not entries dropped.
    """

    hits: int = 0
    misses: int = 0
    page_invalidations: int = 0  # page-selective (PSI): a range of one domain
    domain_invalidations: int = 0  # domain-selective (DSI): all of one domain's entries

    @property
    def invalidations(self) -> int:
        return self.page_invalidations + self.domain_invalidations


class Iotlb:
    """One domain's translation cache: IOVA page -> (frame, access), direct-mapped, present entries only.

    Besides the tag of the page each set holds, a set keeps one tag per
    access kind (``hit_tags``: the page if its entry grants that access, else
    no tag), so a lookup is one comparison; and the frame as a base address,
    so the physical address is one OR with the page offset.
    """

    def __init__(self, sets: int = IOTLB_SETS) -> None:
        if sets <= 0 or sets & (sets - 1):
            raise ValueError(f"IOTLB sets must be a power of two, got {sets}")
        self.sets = sets
        self.index_mask = np.uint64(sets - 1)
        self.tags: U64 = np.full(sets, _NO_TAG, dtype=np.uint64)
        self.bases: U64 = np.zeros(sets, dtype=np.uint64)  # frame << PAGE_SHIFT
        self.access: U8 = np.zeros(sets, dtype=np.uint8)
        self.hit_tags: dict[int, U64] = {int(need): self.tags.copy() for need in (Access.READ, Access.WRITE)}

    def fill(self, pages: U64, frames: U64, access: U8) -> None:
        """Cache present pages; of pages sharing a set one is kept whole (never one's tag with another's frame)."""
        sets = (pages & self.index_mask).view(np.int64)
        _, keep = np.unique(sets, return_index=True)
        s, kept, grants = sets[keep], pages[keep], access[keep]
        self.tags[s] = kept
        self.bases[s] = frames[keep] << _SHIFT
        self.access[s] = grants
        for need, tags in self.hit_tags.items():
            tags[s] = np.where((grants & need) != 0, kept, _NO_TAG)

    @property
    def read_tags(self) -> U64:
        """Per set, the page cached there if its entry grants device read (the compiled burst path reads it)."""
        return self.hit_tags[_READ]

    @property
    def write_tags(self) -> U64:
        return self.hit_tags[_WRITE]

    def invalidate_pages(self, first: int, count: int) -> None:
        """Drop the cached entries of pages ``[first, first + count)`` (``count`` at most ``sets``: distinct sets)."""
        pages = np.arange(first, first + count, dtype=np.uint64)
        sets = (pages & self.index_mask).view(np.int64)
        stale = sets[self.tags[sets] == pages]
        self.tags[stale] = _NO_TAG
        for tags in self.hit_tags.values():
            tags[stale] = _NO_TAG

    def invalidate_all(self) -> None:
        self.tags.fill(_NO_TAG)
        for tags in self.hit_tags.values():
            tags.fill(_NO_TAG)


@dataclass
class Domain:
    """One device's IO page table, and the IOTLB that caches it."""

    entries: dict[int, tuple[int, int]] = field(default_factory=dict)  # iova page -> (frame, access)
    pages: U64 = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    frames: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    access: U8 = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    iotlb: Iotlb = field(default_factory=Iotlb)
    # run[k]: which run of consecutive pages on consecutive frames sorted page k is in
    run: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # allowed[need][k]: pages among the first k sorted pages that grant ``need`` (the walk's permission test)
    _allowed_prefix: dict[int, I64] = field(default_factory=dict)

    def rebuild(self) -> None:
        """Re-sort the table after a change (map and unmap are rare next to translations)."""
        keys = sorted(self.entries)
        self.pages = np.array(keys, dtype=np.uint64)
        self.frames = np.array([self.entries[k][0] for k in keys], dtype=np.int64)
        self.access = np.array([self.entries[k][1] for k in keys], dtype=np.uint8)
        breaks = (np.diff(self.pages.astype(np.int64)) != 1) | (np.diff(self.frames) != 1)
        self.run = np.concatenate(([0], np.cumsum(breaks))).astype(np.int64)
        self._allowed_prefix = {
            int(need): np.concatenate(([0], np.cumsum((self.access & int(need)) != 0))).astype(np.int64)
            for need in (Access.READ, Access.WRITE)
        }

    def walk(self, addrs: U64, lengths: I64, need: int) -> tuple[U64, U8]:
        """The uncached translation of a batch: physical addresses (0 where blocked) and each access's reason.

        Present pages the walk met are filled into the IOTLB.
        """
        n = addrs.size
        if not self.pages.size:
            return np.zeros(n, dtype=np.uint64), np.full(n, NOT_MAPPED, dtype=np.uint8)
        span = np.maximum(lengths, 1) - 1
        end = addrs + span.astype(np.uint64)
        no_wrap = end >= addrs
        first = addrs >> _SHIFT
        last = end >> _SHIFT
        pages = self.pages
        i_c = np.minimum(np.searchsorted(pages, first), pages.size - 1)
        j_c = np.minimum(np.searchsorted(pages, last), pages.size - 1)
        first_present = pages[i_c] == first
        last_present = pages[j_c] == last
        # both ends present in one run: every page between is mapped, onto the frames that follow the first's
        mapped = no_wrap & first_present & last_present & (self.run[i_c] == self.run[j_c])
        prefix = self._allowed_prefix[need]
        permitted = (prefix[j_c + 1] - prefix[i_c]) == (j_c - i_c + 1)
        ok = mapped & permitted
        reason = np.where(ok, OK, np.where(mapped, PERMISSION, NOT_MAPPED)).astype(np.uint8)
        phys = np.where(ok, (self.frames[i_c].astype(np.uint64) << _SHIFT) | (addrs & _OFFSET), 0).astype(np.uint64)
        seen = np.concatenate((i_c[first_present], j_c[last_present]))
        if seen.size:
            self.iotlb.fill(pages[seen], self.frames[seen].astype(np.uint64), self.access[seen])
        return phys, reason


class Iommu:
    """Domains for every device, translation through each domain's IOTLB, and the fault log."""

    def __init__(self, on_fault: FaultHandler | None = None, iotlb_sets: int = IOTLB_SETS) -> None:
        """``on_fault``: told about each batch's faults at once (the kernel audits one record per fault).

        ``iotlb_sets``: entries of each domain's IOTLB (a power of two; hardware has tens to thousands).
        """
        Iotlb(iotlb_sets)  # refuse a bad size here, not at the first map
        self.iotlb_sets = iotlb_sets
        self.domains: dict[str, Domain] = {}
        self.on_fault = on_fault
        self.faults = 0
        self.iotlb = IotlbCounters()

    def map(self, device: str, iova: int, frames: I64, access: Access) -> None:
        """Map consecutive IOVA pages from ``iova`` to ``frames`` (VFIO_IOMMU_MAP_DMA).

        A page mapped already is replaced, and its cached translation
        invalidated: a present entry changed, as on unmap.
        """
        domain = self.domains.get(device)
        if domain is None:
            domain = self.domains[device] = Domain(iotlb=Iotlb(self.iotlb_sets))
        first = iova >> PAGE_SHIFT
        replaced = False
        for i, frame in enumerate(frames.tolist()):
            replaced |= domain.entries.get(first + i) is not None
            domain.entries[first + i] = (frame, int(access))
        domain.rebuild()
        if replaced:
            self._invalidate(domain, first, int(frames.size))

    def unmap(self, device: str, iova: int, pages: int) -> None:
        """Remove mappings (VFIO_IOMMU_UNMAP_DMA), then invalidate their IOTLB entries; later DMA to them faults."""
        domain = self.domains.get(device)
        if domain is None:
            return
        first = iova >> PAGE_SHIFT
        for page in range(first, first + pages):
            domain.entries.pop(page, None)
        domain.rebuild()
        self._invalidate(domain, first, pages)

    def invalidate(self, device: str) -> None:
        """Domain-selective invalidation: forget every cached translation of ``device``'s domain."""
        domain = self.domains.get(device)
        if domain is not None:
            domain.iotlb.invalidate_all()
            self.iotlb.domain_invalidations += 1

    def _invalidate(self, domain: Domain, first: int, count: int) -> None:
        """Page-selective for a range the IOTLB could hold, else the whole domain (as intel-iommu chooses)."""
        if count <= 0:
            return
        if count > domain.iotlb.sets:
            domain.iotlb.invalidate_all()
            self.iotlb.domain_invalidations += 1
        else:
            domain.iotlb.invalidate_pages(first, count)
            self.iotlb.page_invalidations += 1

    def cache(self, device: str) -> Iotlb | None:
        """The device's IOTLB, which the device's compiled burst path reads (device/dma.py TranslationCache)."""
        domain = self.domains.get(device)
        return None if domain is None else domain.iotlb

    def count_hits(self, accesses: int) -> None:
        """Accesses the device's compiled burst path translated from the IOTLB: hits, as ``translate`` counts them."""
        self.iotlb.hits += accesses

    def translate(self, device: str, addrs: U64, lengths: I64, write: bool) -> tuple[U64, Mask]:
        """Translate a batch of accesses; faults are blocked (mask False) and reported."""
        n = addrs.size
        domain = self.domains.get(device)
        if n == 0:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool)
        need = _WRITE if write else _READ
        if addrs.dtype != np.uint64:
            addrs = addrs.astype(np.uint64)
        if lengths.dtype != np.int64:
            lengths = lengths.astype(np.int64)
        if domain is None:
            return self._blocked(device, addrs, lengths, write, np.full(n, NOT_MAPPED, dtype=np.uint8))
        if n == 1:
            phys1 = self._lookup_one(domain.iotlb, addrs.item(0), lengths.item(0), need)
            if phys1 >= 0:
                self.iotlb.hits += 1
                return np.array([phys1], dtype=np.uint64), _all_true(1)
            hit: Mask = np.zeros(1, dtype=bool)
            phys = np.zeros(1, dtype=np.uint64)
        else:
            phys, hit = self._lookup(domain.iotlb, addrs, lengths, need)
            if hit.all():
                self.iotlb.hits += n
                return phys, _all_true(n)
        miss = np.flatnonzero(~hit)
        self.iotlb.hits += n - int(miss.size)
        self.iotlb.misses += int(miss.size)
        walked, reason_missed = domain.walk(addrs[miss], lengths[miss], need)
        phys[miss] = walked
        if not reason_missed.any():
            return phys, _all_true(n)
        reason = np.zeros(n, dtype=np.uint8)
        reason[miss] = reason_missed
        return self._blocked(device, addrs, lengths, write, reason, phys)

    def _blocked(
        self, device: str, addrs: U64, lengths: I64, write: bool, reason: U8, phys: U64 | None = None
    ) -> tuple[U64, Mask]:
        """Report the batch's faults (reason != OK) in batch order; return phys and the mask of allowed accesses."""
        ok = reason == OK
        bad = np.flatnonzero(~ok)
        self.faults += int(bad.size)
        if self.on_fault is not None:
            self.on_fault(Faults(device, addrs[bad], lengths[bad], write, reason[bad] == PERMISSION))
        return (np.zeros(addrs.size, dtype=np.uint64) if phys is None else phys), ok

    @staticmethod
    def _lookup_one(tlb: Iotlb, addr: int, length: int, need: int) -> int:
        """One access from the IOTLB in plain integers (a descriptor burst: cheaper than array operations); -1: miss."""
        end = addr + max(length, 1) - 1
        first, last = addr >> PAGE_SHIFT, end >> PAGE_SHIFT
        if end >= _U64_TOP or last - first > 1:
            return -1
        sets = tlb.sets - 1
        sf, sl = first & sets, last & sets
        tags = tlb.hit_tags[need]
        if tags.item(sf) != first or tags.item(sl) != last:
            return -1
        base = tlb.bases.item(sf)
        if sl != sf and tlb.bases.item(sl) - base != PAGE_MASK + 1:
            return -1
        return base | (addr & PAGE_MASK)

    @staticmethod
    def _lookup(tlb: Iotlb, addrs: U64, lengths: I64, need: int) -> tuple[U64, Mask]:
        """A batch from the IOTLB: physical addresses, and which accesses hit (the others are to walk).

        An access hits when it spans at most two pages, both cached with
        ``need``, on consecutive frames.  A length of 0 or below touches its
        first byte's page only, as in the walk.  Spanning at most two pages
        also rules out a wrap past 2**64 (the last page would be below the
        first).
        """
        offset = addrs & _OFFSET
        first = addrs >> _SHIFT
        sf = (first & tlb.index_mask).view(np.int64)  # int64 indices: numpy gathers them without a cast
        tags = tlb.hit_tags[need]
        base_f = tlb.bases[sf]
        phys = base_f | offset
        if (lengths <= _PAGE_SIZE - offset.view(np.int64)).all():  # every access inside its first page (no overflow)
            return phys, tags[sf] == first
        last = (addrs + (np.maximum(lengths, 1) - 1).view(np.uint64)) >> _SHIFT
        pages = last - first  # 0 or 1 for a hit; a wrap makes it huge
        sl = (last & tlb.index_mask).view(np.int64)
        hit = (pages <= 1) & (tags[sf] == first) & (tags[sl] == last)
        hit &= (tlb.bases[sl] - base_f) == pages << _SHIFT
        return phys, hit


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
