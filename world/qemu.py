"""The composition root for ``--nic qemu``: the scenario's NICs are QEMU e1000s, its memory is QEMU's RAM.

One QEMU process holds every NIC of the scenario, as one machine holds
several PCI cards; its guest RAM *is* the sandbox's ``PhysicalMemory``
(driver/qemu/args.py), so the kernel pins, checks and snapshots the very
bytes QEMU's device model DMAs.  Each ``[[cable]]`` becomes a pair of
``-netdev dgram`` UDP sockets on 127.0.0.1 connected to each other; a NIC
on no cable has an unconnected socket, and its frames are dropped.  A cable's pcap is QEMU's own
``filter-dump`` of its first NIC, both directions.

The kernel is the same ``Kernel`` as with emulated NICs: ``attach_nic``
brings each device up through its BAR, and the device's completions reach
``Kernel.interrupt`` through driver/qemu/irq.py.  Mode ``iommu`` is
refused: QEMU's e1000 DMAs guest-physical addresses and the sandbox's
IOMMU cannot sit in front of it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from driver.qemu.args import QEMU_BINARY, QemuNicSpec
from driver.qemu.irq import IrqPoller
from driver.qemu.loopback import CABLE_RCVBUF, cable_capacity, cable_socket
from driver.qemu.machine import QemuE1000, QemuMachine
from ring.memory import PhysicalMemory
from verifier.audit.rejections import AuditSink
from verifier.kernel import Kernel, Process
from verifier.modes.protection import Protection
from world.scenario import Scenario


@dataclass(frozen=True)
class QemuPcap:
    """A pcap QEMU writes itself (``-object filter-dump``)."""

    path: Path


def nic_specs(scenario: Scenario, pcap: str | bool | None = True, rcvbuf: int = CABLE_RCVBUF) -> list[QemuNicSpec]:
    """A cable socket for every NIC (cabled pairs connected to each other) and the pcap of each cable."""
    for nic in scenario.nics:
        if nic.queues != 1:
            raise ValueError(f"{scenario.source}: nic {nic.name!r}: QEMU's e1000 has one queue, not {nic.queues}")
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
    return [QemuNicSpec(n.name, n.mac, socks[n.name], dumps.get(n.name)) for n in scenario.nics]


@dataclass
class QemuWorld:
    """A world whose NICs are QEMU's; ``close()`` stops the poller and QEMU."""

    scenario: Scenario
    machine: QemuMachine
    memory: PhysicalMemory
    kernel: Kernel
    nics: dict[str, QemuE1000]
    poller: IrqPoller
    tenants: dict[str, Process] = field(default_factory=dict)
    pcaps: list[QemuPcap] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        scenario: Scenario,
        pcap: str | bool | None = True,
        audit: AuditSink | None = None,
        binary: str = QEMU_BINARY,
        rcvbuf: int = CABLE_RCVBUF,
    ) -> QemuWorld:
        """Start QEMU, build memory and kernel over its RAM, bring the NICs up, spawn the tenants.

        ``rcvbuf``: the receive buffer asked for each cable socket (the kernel may grant less).
        """
        if scenario.protection is Protection.IOMMU:
            raise ValueError("protection iommu needs emulated NICs: QEMU's e1000 DMAs guest-physical addresses")
        specs = nic_specs(scenario, pcap, rcvbuf)
        try:
            for spec in specs:
                if spec.pcap is not None:
                    spec.pcap.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            for spec in specs:
                spec.sock.close()
            raise
        machine = QemuMachine(specs, scenario.memory_size, binary)
        poller: IrqPoller | None = None
        try:
            memory = PhysicalMemory(scenario.memory_size, scenario.kernel_size, scenario.seed, backing=machine.ram)
            kernel = Kernel(memory, scenario.protection, audit)
            poller = IrqPoller(machine.connection, list(machine.nics.values()), machine.ports)
            world = cls(scenario, machine, memory, kernel, machine.nics, poller)
            world.pcaps = [QemuPcap(s.pcap) for s in specs if s.pcap is not None]
            for spec_nic in scenario.nics:
                dev = machine.nics[spec_nic.name]
                dev.irq = kernel.interrupt(spec_nic.name)  # the NIC's interrupt line, raised by the poller
                kernel.attach_nic(spec_nic.name, dev, spec_nic.mac, spec_nic.queues)
            for spec_tenant in scenario.tenants:
                world.tenants[spec_tenant.name] = kernel.spawn(spec_tenant.name)
            poller.start()
            machine.wait_rx_ready()  # a second of sleep: a Ctrl-C lands here as often as not
        except BaseException:
            if poller is not None:
                poller.stop()  # before QEMU goes: the thread must not poll a closed connection
            machine.close()
            raise
        return world

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

    def settle(self, timeout_s: float = 5.0) -> bool:
        """Wait until no frame is in flight and every completion reached the kernel."""
        return self.poller.drain(timeout_s)

    def close(self) -> None:
        self.poller.stop()
        self.machine.close()

    def __enter__(self) -> QemuWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
