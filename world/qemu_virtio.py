"""The QEMU virtio-net back end for ``--nic qemu-virtio``: QEMU's ``virtio-net-pci`` behind the kernel's virtio-mmio.

The machine is world/qemu.py's (one QEMU process, its guest RAM the
sandbox's memory, each ``[[cable]]`` a pair of UDP sockets, a cable's pcap
QEMU's own filter-dump) with ``virtio-net-pci`` devices in place of
e1000s.  The kernel's virtio driver (verifier/virtio/) speaks the
virtio-mmio register map the emulated device has; ``QemuVirtioMmio``
(driver/qemu/virtio_mmio.py) translates it onto QEMU's modern PCI
transport, so the same ``Kernel.attach_nic`` brings QEMU's device up and the
same trapped QueueNotify runs in front of it: in mode ``verifier`` QEMU's
queues point at the kernel's shadow virtqueues and QEMU walks the kernel's
flattened copy of each accepted chain, never the tenant's table.

Completions reach ``Kernel.interrupt`` through the ISR poller
(driver/qemu/virtio_irq.py).  Modes ``none`` and ``verifier`` only, as for
the emulated virtio NIC (verifier/virtio/gate.py ``SUPPORTED``), and at most
``QEMU_QUEUE_MAX`` descriptors per virtqueue.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from driver.qemu.args import QEMU_BINARY, VIRTIO_NET
from driver.qemu.loopback import CABLE_RCVBUF
from driver.qemu.virtio_irq import IsrPoller
from driver.qemu.virtio_mmio import QemuVirtioMmio
from driver.qemu.virtio_net import QEMU_QUEUE_MAX
from ring.memory import PhysicalMemory
from ring.syscalls import RegisterBus
from verifier.audit.rejections import AuditSink
from verifier.kernel import Kernel
from verifier.virtio.gate import SUPPORTED
from world.build import World
from world.qemu import QemuBackend, start_machine
from world.scenario import Scenario


def scenario_problem(scenario: Scenario) -> str | None:
    """Why the scenario cannot run on QEMU's virtio-net (None if it can): its protection mode and ring sizes."""
    if scenario.protection not in SUPPORTED:
        modes = " and ".join(p.value for p in SUPPORTED)
        return f"{scenario.source}: protection {scenario.protection.value}: virtio NICs support {modes}"
    for t in scenario.tenants:
        if t.ring & (t.ring - 1) or t.ring > QEMU_QUEUE_MAX:
            return (
                f"{scenario.source}: tenant {t.name}: ring {t.ring} is not a virtqueue size QEMU's virtio-net "
                f"takes (a power of 2 up to {QEMU_QUEUE_MAX})"
            )
    return None


def fit_rings(scenario: Scenario) -> Scenario:
    """The scenario with each tenant's rings capped at ``QEMU_QUEUE_MAX`` (the default scenario asks for 512)."""
    tenants = tuple(dataclasses.replace(t, ring=min(t.ring, QEMU_QUEUE_MAX)) for t in scenario.tenants)
    return dataclasses.replace(scenario, tenants=tenants)


class QemuVirtio(QemuBackend):
    """The scenario's NICs as QEMU's virtio-net-pci devices, each behind the virtio-mmio map the kernel speaks."""

    def __init__(self, pcap: str | bool | None = True, binary: str = QEMU_BINARY, rcvbuf: int = CABLE_RCVBUF) -> None:
        super().__init__(pcap, binary, rcvbuf)
        self._nics: dict[str, QemuVirtioMmio] = {}

    @property
    def nics(self) -> dict[str, QemuVirtioMmio]:
        return self._nics

    def ram(self, scenario: Scenario) -> npt.NDArray[np.uint8]:
        """Start QEMU with one virtio-net-pci per NIC on its cable socket; its guest RAM is the machine's memory."""
        problem = scenario_problem(scenario)
        if problem is not None:
            raise ValueError(problem)
        self._machine, self.dumps = start_machine(scenario, self.pcap, self.binary, self.rcvbuf, VIRTIO_NET)
        ram = self._machine.ram
        self._nics = {name: QemuVirtioMmio(nic, ram) for name, nic in self._machine.virtio.items()}
        return ram

    def plug(self, scenario: Scenario, memory: PhysicalMemory, kernel: Kernel) -> Mapping[str, RegisterBus]:
        """The NICs are in QEMU already, cabled by their sockets; their ISRs are polled for the kernel."""
        machine = self.machine
        self.poller = IsrPoller(machine.connection, list(self._nics.values()), machine.cables.waiting)
        return self._nics

    def connect(self, name: str, line: Callable[[], None]) -> None:
        self._nics[name].irq = line  # raised by the poller when the device's ISR shows a notification

    def start(self) -> None:
        assert self.poller is not None
        self.poller.start()  # no receive hold-off: QEMU's virtio-net takes frames once a buffer is posted


def qemu_virtio_world(
    scenario: Scenario,
    pcap: str | bool | None = True,
    audit: AuditSink | None = None,
    binary: str = QEMU_BINARY,
    rcvbuf: int = CABLE_RCVBUF,
) -> World[QemuVirtio]:
    """Start QEMU with virtio-net NICs, build memory and kernel over its RAM, bring the NICs up, spawn the tenants."""
    return World.assemble(scenario, QemuVirtio(pcap, binary, rcvbuf), audit)
