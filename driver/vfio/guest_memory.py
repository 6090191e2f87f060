"""Physical memory that *is* the machine's: the project's ``PhysicalMemory`` over real physical addresses.

Without an IOMMU (VFIO no-IOMMU mode, driver/vfio/device.py) a descriptor's
address is a physical address, and the device reaches all of RAM.  For
the project's kernel to judge real descriptors, its ``PhysicalMemory``
must then span the machine's physical address space, with the tenant's
memory at the physical addresses the device will really use.  This module
builds exactly that, and changes nothing in the kernel or the verifier:

- **the tenant's memory** is hugetlb pages (2 MiB, ``memfd_create`` with
  ``MFD_HUGETLB``), as DPDK and ixy use for DMA: physically contiguous
  within a page, never swapped and never moved (hugetlb pages are not
  touched by compaction or NUMA balancing), and also mlock'ed;
- **their physical addresses** come from /proc/self/pagemap (bits 0-54:
  the page frame number, bit 63: present; Documentation/admin-guide/mm/pagemap.rst;
  root only, since 4.2 the PFN reads as 0 without CAP_SYS_ADMIN);
- **the address space**: one read-only, never-populated reservation as
  large as physical memory (the end of the last "System RAM" line of
  /proc/iomem), and each hugepage mapped again into it, ``MAP_FIXED``, at
  reservation + its physical address.  Byte ``p`` of the numpy array over
  the reservation is then physical byte ``p`` wherever the tenant's memory
  is, and a read of the zero page elsewhere.

``GuestPhysicalMemory`` marks every frame OWNER_KERNEL (the real kernel,
other processes, the device's BARs: nothing the sandbox may hand out)
except the hugepages, which are free for the usual first-fit allocator.
The verifier's pin table, address checks and shadow rings then work on
real physical addresses: a descriptor naming the kernel's own text is not
pinned, and is refused as anywhere else.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import re
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ring.memory import OWNER_FREE, OWNER_KERNEL, PAGE_SHIFT, PAGE_SIZE, FrameRange, PhysicalMemory

HUGE_PAGE_SIZE = 2 << 20
NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
PAGEMAP = Path("/proc/self/pagemap")
IOMEM = Path("/proc/iomem")
PAGEMAP_ENTRY = struct.Struct("<Q")
PAGEMAP_PFN_MASK = (1 << 55) - 1
PAGEMAP_PRESENT = 1 << 63
#: include/uapi/asm-generic/mman-common.h and mman.h (x86): flags Python's mmap module does not export.
MAP_FIXED = 0x10
MAP_NORESERVE = 0x4000
MAP_FAILED = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


class GuestMemoryError(Exception):
    """The machine could not give physically addressed memory (no hugepages, no pagemap access)."""


def _check(result: int | None, what: str) -> int:
    if result is None or result == MAP_FAILED or result == -1:
        err = ctypes.get_errno()
        raise GuestMemoryError(f"{what}: {os.strerror(err)} (errno {err})")
    return result


def ram_end(iomem: str | None = None) -> int:
    """One past the last byte of RAM: the highest end of a top-level "System RAM" range of /proc/iomem."""
    text = IOMEM.read_text() if iomem is None else iomem
    ends = [int(m.group(1), 16) + 1 for m in re.finditer(r"^[0-9a-f]+-([0-9a-f]+) : System RAM$", text, re.M)]
    if not ends or max(ends) == 1:
        raise GuestMemoryError("no System RAM in /proc/iomem, or its addresses read as 0 (not root?)")
    return max(ends)


def phys_of(vaddr: int) -> int:
    """The physical address of a (present) virtual address of this process, from /proc/self/pagemap."""
    with PAGEMAP.open("rb") as pagemap:
        pagemap.seek((vaddr >> PAGE_SHIFT) * PAGEMAP_ENTRY.size)
        (entry,) = PAGEMAP_ENTRY.unpack(pagemap.read(PAGEMAP_ENTRY.size))
    pfn = entry & PAGEMAP_PFN_MASK
    if not entry & PAGEMAP_PRESENT or pfn == 0:
        raise GuestMemoryError(f"pagemap gives no frame for {vaddr:#x} (not present, or not CAP_SYS_ADMIN)")
    return (pfn << PAGE_SHIFT) | (vaddr & (PAGE_SIZE - 1))


def reserve_hugepages(count: int) -> None:
    """Make sure the kernel's hugetlb pool holds ``count`` more free 2 MiB pages (as root)."""
    found = re.search(r"HugePages_Free:\s+(\d+)", Path("/proc/meminfo").read_text())
    if found is None:
        raise GuestMemoryError("no HugePages_Free in /proc/meminfo (a kernel without CONFIG_HUGETLBFS)")
    free = int(found.group(1))
    if free >= count:
        return
    total = int(NR_HUGEPAGES.read_text()) + count - free
    NR_HUGEPAGES.write_text(f"{total}\n")
    if int(NR_HUGEPAGES.read_text()) < total:
        raise GuestMemoryError(f"the kernel gave fewer than {total} hugepages (memory too fragmented?)")


