"""A tenant's virtual address space: pages mapped to physical frames.

Kernel-bypass drivers need physical addresses; ixy reads them from
/proc/self/pagemap.  Here the page table is a dict of virtual page to
frame, and ``virt_to_phys`` is that pagemap lookup.  Every mapping is
physically contiguous (as a hugepage is), which lets the tenant's view of a
region be a plain numpy slice of physical memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from ring.memory import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, FrameRange, PhysicalMemory
from ring.syscalls import DmaRegion

#: Where a tenant's DMA mappings start, far from address 0 as mmap places them.
USER_BASE = 0x7F00_0000_0000


class SegFault(Exception):
    """A virtual address that is not mapped in this address space."""


@dataclass(frozen=True)
class Mapping:
    vaddr: int
    frames: FrameRange


class AddressSpace:
    """Page table of one tenant."""

    def __init__(self, tenant_id: int, memory: PhysicalMemory) -> None:
        self.tenant_id = tenant_id
        self.memory = memory
        self.pages: dict[int, int] = {}
        self.mappings: list[Mapping] = []
        self._next = USER_BASE + tenant_id * (1 << 36)

    def mmap(self, nbytes: int) -> DmaRegion:
        """Allocate, map and zero ``nbytes`` (rounded up to pages) of contiguous memory."""
        frames = self.memory.alloc(nbytes, self.tenant_id)
        vaddr = self._next
        self._next += frames.nbytes + PAGE_SIZE  # a guard page between mappings
        for i in range(frames.count):
            self.pages[(vaddr >> PAGE_SHIFT) + i] = frames.first + i
        self.mappings.append(Mapping(vaddr, frames))
        return DmaRegion(vaddr, frames.phys, nbytes, self.memory.view(frames.phys, nbytes))

    def mapping_at(self, vaddr: int) -> Mapping:
        """The mapping that starts at ``vaddr`` (what munmap takes)."""
        for mapping in self.mappings:
            if mapping.vaddr == vaddr:
                return mapping
        raise SegFault(f"tenant {self.tenant_id}: no mapping starts at {vaddr:#x}")

    def munmap(self, mapping: Mapping) -> None:
        """Unmap and free the frames: they go back to the free pool, for anyone."""
        for i in range(mapping.frames.count):
            del self.pages[(mapping.vaddr >> PAGE_SHIFT) + i]
        self.mappings.remove(mapping)
        self.memory.free(mapping.frames)

    def virt_to_phys(self, vaddr: int) -> int:
        frame = self.pages.get(vaddr >> PAGE_SHIFT)
        if frame is None:
            raise SegFault(f"tenant {self.tenant_id}: address {vaddr:#x} is not mapped")
        return (frame << PAGE_SHIFT) | (vaddr & PAGE_MASK)

    def owns_phys(self, phys: int, nbytes: int) -> bool:
        """True when every frame of ``[phys, phys + nbytes)`` is mapped by this tenant."""
        if nbytes <= 0 or not self.memory.contains(phys, nbytes):
            return False
        first, last = phys >> PAGE_SHIFT, (phys + nbytes - 1) >> PAGE_SHIFT
        return bool((self.memory.owner[first : last + 1] == self.tenant_id).all())
