"""The lab's composition root: the project's kernel in front of a real 82574L under VFIO.

Runs inside the lab VM (lab/, docs/lab.md).  The machine is built by the
one builder (``World.assemble``, world/build.py) from a one-NIC scenario
written here, with the ``Vfio`` back end, which differs from the emulated
one in two ways:

- ``PhysicalMemory`` is backed by one anonymous mmap of this process, so a
  sandbox "physical" address ``p`` is byte ``p`` of that buffer, and the
  real device reaches it at IOVA ``p`` once it is mapped (driver/vfio/dma.py);
- the NIC is the real e1000e, bound to vfio-pci, attached to the kernel
  through its BAR0 (``Kernel.attach_nic`` runs the usual bring-up on it),
  with its PHY looped back so it receives what it sends.

The scenario names no tenant: they come later, through ``spawn`` and
``spawn_owner``, because the owner of the device is a ``VfioTenant``.
(lab/guest/noiommu.py stays apart: its memory is the guest's real physical
RAM, a ``GuestPhysicalMemory``, not a buffer the builder can lay out.)

The NIC's owner (one tenant, one IOMMU domain per device as VFIO gives)
gets a ``VfioTenant``: its pins are VFIO_IOMMU_MAP_DMA.  Every other tenant
is a plain kernel process whose pins map nothing into this device.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from device.e1000 import EngineMode
from driver.vfio.dma import IommuMap
from driver.vfio.e1000e import E1000eVfio
from driver.vfio.tenant import VfioTenant
from ring import regs
from ring.memory import PhysicalMemory
from ring.syscalls import RegisterBus
from verifier.audit.rejections import AuditSink
from verifier.kernel import Kernel, Process
from verifier.modes.protection import Protection
from verifier.pins import RELEASED
from world.backend import Pcap
from world.build import World
from world.scenario import NicSpec, Scenario

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
    loop_back(nic, promiscuous=promiscuous)


def loop_back(nic: E1000eVfio, *, promiscuous: bool = False) -> None:
    """After the kernel's bring-up (which resets the device and writes RCTL): loop the PHY back, wait for the link."""
    if promiscuous:
        nic.bar.write32(regs.RCTL, nic.bar.read32(regs.RCTL) | regs.RCTL_UPE | regs.RCTL_MPE)
    nic.loopback(True)
    nic.wait_link()


def lab_scenario(protection: Protection, seed: int) -> Scenario:
    """The lab's machine: 16 MiB of memory, the 82574L, no cable (its PHY is looped back), no tenant yet."""
    return Scenario(
        name="lab",
        source="lab/guest/world.py",
        seed=seed,
        engine=EngineMode.INLINE,  # unused: the real device runs on its own; the lab polls it (nic.poll)
        protection=protection,
        memory_size=MEMORY_SIZE,
        kernel_size=KERNEL_SIZE,
        nics=(NicSpec(NIC, MAC),),
        tenants=(),
    )


class Vfio:
    """The lab's back end: RAM in an anonymous mmap, the scenario's one NIC the real 82574L under VFIO."""

    def __init__(self, bdf: str) -> None:
        self.bdf = bdf
        self.data: npt.NDArray[np.uint8] | None = None
        self.nic: E1000eVfio | None = None
        self.iommu: IommuMap | None = None

    @property
    def nics(self) -> Mapping[str, E1000eVfio]:
        return {} if self.nic is None else {NIC: self.nic}

    @property
    def pcaps(self) -> Sequence[Pcap]:
        return ()

    def ram(self, scenario: Scenario) -> npt.NDArray[np.uint8]:
        # the array keeps the mapping alive; it goes with the world
        size = scenario.memory_size
        self.data = np.frombuffer(mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), dtype=np.uint8)
        return self.data

    def plug(self, scenario: Scenario, memory: PhysicalMemory, kernel: Kernel) -> Mapping[str, RegisterBus]:
        """Open the device (its container is its IOMMU domain) and map nothing yet: pins map pages."""
        assert self.data is not None
        self.nic = E1000eVfio.open(self.bdf)
        self.iommu = IommuMap(self.nic.container, self.data.ctypes.data, self.data.size)
        return {NIC: self.nic.bar}

    def connect(self, name: str, line: Callable[[], None]) -> None:
        assert self.nic is not None
        self.nic.irq = line  # called from nic.poll(): the lab polls the device's ICR

    def attached(self, name: str) -> None:
        assert self.nic is not None
        loop_back(self.nic)

    def start(self) -> None:
        pass

    def in_flight_limit(self, frame_bytes: int) -> int | None:
        """None: the PHY loopback is inside the device; what finds no RX descriptor is counted in MPC."""
        return None

    def settle(self, timeout_s: float) -> bool:
        """Nothing runs the device in the background: the lab's callers poll it themselves (``nic.poll``)."""
        return True

    def close(self) -> None:
        if self.nic is not None:
            self.nic.close()  # closing the container drops every mapping (and unpins the pages)


@dataclass
class LabWorld:
    """Memory, kernel, the real NIC and its IOMMU map; ``close()`` releases the device."""

    world: World[Vfio]
    owner: VfioTenant | None = None

    @classmethod
    def build(cls, bdf: str, protection: Protection = Protection.VERIFIER, audit: AuditSink | None = None,
              seed: int = 1) -> LabWorld:  # fmt: skip
        protection = Protection(protection)
        if protection not in LAB_MODES:
            raise ValueError(f"the lab runs modes {', '.join(m.value for m in LAB_MODES)}, not {protection.value}")
        return cls(World.assemble(lab_scenario(protection, seed), Vfio(bdf), audit))

    @property
    def protection(self) -> Protection:
        return self.world.scenario.protection

    @property
    def memory(self) -> PhysicalMemory:
        return self.world.memory

    @property
    def kernel(self) -> Kernel:
        return self.world.kernel

    @property
    def nic(self) -> E1000eVfio:
        return self.world.nics[NIC]

    @property
    def iommu(self) -> IommuMap:
        assert self.world.backend.iommu is not None  # set when the builder plugged the device in
        return self.world.backend.iommu

    @property
    def tenants(self) -> dict[str, Process]:
        return self.world.tenants

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
        self.world.close()

    def __enter__(self) -> LabWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
