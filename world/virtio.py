"""The emulated virtio-net back end: ``VirtioNet`` devices over the sandbox's own memory, joined by ``Cable``s.

The same machine as world/emulated.py's, with virtio-net NICs on the
virtio-mmio transport instead of e1000s: the kernel probes each BAR
(MagicValue "virt"), brings the device up (verifier/virtio/control.py) and
opens virtqueues for tenants.  The device runs inline (inside the notify and
inside a frame's arrival), so a scenario and a seed give the same wire bytes
and pcap (invariant 7); the threaded engine, QEMU and the IOMMU are e1000
only.  ``virtio_queues`` is the tenant side a demo opens on such a NIC.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from device.clock import VirtualClock
from device.pcap import PcapWriter
from device.virtio_net import VirtioNet
from device.wire import Cable
from driver.tenant.virtio_queue import VirtioRxQueue, VirtioTxQueue
from ring.memory import PhysicalMemory
from ring.syscalls import RegisterBus, VirtioSyscalls
from verifier.audit.rejections import AuditSink
from verifier.kernel import Kernel
from verifier.rules.policy import Policy
from world.backend import Pcap
from world.build import World
from world.emulated import lay_cables
from world.scenario import Scenario


class EmulatedVirtio:
    """The scenario's NICs as emulated virtio-net devices (``pcap`` as ``Emulated``'s)."""

    def __init__(self, pcap: str | bool | None = True) -> None:
        self.pcap = pcap
        self.nics: dict[str, VirtioNet] = {}
        self.cables: list[Cable] = []
        self.writers: list[PcapWriter] = []

    @property
    def pcaps(self) -> Sequence[Pcap]:
        return self.writers

    def ram(self, scenario: Scenario) -> npt.NDArray[np.uint8] | None:
        return None

    def plug(self, scenario: Scenario, memory: PhysicalMemory, kernel: Kernel) -> Mapping[str, RegisterBus]:
        self.nics = {n.name: VirtioNet(n.name, memory, n.mac) for n in scenario.nics}
        self.cables, self.writers = lay_cables(
            scenario, {n: d.port for n, d in self.nics.items()}, VirtualClock, self.pcap
        )
        return self.nics

    def connect(self, name: str, line: Callable[[], None]) -> None:
        self.nics[name].irq = line

    def attached(self, name: str) -> None:
        pass

    def start(self) -> None:
        pass

    def in_flight_limit(self, frame_bytes: int) -> int | None:
        return None

    def settle(self, timeout_s: float) -> bool:
        return True

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def virtio_world(
    scenario: Scenario, pcap: str | bool | None = True, audit: AuditSink | None = None, policy: Policy | None = None
) -> World[EmulatedVirtio]:
    """The scenario built on emulated virtio-net NICs."""
    return World.assemble(scenario, EmulatedVirtio(pcap), audit, policy)


def virtio_queues(sys: VirtioSyscalls, nic: str, size: int) -> tuple[VirtioTxQueue, VirtioRxQueue]:
    """A tenant's transmitq1 and receiveq1 on virtio NIC ``nic``, ``size`` descriptors each."""
    return VirtioTxQueue(sys, nic, size), VirtioRxQueue(sys, nic, size)
