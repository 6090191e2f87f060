"""A QEMU machine for tests, with the far end of every NIC's cable held by the test.

Each NIC's cable is a pair of connected UDP sockets on 127.0.0.1: QEMU gets
one (driver/qemu/loopback.py), the test keeps the other (``Rig.peers``), so a
test reads exactly the frames QEMU's e1000 put on the wire and injects
frames that arrive at its MAC.  ``memory`` is a ``PhysicalMemory`` over
QEMU's guest RAM; ``attach_kernel`` brings every NIC up under a ``Kernel``
with its interrupt line polled (driver/qemu/irq.py), as world/qemu.py
does for the demo.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from driver.qemu.args import E1000, QEMU_BINARY, QemuNicSpec
from driver.qemu.irq import READ_AHEAD, IrqPoller
from driver.qemu.loopback import cable_socket
from driver.qemu.machine import QemuE1000, QemuMachine
from driver.qemu.virtio_net import QemuVirtioNet
from ring.memory import PhysicalMemory
from tests.needs import need_tool
from verifier.audit.memory import MemoryAudit
from verifier.kernel import Kernel
from verifier.modes.protection import Protection

MEMORY = 16 << 20
KERNEL = 1 << 20
MACS = [bytes.fromhex("020000000001"), bytes.fromhex("020000000002")]
WIRE_TIMEOUT_S = 2.0


def need_qemu() -> None:
    need_tool(QEMU_BINARY, "qemu-system-x86")


@dataclass
class Rig:
    machine: QemuMachine
    memory: PhysicalMemory
    peers: dict[str, socket.socket]
    kernel: Kernel | None = None
    poller: IrqPoller | None = None
    extra: list[socket.socket] = field(default_factory=list)

    def nic(self, name: str = "nic0") -> QemuE1000:
        return self.machine.nics[name]

    def virtio(self, name: str = "nic0") -> QemuVirtioNet:
        return self.machine.virtio[name]

    def wire(self, name: str = "nic0", count: int = 1) -> list[bytes]:
        """The next ``count`` frames QEMU sent on ``name``'s cable (fails if they do not come)."""
        peer = self.peers[name]
        peer.settimeout(WIRE_TIMEOUT_S)
        return [peer.recv(65536) for _ in range(count)]

    def quiet_wire(self, name: str = "nic0", wait_s: float = 0.2) -> bool:
        """True if nothing arrives on ``name``'s cable within ``wait_s``."""
        peer = self.peers[name]
        peer.settimeout(wait_s)
        try:
            peer.recv(65536)
        except TimeoutError:
            return True
        return False

    def inject(self, frames: list[bytes], name: str = "nic0") -> None:
        """Frames arriving from the wire at ``name`` (raw Ethernet, no FCS, as QEMU's dgram carries them)."""
        for frame in frames:
            self.peers[name].send(frame)

    def attach_kernel(
        self, protection: Protection = Protection.VERIFIER, read_ahead: Sequence[int] = READ_AHEAD
    ) -> Kernel:
        """A kernel over this memory that brings every NIC up; completions arrive through the ICR poller.

        ``read_ahead``: the registers the poller reads with ICR for the handlers (driver/qemu/irq.py).
        """
        kernel = Kernel(self.memory, protection, MemoryAudit())
        for name, dev in self.machine.nics.items():
            dev.irq = kernel.interrupt(name)
            kernel.attach_nic(name, dev, dev.mac)
        self.kernel = kernel
        machine = self.machine
        self.poller = IrqPoller(
            machine.connection, list(machine.nics.values()), machine.cables.waiting, read_ahead=read_ahead
        ).start()
        return kernel

    def close(self) -> None:
        if self.poller is not None:
            self.poller.stop()
        self.machine.close()
        for sock in [*self.peers.values(), *self.extra]:
            sock.close()


def start_rig(nics: int = 1, model: str = E1000) -> Rig:
    """A fresh QEMU (a clean device: CTRL.RST does not reset QEMU's e1000) with ``nics`` cabled NICs of ``model``."""
    peers: dict[str, socket.socket] = {}
    specs = []
    for i in range(nics):
        name = f"nic{i}"
        ours, theirs = cable_socket(), cable_socket()
        ours.connect(theirs.getsockname())
        theirs.connect(ours.getsockname())
        peers[name] = theirs
        specs.append(QemuNicSpec(name, MACS[i], ours, model=model))
    machine = QemuMachine(specs, MEMORY)
    return Rig(machine, PhysicalMemory(MEMORY, KERNEL, seed=1, backing=machine.ram), peers)


@contextmanager
def qemu_rig(nics: int = 1, model: str = E1000) -> Iterator[Rig]:
    """``start_rig`` for a ``with`` block (skips, or fails under CI=true, without QEMU)."""
    need_qemu()
    rig = start_rig(nics, model)
    try:
        yield rig
    finally:
        rig.close()
