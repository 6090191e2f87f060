"""Raw virtqueues in QEMU's guest RAM, for tests that write any descriptor graph, valid or hostile.

No kernel and no verifier stand between these queues and QEMU (protection
"none"): the test writes ``struct virtq_desc`` entries and avail-ring
entries straight into the shared memory (ring/virtio.py's dtypes), rings
the doorbell and reads what QEMU put in the used ring, on the wire and on
its stderr.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from driver.qemu.virtio_net import QemuVirtioNet, RingAddresses
from ring import virtio
from ring.memory import PhysicalMemory
from tests.driver.qemu_rig import Rig

QUEUE_SIZE = 8
BUFFER = 2048
#: owner of the test's frames in PhysicalMemory (any tenant id; nothing checks it here)
OWNER = 3
USED_TIMEOUT_S = 2.0


@dataclass
class RawQueue:
    """One virtqueue's three parts as numpy views of guest RAM, and a pool of buffers beside it."""

    memory: PhysicalMemory
    size: int = QUEUE_SIZE
    base: int = 0
    buffers: int = 0  # guest-physical address of ``size`` buffers of BUFFER bytes (or of scratch tables)
    published: int = 0  # the avail idx the test wrote last
    seen: int = 0  # used entries read so far
    layout: virtio.VirtqLayout = field(init=False)

    def __post_init__(self) -> None:
        self.layout = virtio.VirtqLayout.of(self.size)
        self.base = self.memory.alloc(self.layout.nbytes, OWNER).phys
        self.buffers = self.memory.alloc(self.size * BUFFER * 2, OWNER).phys

    @property
    def rings(self) -> RingAddresses:
        lay = self.layout
        return RingAddresses(self.size, self.base + lay.desc, self.base + lay.avail, self.base + lay.used)

    def bytes_at(self, phys: int, nbytes: int) -> npt.NDArray[np.uint8]:
        return self.memory.view(phys, nbytes)

    @property
    def desc(self) -> npt.NDArray[np.void]:
        return self.bytes_at(self.rings.desc, self.size * virtio.VIRTQ_DESC_SIZE).view(virtio.VIRTQ_DESC)

    @property
    def avail(self) -> np.void:
        out: np.void = self.bytes_at(self.rings.driver, virtio.avail_bytes(self.size)).view(
            virtio.avail_dtype(self.size)
        )[0]
        return out

    @property
    def used(self) -> np.void:
        out: np.void = self.bytes_at(self.rings.device, virtio.used_bytes(self.size)).view(
            virtio.used_dtype(self.size)
        )[0]
        return out

    def buffer(self, i: int) -> int:
        return self.buffers + i * BUFFER

    def set_desc(self, i: int, addr: int, length: int, flags: int = 0, next_: int = 0) -> None:
        self.desc[i] = (addr, length, flags, next_)

    def write(self, phys: int, data: bytes) -> None:
        self.bytes_at(phys, len(data))[:] = np.frombuffer(data, dtype=np.uint8)

    def table(self, phys: int, entries: list[tuple[int, int, int, int]]) -> None:
        """An indirect descriptor table at ``phys`` (§2.7.5.3)."""
        view = self.bytes_at(phys, len(entries) * virtio.VIRTQ_DESC_SIZE).view(virtio.VIRTQ_DESC)
        for i, entry in enumerate(entries):
            view[i] = entry

    def publish(self, heads: list[int], idx_step: int | None = None) -> None:
        """Put ``heads`` in the avail ring and move idx by ``idx_step`` (default: their count)."""
        ring = self.avail["ring"]
        for k, head in enumerate(heads):
            ring[(self.published + k) % self.size] = head
        self.published = (self.published + (len(heads) if idx_step is None else idx_step)) % virtio.INDEX_MODULUS
        self.avail["idx"] = self.published

    def used_entries(self, count: int, timeout_s: float = USED_TIMEOUT_S) -> list[tuple[int, int]]:
        """The next ``count`` used entries (id, len); fewer if the device does not produce them in time."""
        deadline = time.monotonic() + timeout_s
        while (int(self.used["idx"]) - self.seen) % virtio.INDEX_MODULUS < count and time.monotonic() < deadline:
            time.sleep(0.0005)
        ready = min(count, (int(self.used["idx"]) - self.seen) % virtio.INDEX_MODULUS)
        ring = self.used["ring"]
        entries = [(int(ring[(self.seen + k) % self.size]["id"]), int(ring[(self.seen + k) % self.size]["len"]))
                   for k in range(ready)]  # fmt: skip
        self.seen = (self.seen + ready) % virtio.INDEX_MODULUS
        return entries


@dataclass
class VirtioPort:
    """One virtio-net NIC of the rig with its receive and transmit queues."""

    nic: QemuVirtioNet
    rx: RawQueue
    tx: RawQueue

    def start(self) -> int:
        """(Re)start the device on fresh, zeroed rings; returns the features agreed."""
        for queue in (self.rx, self.tx):
            queue.bytes_at(queue.base, queue.layout.nbytes)[:] = 0
            queue.published = queue.seen = 0
        return self.nic.start({virtio.RECEIVEQ: self.rx.rings, virtio.TRANSMITQ: self.tx.rings})

    def send(self, frames: list[bytes]) -> None:
        """Each frame as a two-descriptor chain (zeroed virtio_net_hdr, then the frame), then a notify."""
        heads = []
        for k, frame in enumerate(frames):
            head = (2 * k) % self.tx.size
            hdr, data = self.tx.buffer(head), self.tx.buffer(head + 1)
            self.tx.write(hdr, bytes(virtio.VIRTIO_NET_HDR_SIZE))
            self.tx.write(data, frame)
            self.tx.set_desc(head, hdr, virtio.VIRTIO_NET_HDR_SIZE, virtio.VIRTQ_DESC_F_NEXT, head + 1)
            self.tx.set_desc(head + 1, data, len(frame))
            heads.append(head)
        self.tx.publish(heads)
        self.nic.notify(virtio.TRANSMITQ)
        self.nic.transport.qtest.flush()

    def post_rx(self, count: int, length: int = BUFFER) -> None:
        """``count`` single-descriptor device-writable buffers, then a notify (QEMU waits for one)."""
        heads = list(range(count))
        for i in heads:
            self.rx.set_desc(i, self.rx.buffer(i), length, virtio.VIRTQ_DESC_F_WRITE)
        self.rx.publish(heads)
        self.nic.notify(virtio.RECEIVEQ)
        self.nic.transport.qtest.flush()

    def received(self, entry: tuple[int, int]) -> tuple[bytes, bytes]:
        """(virtio_net_hdr, frame) of a used RX entry."""
        head, length = entry
        raw = self.rx.bytes_at(self.rx.buffer(head), length).tobytes()
        return raw[: virtio.VIRTIO_NET_HDR_SIZE], raw[virtio.VIRTIO_NET_HDR_SIZE :]


def virtio_ports(rig: Rig) -> dict[str, VirtioPort]:
    """A port per virtio NIC of ``rig``, started."""
    ports = {}
    for name, nic in rig.machine.virtio.items():
        port = VirtioPort(nic, RawQueue(rig.memory), RawQueue(rig.memory))
        port.start()
        ports[name] = port
    return ports
