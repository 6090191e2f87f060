"""A tenant's system calls on a VFIO device: the pin *is* VFIO_IOMMU_MAP_DMA.

This wraps the kernel's own system calls (ring/syscalls.py) for the tenant
that owns the device, and adds what VFIO adds: a pin maps its pages into
the device's IOMMU domain (read for DEVICE_READ, write for DEVICE_WRITE),
an unpin unmaps them (a deferred unpin when the device has let go), and
opening a queue maps the descriptor ring the kernel programmed into the
device (read and write: the device fetches descriptors and writes back
status), as a kernel driver's dma_alloc_coherent ring is mapped.  Nothing
else is ever mapped, so a descriptor that names any other page, the
kernel's, another tenant's or a page this tenant unpinned, faults in the
IOMMU.  Other tenants' pins are not in this device's domain at all (one
domain per device, as VFIO gives one container per assigned device).
"""

from __future__ import annotations

from collections.abc import Callable

from driver.vfio.dma import IommuMap
from ring import regs
from ring.syscalls import DEVICE_READ, DEVICE_WRITE, DmaRegion, PinHandle, QueueHandle, RegisterBus, Syscalls

RELEASED = "released"
DEFERRED = "deferred"


class VfioTenant:
    """Syscalls of the device's owner, with IOMMU mappings following its pins and rings."""

    def __init__(self, inner: Syscalls, iommu: IommuMap, device: RegisterBus,
                 pin_gone: Callable[[int], bool]) -> None:  # fmt: skip
        """``device``: the NIC's registers (to read back where the kernel put a ring);
        ``pin_gone(handle)``: True once a deferred unpin has really been released."""
        self.inner = inner
        self.iommu = iommu
        self.device = device
        self.pin_gone = pin_gone
        self.pins: dict[int, tuple[tuple[tuple[int, int], ...], bool, bool]] = {}
        self.deferred: list[int] = []
        self.rings: list[tuple[int, int]] = []

    @property
    def tenant_id(self) -> int:
        return self.inner.tenant_id

    def map_registers(self, nic: str) -> RegisterBus:
        return self.inner.map_registers(nic)

    def alloc_dma(self, nbytes: int) -> DmaRegion:
        return self.inner.alloc_dma(nbytes)

    def free_dma(self, region: DmaRegion) -> None:
        self.inner.free_dma(region)

    def virt_to_phys(self, vaddr: int) -> int:
        return self.inner.virt_to_phys(vaddr)

    def pin(self, vaddr: int, length: int, access: int) -> PinHandle:
        handle = self.inner.pin(vaddr, length, access)
        read, write = bool(access & DEVICE_READ), bool(access & DEVICE_WRITE)
        for phys, size in handle.ranges:
            self.iommu.map(phys, size, read, write)
        self.pins[int(handle)] = (handle.ranges, read, write)
        return handle

    def unpin(self, handle: int) -> str:
        outcome = self.inner.unpin(handle)
        if outcome == DEFERRED:
            self.deferred.append(handle)  # the device still owns some of it: unmap when the kernel lets go
        else:
            self._unmap(handle)
        return outcome

    def settle(self) -> None:
        """Unmap pins whose deferred unpin the kernel has completed (call after completions were reaped)."""
        for handle in [h for h in self.deferred if self.pin_gone(h)]:
            self.deferred.remove(handle)
            self._unmap(handle)

    def _unmap(self, handle: int) -> None:
        ranges, read, write = self.pins.pop(handle)
        for phys, size in ranges:
            self.iommu.unmap(phys, size, read, write)

    def open_tx_queue(self, nic: str, queue: int, ring: DmaRegion, size: int) -> QueueHandle:
        handle = self.inner.open_tx_queue(nic, queue, ring, size)
        self._map_ring(regs.TDBAL, regs.TDBAH, regs.TDLEN, queue)
        return handle

    def open_rx_queue(self, nic: str, queue: int, ring: DmaRegion, size: int) -> QueueHandle:
        handle = self.inner.open_rx_queue(nic, queue, ring, size)
        self._map_ring(regs.RDBAL, regs.RDBAH, regs.RDLEN, queue)
        return handle

    def _map_ring(self, bal: int, bah: int, rlen: int, queue: int) -> None:
        """Map the ring the kernel just programmed (its shadow ring, or the user ring in mode none)."""
        read = self.device.read32
        base = read(regs.queue_reg(bal, queue)) | read(regs.queue_reg(bah, queue)) << 32
        length = read(regs.queue_reg(rlen, queue))
        self.iommu.map(base, length, read=True, write=True)
        self.rings.append((base, length))
