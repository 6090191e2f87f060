"""The lab's composition root: the project's kernel in front of a real 82574L under VFIO.

Runs inside the lab VM (lab/, docs/lab.md).  It builds the same machine as
``world/build.py`` with two differences:

- ``PhysicalMemory`` is backed by one anonymous mmap of this process, so a
  sandbox "physical" address ``p`` is byte ``p`` of that buffer, and the
  real device reaches it at IOVA ``p`` once it is mapped (driver/vfio/dma.py);
- the NIC is the real e1000e, bound to vfio-pci, attached to the kernel
  through its BAR0 (``Kernel.attach_nic`` runs the usual bring-up on it),
  with its PHY looped back so it receives what it sends.

The NIC's owner (one tenant, one IOMMU domain per device as VFIO gives)
gets a ``VfioTenant``: its pins are VFIO_IOMMU_MAP_DMA.  Every other tenant
is a plain kernel process whose pins map nothing into this device.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field

import numpy as np

from driver.vfio.dma import IommuMap
from driver.vfio.e1000e import E1000eVfio
from driver.vfio.tenant import VfioTenant
from ring import regs
from ring.memory import PhysicalMemory
from verifier.audit.rejections import AuditSink
from verifier.kernel import Kernel, Process
from verifier.modes.protection import Protection
from verifier.pins import RELEASED

NIC = "e1000e"
#: QEMU's -device e1000e,mac=... in lab/qemu.py; the kernel programs it into RAL0/RAH0.
MAC = bytes.fromhex("020000008274")
#: EtherType 0x88B5 (IEEE 802 local experimental) of the lab's test frames: QEMU's e1000e parses no L3
#: header behind it, so no checksum offload touches the payload on the way round the PHY loopback.
ETHERTYPE_LOCAL = b"\x88\xb5"
MEMORY_SIZE = 16 << 20
KERNEL_SIZE = 1 << 20
#: Modes the lab supports: mode ``iommu`` means IOVA = the tenant's virtual address, an emulated
#: IOMMU's convention; the lab's real IOMMU uses IOVA = physical address instead.
LAB_MODES = (Protection.NONE, Protection.VERIFIER, Protection.UNSAFE_INPLACE)


def bring_up(kernel: Kernel, nic: E1000eVfio, *, promiscuous: bool = False) -> None:
    """Attach the real 82574L to the kernel, loop its PHY back and wait for the link.

    The kernel's own bring-up comes first (``Kernel.attach_nic``: CTRL.RST, link up, RAL0/RAH0,
    RCTL, TCTL; verifier/nic_control.py): it resets the device and writes RCTL, so the loopback
    and receive-filter bits are set after it.  ``promiscuous`` sets RCTL.UPE and RCTL.MPE, so a
    frame is received whatever its first six bytes (its destination MAC) are."""
    nic.irq = kernel.interrupt(NIC)
    kernel.attach_nic(NIC, nic.bar, MAC)
    if promiscuous:
        nic.bar.write32(regs.RCTL, nic.bar.read32(regs.RCTL) | regs.RCTL_UPE | regs.RCTL_MPE)
    nic.loopback(True)
    nic.wait_link()


@dataclass
class LabWorld:
    """Memory, kernel, the real NIC and its IOMMU map; ``close()`` releases the device."""

    protection: Protection
    memory: PhysicalMemory
    kernel: Kernel
    nic: E1000eVfio
    iommu: IommuMap
    owner: VfioTenant | None = None
    tenants: dict[str, Process] = field(default_factory=dict)

    @classmethod
    def build(cls, bdf: str, protection: Protection = Protection.VERIFIER, audit: AuditSink | None = None,
              seed: int = 1) -> LabWorld:  # fmt: skip
        protection = Protection(protection)
        if protection not in LAB_MODES:
            raise ValueError(f"the lab runs modes {', '.join(m.value for m in LAB_MODES)}, not {protection.value}")
        # the array keeps the mapping alive; it goes with the world
        data = np.frombuffer(mmap.mmap(-1, MEMORY_SIZE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), dtype=np.uint8)
        memory = PhysicalMemory(MEMORY_SIZE, KERNEL_SIZE, seed=seed, backing=data)
        kernel = Kernel(memory, protection, audit)
        nic = E1000eVfio.open(bdf)
        try:
            iommu = IommuMap(nic.container, data.ctypes.data, MEMORY_SIZE)
            bring_up(kernel, nic)
        except BaseException:
            nic.close()
            raise
        return cls(protection, memory, kernel, nic, iommu)

    def spawn(self, name: str) -> Process:
        """A tenant with no access to the NIC's IOMMU domain."""
        proc = self.kernel.spawn(name)
        self.tenants[name] = proc
        return proc

    def spawn_owner(self, name: str) -> VfioTenant:
        """The tenant that owns the NIC: its pins and rings are mapped into the device's domain."""
        if self.owner is not None:
            raise ValueError(f"{NIC} already has an owner (one IOMMU domain per device)")
        proc = self.spawn(name)

        def pin_gone(handle: int) -> bool:
            pin = proc.pins.pins.get(handle)
            return pin is None or pin.state == RELEASED

        self.owner = VfioTenant(proc, self.iommu, self.nic.bar, pin_gone)
        self.nic.after_poll.append(self.owner.settle)
        return self.owner

    def close(self) -> None:
        self.nic.close()  # closing the container drops every mapping (and unpins the pages)

    def __enter__(self) -> LabWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