class HugepageRam:
    """``count`` hugetlb pages placed at their own physical addresses in a reservation as big as RAM."""

    def __init__(self, count: int, span: int | None = None) -> None:
        self.span = -(-(span or ram_end()) // HUGE_PAGE_SIZE) * HUGE_PAGE_SIZE
        reserve_hugepages(count)
        self.fd = os.memfd_create("nic-sandbox-dma", os.MFD_HUGETLB)
        self._base = 0
        self.placed: list[FrameRange] = []
        try:
            os.ftruncate(self.fd, count * HUGE_PAGE_SIZE)
            never_populated = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE
            raw = _check(
                _libc.mmap(None, self.span + HUGE_PAGE_SIZE, mmap.PROT_READ, never_populated, -1, 0), "reserve"
            )
            self._raw = raw
            self._base = -(-raw // HUGE_PAGE_SIZE) * HUGE_PAGE_SIZE  # hugetlb mappings must be 2 MiB aligned
            for index in range(count):
                self._place(index)
        except BaseException:
            self.close()
            raise

    def _place(self, index: int) -> None:
        offset = index * HUGE_PAGE_SIZE
        prot, shared = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED
        probe = _check(_libc.mmap(None, HUGE_PAGE_SIZE, prot, shared | mmap.MAP_POPULATE, self.fd, offset), "mmap")
        try:
            phys = phys_of(probe)
        finally:
            _libc.munmap(probe, HUGE_PAGE_SIZE)
        if phys % HUGE_PAGE_SIZE or phys + HUGE_PAGE_SIZE > self.span:
            raise GuestMemoryError(f"hugepage at {phys:#x} is not a 2 MiB page inside RAM")
        where = self._base + phys
        _check(_libc.mmap(where, HUGE_PAGE_SIZE, prot, shared | MAP_FIXED | mmap.MAP_POPULATE, self.fd, offset),
               "mmap hugepage at its physical address")  # fmt: skip
        _check(_libc.mlock(where, HUGE_PAGE_SIZE), "mlock")
        if phys_of(where) != phys:
            raise GuestMemoryError(f"the hugepage moved: {phys_of(where):#x} != {phys:#x}")
        self.placed.append(FrameRange(phys >> PAGE_SHIFT, HUGE_PAGE_SIZE >> PAGE_SHIFT))

    def array(self) -> np.ndarray:
        """The reservation as bytes: index = physical address."""
        return np.ctypeslib.as_array((ctypes.c_uint8 * self.span).from_address(self._base))

    def close(self) -> None:
        if self._base:
            _libc.munmap(self._raw, self.span + HUGE_PAGE_SIZE)
            self._base = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class GuestPhysicalMemory(PhysicalMemory):
    """``PhysicalMemory`` whose address ``p`` is the machine's physical address ``p``.

    Only the hugepages of ``ram`` are backed and free to allocate; every
    other frame is the kernel's.  ``PhysicalMemory.__init__`` is not run: it
    would write its seeded kernel image and canaries over the first frames,
    and here the kernel's memory is the real kernel's, which the sandbox
    neither writes nor may read (``canaries`` is empty: the lab compares
    with the real kernel's bytes instead)."""

    def __init__(self, ram: HugepageRam) -> None:
        self.ram = ram
        self.size = ram.span
        self.frames = self.size >> PAGE_SHIFT
        self.data = ram.array()
        self.owner = np.full(self.frames, OWNER_KERNEL, dtype=np.int32)
        for frames in ram.placed:
            self.owner[frames.first : frames.first + frames.count] = OWNER_FREE
            self.data[frames.phys : frames.phys + frames.nbytes] = 0
        first = min((f.first for f in ram.placed), default=self.frames)
        self.kernel_frames = FrameRange(0, first)  # the frames below the first hugepage (descriptive only)
        self._canaries: frozenset[bytes] = frozenset()

    @property
    def backed(self) -> Iterable[FrameRange]:
        return tuple(self.ram.placed)
