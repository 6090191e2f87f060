"""The QEMU back end for ``--nic qemu``: the scenario's NICs are QEMU e1000s, its memory is QEMU's RAM.

One QEMU process holds every NIC of the scenario, as one machine holds
several PCI cards; its guest RAM *is* the sandbox's ``PhysicalMemory``
(driver/qemu/args.py), so the kernel pins, checks and snapshots the very
bytes QEMU's device model DMAs.  Each ``[[cable]]`` becomes a pair of
``-netdev dgram`` UDP sockets on 127.0.0.1 connected to each other; a NIC
on no cable has an unconnected socket, and its frames are dropped.  A cable's pcap is QEMU's own
``filter-dump`` of its first NIC, both directions.

The builder is the same (``World.assemble``, world/build.py) and so is the
kernel: ``attach_nic`` brings each device up through its BAR, and the device's completions reach
``Kernel.interrupt`` through driver/qemu/irq.py.  Mode ``iommu`` is
refused: QEMU's e1000 DMAs guest-physical addresses and the sandbox's
IOMMU cannot sit in front of it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from driver.qemu.args import E1000, QEMU_BINARY, QemuNicSpec
from driver.qemu.irq import CausePoller, IrqPoller
from driver.qemu.loopback import CABLE_RCVBUF, cable_capacity, cable_socket
from driver.qemu.machine import QemuE1000, QemuError, QemuMachine
from ring.memory import PhysicalMemory
from ring.syscalls import RegisterBus
from verifier.audit.rejections import AuditSink
from verifier.kernel import Kernel
from verifier.modes.protection import Protection
from world.backend import Pcap
from world.build import World
from world.scenario import Scenario


@dataclass(frozen=True)
class QemuPcap:
    """A pcap QEMU writes itself (``-object filter-dump``)."""

    path: Path


def nic_specs(
    scenario: Scenario, pcap: str | bool | None = True, rcvbuf: int = CABLE_RCVBUF, model: str = E1000
) -> list[QemuNicSpec]:
    """A cable socket for every NIC (cabled pairs connected to each other) and the pcap of each cable."""
    for nic in scenario.nics:
        if nic.queues != 1:
            raise ValueError(
                f"{scenario.source}: nic {nic.name!r}: QEMU's {model} has one queue here, not {nic.queues}"
            )
    socks: dict[str, socket.socket] = {}
    try:
        for nic in scenario.nics:
            socks[nic.name] = cable_socket(rcvbuf)
        dumps: dict[str, Path] = {}
        for cable in scenario.cables:
            socks[cable.a].connect(socks[cable.b].getsockname())
            socks[cable.b].connect(socks[cable.a].getsockname())
            path = cable.pcap if pcap is True else (pcap if isinstance(pcap, str) else None)
            if path:
                dumps[cable.a] = Path(path).absolute()
    except BaseException:
        for sock in socks.values():
            sock.close()
        raise
    return [QemuNicSpec(n.name, n.mac, socks[n.name], dumps.get(n.name), model) for n in scenario.nics]


def start_machine(
    scenario: Scenario, pcap: str | bool | None, binary: str, rcvbuf: int, model: str = E1000
) -> tuple[QemuMachine, list[QemuPcap]]:
    """One QEMU with a ``model`` NIC per scenario NIC on its cable socket, and the pcaps it will write."""
    specs = nic_specs(scenario, pcap, rcvbuf, model)
    try:
        for spec in specs:
            if spec.pcap is not None:
                spec.pcap.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        for spec in specs:
            spec.sock.close()
        raise
    machine = QemuMachine(specs, scenario.memory_size, binary)
    return machine, [QemuPcap(s.pcap) for s in specs if s.pcap is not None]


class QemuBackend:
    """What every QEMU back end shares: one QEMU process whose RAM is the sandbox's memory, its pcaps, the poller
    that turns its devices' interrupt causes into the kernel's interrupts, and how it is stopped.

    ``pcap``: True = as the scenario says, False = none, a path = that file.
    ``rcvbuf``: the receive buffer asked for each cable socket (the kernel may grant less).
    """

    def __init__(self, pcap: str | bool | None = True, binary: str = QEMU_BINARY, rcvbuf: int = CABLE_RCVBUF) -> None:
        self.pcap = pcap
        self.binary = binary
        self.rcvbuf = rcvbuf
        self._machine: QemuMachine | None = None
        self.poller: CausePoller | None = None
        self.dumps: list[QemuPcap] = []

    @property
    def pcaps(self) -> Sequence[Pcap]:
        return self.dumps

    def attached(self, name: str) -> None:
        pass

    @property
    def machine(self) -> QemuMachine:
        """The QEMU process (its qtest connection, pid, cable ports)."""
        if self._machine is None:
            raise QemuError("QEMU is not running: the world was not built")
        return self._machine

    def in_flight_limit(self, frame_bytes: int) -> int:
        """Frames of ``frame_bytes`` that may be on a cable at once without the kernel dropping one.

        A loopback UDP socket drops a datagram silently when its receive
        buffer is full, and QEMU stops reading it while the e1000 has no free
        RX descriptor.  Without root the buffer is capped by
        net.core.rmem_max (208 KiB on a stock kernel: about 175 full-size
        frames), so a sender that keeps more in flight loses frames.  The
        pingpong demo clocks its window to this, as TCP clocks to the
        receiver's window.
        """
        return cable_capacity(self.machine.rcvbuf, frame_bytes)

    def settle(self, timeout_s: float) -> bool:
        """Wait until no frame is in flight and every completion reached the kernel."""
        assert self.poller is not None
        return self.poller.drain(timeout_s)

    def close(self) -> None:
        if self.poller is not None:
            self.poller.stop()  # before QEMU goes: the thread must not poll a closed connection
        if self._machine is not None:
            self._machine.close()


class Qemu(QemuBackend):
    """The scenario's NICs as QEMU's e1000s."""

    @property
    def nics(self) -> dict[str, QemuE1000]:
        return {} if self._machine is None else self._machine.nics

    def ram(self, scenario: Scenario) -> npt.NDArray[np.uint8]:
        """Start QEMU with one e1000 per NIC on its cable socket; its guest RAM is the machine's memory."""
        if scenario.protection is Protection.IOMMU:
            raise ValueError("protection iommu needs emulated NICs: QEMU's e1000 DMAs guest-physical addresses")
        self._machine, self.dumps = start_machine(scenario, self.pcap, self.binary, self.rcvbuf)
        return self._machine.ram

    def plug(self, scenario: Scenario, memory: PhysicalMemory, kernel: Kernel) -> Mapping[str, RegisterBus]:
        """The NICs are in QEMU already, cabled by their sockets; their interrupts reach us through a poller."""
        machine = self.machine
        self.poller = IrqPoller(machine.connection, list(machine.nics.values()), machine.cables.waiting)
        return machine.nics

    def connect(self, name: str, line: Callable[[], None]) -> None:
        self.machine.nics[name].irq = line  # raised by the poller when the device's ICR shows a cause

    def start(self) -> None:
        assert self.poller is not None
        self.poller.start()
        self.machine.wait_rx_ready()  # a second of sleep: a Ctrl-C lands here as often as not


def qemu_world(
    scenario: Scenario,
    pcap: str | bool | None = True,
    audit: AuditSink | None = None,
    binary: str = QEMU_BINARY,
    rcvbuf: int = CABLE_RCVBUF,
) -> World[Qemu]:
    """Start QEMU, build memory and kernel over its RAM, bring the NICs up, spawn the tenants."""
    return World.assemble(scenario, Qemu(pcap, binary, rcvbuf), audit)
