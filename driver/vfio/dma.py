"""The device's IOMMU view of physical memory: page-granular VFIO mappings at IOVA = physical address.

The sandbox's ``PhysicalMemory`` is, in the lab, one mmap'd buffer of the
guest process; its "physical" address ``p`` is byte ``p`` of that buffer.
Choosing IOVA = that address lets every descriptor the project writes (it
holds physical addresses) mean the same thing to the real device, and lets
the real IOMMU enforce exactly the pages mapped here: a descriptor naming
any other address faults in the VT-d unit (DMAR fault) instead of reaching
memory.

Mappings are one 4 KiB page each, counted per access kind: VFIO type1 v2
refuses an unmap that bisects a mapping (drivers/vfio/vfio_iommu_type1.c,
vfio_dma_do_unmap), so per-page mappings are the ones that can be undone in
any order, and a page's permissions (read for TX buffers, write for RX
buffers, both for descriptor rings) can change when a second user of the
page arrives or leaves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ring.memory import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE


class DmaMapper(Protocol):
    """What maps memory for the device: driver.vfio.device.Container, or a recorder in tests."""

    def map_dma(self, vaddr: int, iova: int, size: int, read: bool, write: bool) -> None: ...

    def unmap_dma(self, iova: int, size: int) -> int: ...


@dataclass
class PageRefs:
    read: int = 0
    write: int = 0

    @property
    def perms(self) -> tuple[bool, bool]:
        return self.read > 0, self.write > 0


def pages(phys: int, size: int) -> Iterator[int]:
    """Page numbers covering ``[phys, phys + size)``."""
    if size <= 0:
        return iter(())
    return iter(range(phys >> PAGE_SHIFT, ((phys + size - 1) >> PAGE_SHIFT) + 1))


class IommuMap:
    """Page-granular, reference-counted device mappings of one buffer at IOVA = offset in the buffer."""

    def __init__(self, mapper: DmaMapper, base_vaddr: int, size: int) -> None:
        if base_vaddr & PAGE_MASK:
            raise ValueError(f"the memory buffer must be page aligned, got {base_vaddr:#x}")
        self.mapper = mapper
        self.base_vaddr = base_vaddr
        self.size = size
        self.refs: dict[int, PageRefs] = {}

    def map(self, phys: int, size: int, read: bool, write: bool) -> None:
        """Let the device reach ``[phys, phys + size)`` (rounded out to pages) for reading and/or writing."""
        if phys < 0 or phys + size > self.size:
            raise ValueError(f"range {phys:#x}+{size:#x} is outside physical memory")
        for page in pages(phys, size):
            refs = self.refs.setdefault(page, PageRefs())
            before = refs.perms
            refs.read += int(read)
            refs.write += int(write)
            self._apply(page, before, refs.perms)

    def unmap(self, phys: int, size: int, read: bool, write: bool) -> None:
        """Drop one ``map`` of the same range and access; a page is unmapped when nothing needs it.

        Every page is checked before any is touched, so a refused unmap changes nothing."""
        covered = list(pages(phys, size))
        for page in covered:
            refs = self.refs.get(page)
            if refs is None or (read and refs.read == 0) or (write and refs.write == 0):
                raise ValueError(f"page {page << PAGE_SHIFT:#x} is not mapped for that access")
        for page in covered:
            refs = self.refs[page]
            before = refs.perms
            refs.read -= int(read)
            refs.write -= int(write)
            self._apply(page, before, refs.perms)
            if refs.perms == (False, False):
                del self.refs[page]

    def _apply(self, page: int, before: tuple[bool, bool], after: tuple[bool, bool]) -> None:
        if before == after:
            return
        iova = page << PAGE_SHIFT
        if any(before):
            self.mapper.unmap_dma(iova, PAGE_SIZE)
        if any(after):
            self.mapper.map_dma(self.base_vaddr + iova, iova, PAGE_SIZE, *after)

    def perms(self, phys: int) -> tuple[bool, bool]:
        """(device may read, device may write) the page holding ``phys``."""
        refs = self.refs.get(phys >> PAGE_SHIFT)
        return refs.perms if refs is not None else (False, False)

    def mapped_bytes(self) -> int:
        return len(self.refs) * PAGE_SIZE
