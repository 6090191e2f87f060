"""What a tenant may ask of the kernel, and what it gets back.

These protocols are the system-call surface of the sandbox: the user-space
driver in this package talks only to them, and the kernel in ``verifier/``
implements them.  Keeping the surface this small is the "minimal mechanism
in the kernel" of the design: allocate DMA memory, learn physical addresses
(as ixy reads /proc/self/pagemap), open a queue, and write a doorbell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

#: Access a pin grants the device (ibv_reg_mr access flags; IOMMU_READ/IOMMU_WRITE of VFIO).
DEVICE_READ = 1  # TX buffers: the device reads them
DEVICE_WRITE = 2  # RX buffers: the device writes them


class PinHandle(int):
    """A pin's handle (an integer, as ibv_reg_mr's lkey is) that also carries what was pinned.

    ``ranges`` are the physically contiguous runs behind the pinned range, as
    ``(physical address, bytes)``, page-granular: what get_user_pages found.
    """

    ranges: tuple[tuple[int, int], ...]

    def __new__(cls, handle: int, ranges: tuple[tuple[int, int], ...] = ()) -> PinHandle:
        obj = super().__new__(cls, handle)
        obj.ranges = tuple(ranges)
        return obj


class RegisterBus(Protocol):
    """A 32-bit register space, as a PCI BAR is (device side or a window onto it)."""

    def read32(self, offset: int) -> int: ...

    def write32(self, offset: int, value: int) -> None: ...


@dataclass(frozen=True)
class DmaRegion:
    """A block of a tenant's memory the device may be pointed at.

    ``view`` is the tenant's own mapping (virtual address ``vaddr``);
    ``bus`` is the address the device must be given for its first byte
    (physical in modes ``none`` and ``verifier``, IO virtual under an IOMMU).
    The region is contiguous in both spaces, as a hugepage is.
    """

    vaddr: int
    bus: int
    size: int
    view: npt.NDArray[np.uint8]


@dataclass(frozen=True)
class QueueHandle:
    """An opened descriptor queue: its doorbell window, its tail register and its size."""

    nic: str
    queue: int
    doorbell: RegisterBus  # the tenant's mapping of the NIC's register window
    tail_offset: int  # the TDT/RDT register of this queue in that window
    size: int  # descriptors in the ring
    buffer_size: int  # RX: bytes the device writes per descriptor (RCTL.BSIZE)


class Syscalls(Protocol):
    """The kernel services one tenant can call."""

    @property
    def tenant_id(self) -> int: ...

    def map_registers(self, nic: str) -> RegisterBus:
        """The tenant's mapping of a NIC's register window (what VFIO's BAR mmap gives)."""
        ...

    def alloc_dma(self, nbytes: int) -> DmaRegion:
        """Physically contiguous, zeroed memory owned by this tenant."""
        ...

    def virt_to_phys(self, vaddr: int) -> int:
        """The pagemap lookup of one virtual address of this tenant."""
        ...

    def free_dma(self, region: DmaRegion) -> None:
        """Give the memory back (refused while any of it is pinned)."""
        ...

    def pin(self, vaddr: int, length: int, access: int) -> PinHandle:
        """Pin ``[vaddr, vaddr + length)`` for device access (DEVICE_READ/DEVICE_WRITE): a handle and its ranges."""
        ...

    def unpin(self, handle: int) -> str:
        """Release a pin: ``"released"``, or ``"deferred"`` while DMA that uses it is in flight."""
        ...

    def open_tx_queue(self, nic: str, queue: int, ring: DmaRegion, size: int) -> QueueHandle: ...

    def open_rx_queue(self, nic: str, queue: int, ring: DmaRegion, size: int) -> QueueHandle: ...


@dataclass(frozen=True)
class VirtqHandle:
    """An opened virtqueue (ring/virtio.py): where to notify it, and its size.

    ``region`` holds the descriptor table, the available ring and the used
    ring at the offsets of ``VirtqLayout.of(size)``; the driver notifies by
    writing ``queue`` to ``notify_offset`` (virtio-mmio's QueueNotify) through
    ``doorbell``.
    """

    nic: str
    queue: int
    doorbell: RegisterBus
    notify_offset: int
    size: int


class VirtioSyscalls(Syscalls, Protocol):
    """The kernel services of a tenant that drives a virtio NIC: those of every tenant, and opening a virtqueue."""

    def open_virtqueue(self, nic: str, queue: int, region: DmaRegion, size: int) -> VirtqHandle:
        """Hand the kernel a virtqueue laid out as ``VirtqLayout.of(size)`` in ``region`` (queue 0 RX, 1 TX)."""
        ...
