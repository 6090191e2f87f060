"""The same valid virtqueue chains through the emulated virtio-net device and QEMU's: same frames, same used ring.

Each shape is written by one function against a ``Side`` (a transmitq1 or
receiveq1 of eight descriptors over a ``PhysicalMemory``), once on the
sandbox's own device (world/virtio.py, protection ``none``: the device
walks the test's table itself) and once on QEMU's virtio-net-pci (raw
queues in its shared guest RAM, tests/driver/virtio_rig.py).  Required of
both: the frames on the wire, byte for byte and in order; the used-ring
entries, ``id`` and ``len``; for RX, the bytes written into the buffers.

``len`` follows virtio 1.2 §2.7.8: the bytes the device *wrote* into the
chain, so 0 for every TX chain (both devices agree) and 12 + the frame's
length for a received frame.  One difference is held as such: the
``num_buffers`` field of the received header.  §5.1.6.4.2 says a device
MUST set it to 1 when VIRTIO_NET_F_MRG_RXBUF is not negotiated; the emulated
device does, QEMU 7.2 leaves it 0 (it writes the field only with merged
buffers, hw/net/virtio-net.c ``virtio_net_receive_rcu``; Linux's vhost-net
had the same bug until 2025, "vhost/net: Set num_buffers for virtio 1.0").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pytest

from device.virtio_net import VirtioNet
from driver.qemu.args import VIRTIO_NET
from ring import virtio
from ring.frames import FrameBatch
from ring.memory import PhysicalMemory
from tests.driver.qemu_rig import Rig, qemu_rig
from tests.driver.virtio_rig import RawQueue, VirtioPort, virtio_ports
from tests.virtio_rig import RawVirtq, build, wire_log
from verifier.modes.protection import Protection

pytestmark = pytest.mark.privileged

NEXT, WRITE, INDIRECT = virtio.VIRTQ_DESC_F_NEXT, virtio.VIRTQ_DESC_F_WRITE, virtio.VIRTQ_DESC_F_INDIRECT
HDR = virtio.VIRTIO_NET_HDR_SIZE
SIZE = 8  # descriptors per queue, both sides
MAC0, MAC1 = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
#: where num_buffers sits in the 12-byte header (struct virtio_net_hdr, §5.1.6)
NUM_BUFFERS = slice(10, 12)


def frame(k: int, length: int) -> bytes:
    """A frame nic0 -> nic1 of ``length`` bytes whose payload says which one it is."""
    return MAC1 + MAC0 + b"\x88\xb5" + bytes((k * 7 + i) & 0xFF for i in range(length - 14))


class Side(Protocol):
    """One virtqueue of one device, written by hand."""

    memory: PhysicalMemory

    def addr(self, i: int) -> int: ...  # buffer i (2048 bytes) of the test's pool

    def desc(self, i: int, addr: int, length: int, flags: int = 0, nxt: int = 0) -> None: ...

    def post(self, heads: list[int]) -> None: ...  # make them available, then notify

    def used(self, count: int) -> list[tuple[int, int]]: ...


def put(side: Side, addr: int, data: bytes) -> None:
    side.memory.view(addr, len(data))[:] = np.frombuffer(data, dtype=np.uint8)


def table(side: Side, addr: int, rows: list[tuple[int, int, int, int]]) -> int:
    """An indirect table at ``addr``; its length in bytes."""
    t = np.array(rows, dtype=virtio.VIRTQ_DESC)
    put(side, addr, t.tobytes())
    return t.nbytes


# -- the emulated device ------------------------------------------------------------------------------------
@dataclass
class EmulatedSide:
    queue: RawVirtq
    memory: PhysicalMemory

    def addr(self, i: int) -> int:
        return self.queue.buf(i)

    def desc(self, i: int, addr: int, length: int, flags: int = 0, nxt: int = 0) -> None:
        self.queue.desc[i] = (addr, length, flags, nxt)

    def post(self, heads: list[int]) -> None:
        self.queue.post(*heads)

    def used(self, count: int) -> list[tuple[int, int]]:
        heads, lens = self.queue.take_used(count)
        return list(zip(heads.tolist(), lens.tolist(), strict=True))


# -- QEMU's device ------------------------------------------------------------------------------------------
@dataclass
class QemuSide:
    queue: RawQueue
    port: VirtioPort
    index: int
    memory: PhysicalMemory

    def addr(self, i: int) -> int:
        return self.queue.buffer(i)

    def desc(self, i: int, addr: int, length: int, flags: int = 0, nxt: int = 0) -> None:
        self.queue.set_desc(i, addr, length, flags, nxt)

    def post(self, heads: list[int]) -> None:
        self.queue.publish(heads)
        self.port.nic.notify(self.index)
        self.port.nic.transport.qtest.flush()

    def used(self, count: int) -> list[tuple[int, int]]:
        return self.queue.used_entries(count)


# -- the shapes ---------------------------------------------------------------------------------------------
def tx_single(q: Side) -> list[bytes]:
    """Header and frame in one descriptor."""
    f = frame(1, 60)
    put(q, q.addr(0), bytes(HDR) + f)
    q.desc(0, q.addr(0), HDR + len(f))
    q.post([0])
    return [f]


def tx_two(q: Side) -> list[bytes]:
    """The header in one descriptor, the frame in the next (Linux's layout before VERSION_1)."""
    f = frame(2, 100)
    put(q, q.addr(0), bytes(HDR))
    put(q, q.addr(1), f)
    q.desc(0, q.addr(0), HDR, NEXT, 1)
    q.desc(1, q.addr(1), len(f))
    q.post([0])
    return [f]


def tx_split_header(q: Side) -> list[bytes]:
    """Any layout (VERSION_1): the header split across two descriptors, the frame across three."""
    f = frame(3, 333)
    raw = bytes(HDR) + f
    cuts = [0, 5, 17, 200, len(raw)]
    for k in range(4):
        put(q, q.addr(k) + 8, raw[cuts[k] : cuts[k + 1]])
        q.desc(k, q.addr(k) + 8, cuts[k + 1] - cuts[k], NEXT if k < 3 else 0, k + 1)
    q.post([0])
    return [f]


def tx_indirect(q: Side) -> list[bytes]:
    """One descriptor pointing at an indirect table of three (§2.7.5.3)."""
    f = frame(4, 90)
    put(q, q.addr(0), bytes(HDR) + f)
    a = q.addr(0)
    n = table(q, q.addr(6), [(a, HDR, NEXT, 1), (a + HDR, 30, NEXT, 2), (a + HDR + 30, len(f) - 30, 0, 0)])
    q.desc(0, q.addr(6), n, INDIRECT)
    q.post([0])
    return [f]


def tx_several(q: Side) -> list[bytes]:
    """Three chains of three shapes in one notify, heads out of order (5, 0, 2)."""
    fs = [frame(5, 64), frame(6, 1514), frame(7, 200)]
    put(q, q.addr(5), bytes(HDR) + fs[0])
    q.desc(5, q.addr(5), HDR + len(fs[0]))
    put(q, q.addr(0), bytes(HDR))
    put(q, q.addr(1), fs[1])
    q.desc(0, q.addr(0), HDR, NEXT, 1)
    q.desc(1, q.addr(1), len(fs[1]))
    put(q, q.addr(2), bytes(HDR) + fs[2])
    a = q.addr(2)
    n = table(q, q.addr(7), [(a, HDR + 100, NEXT, 1), (a + HDR + 100, 100, 0, 0)])
    q.desc(2, q.addr(7), n, INDIRECT)
    q.post([5, 0, 2])
    return fs


def rx_single(q: Side) -> list[bytes]:
    """One device-writable 2048-byte buffer per chain (what the tenant's driver posts)."""
    q.desc(0, q.addr(0), 2048, WRITE)
    q.post([0])
    return [frame(8, 60)]


def rx_multi(q: Side) -> list[bytes]:
    """A chain of three writable buffers: the header alone, then 40 bytes, then the rest."""
    q.desc(3, q.addr(3), HDR, WRITE | NEXT, 4)
    q.desc(4, q.addr(4), 40, WRITE | NEXT, 5)
    q.desc(5, q.addr(5), 2048, WRITE)
    q.post([3])
    return [frame(9, 150)]


def rx_indirect(q: Side) -> list[bytes]:
    """Writable buffers behind an indirect table."""
    n = table(q, q.addr(6), [(q.addr(0), 30, WRITE | NEXT, 1), (q.addr(1), 2048, WRITE, 0)])
    q.desc(2, q.addr(6), n, INDIRECT)
    q.post([2])
    return [frame(10, 80)]


def rx_several(q: Side) -> list[bytes]:
    """Three chains of three shapes, three frames: each frame takes the next chain in avail order."""
    q.desc(1, q.addr(1), 2048, WRITE)
    q.desc(4, q.addr(4), 20, WRITE | NEXT, 5)
    q.desc(5, q.addr(5), 2048, WRITE)
    n = table(q, q.addr(7), [(q.addr(0), 64, WRITE | NEXT, 1), (q.addr(2), 2048, WRITE, 0)])
    q.desc(6, q.addr(7), n, INDIRECT)
    q.post([4, 6, 1])
    return [frame(11, 60), frame(12, 1514), frame(13, 99)]


Shape = Callable[[Side], list[bytes]]
TX: dict[str, Shape] = {f.__name__: f for f in (tx_single, tx_two, tx_split_header, tx_indirect, tx_several)}
RX: dict[str, Shape] = {f.__name__: f for f in (rx_single, rx_multi, rx_indirect, rx_several)}


def chain_bytes(memory: PhysicalMemory, head: int, length: int, queue_desc: np.ndarray) -> bytes:
    """The first ``length`` bytes the device wrote into chain ``head`` (direct or through one indirect table)."""
    rows = [queue_desc[head]]
    if int(rows[0]["flags"]) & INDIRECT:
        t = memory.view(int(rows[0]["addr"]), int(rows[0]["len"])).copy().view(virtio.VIRTQ_DESC)
        rows, table_rows = [t[0]], t
    else:
        table_rows = queue_desc
    while int(rows[-1]["flags"]) & NEXT:
        rows.append(table_rows[int(rows[-1]["next"])])
    out = b"".join(memory.view(int(r["addr"]), int(r["len"])).tobytes() for r in rows)
    return out[:length]


@dataclass
class Outcome:
    """What one device did with one shape."""

    wire: list[bytes]
    used: list[tuple[int, int]]
    written: list[bytes] = dataclasses.field(default_factory=list)  # RX: header + frame, per used entry


def run_emulated(shape: Shape, rx: bool) -> Outcome:
    world = build(Protection.NONE)
    with world:
        seen = wire_log(world)
        proc = world.tenants["bob" if rx else "alice"]
        raw = RawVirtq(proc, "nic1" if rx else "nic0", virtio.RECEIVEQ if rx else virtio.TRANSMITQ, SIZE)
        side = EmulatedSide(raw, world.memory)
        frames = shape(side)
        if not rx:
            return Outcome(list(seen), side.used(len(frames)))
        nic1 = world.backend.nics["nic1"]
        assert isinstance(nic1, VirtioNet)
        for f in frames:  # one at a time, as they come off QEMU's cable
            nic1.receive(FrameBatch.from_frames([f]))
        used = side.used(len(frames))
        written = [chain_bytes(world.memory, h, n, raw.desc) for h, n in used]
        return Outcome([], used, written)


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with qemu_rig(nics=2, model=VIRTIO_NET) as rig:
        yield rig


def run_qemu(rig: Rig, shape: Shape, rx: bool) -> Outcome:
    ports = virtio_ports(rig)  # both devices reset onto fresh rings
    port = ports["nic1" if rx else "nic0"]
    queue = port.rx if rx else port.tx
    side = QemuSide(queue, port, virtio.RECEIVEQ if rx else virtio.TRANSMITQ, rig.memory)
    frames = shape(side)
    if not rx:
        wire = rig.wire("nic0", len(frames))
        return Outcome(wire, side.used(len(frames)))
    rig.inject(frames, "nic1")
    used = side.used(len(frames))
    return Outcome([], used, [chain_bytes(rig.memory, h, n, queue.desc) for h, n in used])


@pytest.mark.parametrize("name", list(TX))
def test_tx_chains_give_the_same_frames_and_used_entries(rig: Rig, name: str) -> None:
    emulated, qemu = run_emulated(TX[name], rx=False), run_qemu(rig, TX[name], rx=False)
    assert qemu.wire == emulated.wire == TX[name](_Null())
    assert qemu.used == emulated.used
    assert all(length == 0 for _id, length in qemu.used)  # §2.7.8: a TX chain has nothing written into it


@pytest.mark.parametrize("name", list(RX))
def test_rx_chains_give_the_same_used_entries_and_bytes(rig: Rig, name: str) -> None:
    emulated, qemu = run_emulated(RX[name], rx=True), run_qemu(rig, RX[name], rx=True)
    frames = RX[name](_Null())
    assert qemu.used == emulated.used
    assert [length for _id, length in qemu.used] == [HDR + len(f) for f in frames]
    for mine, theirs, f in zip(emulated.written, qemu.written, frames, strict=True):
        assert mine[HDR:] == theirs[HDR:] == f
        assert mine[:10] == theirs[:10] == bytes(10)  # no offloads: flags 0, GSO_NONE, lengths 0
        assert (mine[NUM_BUFFERS], theirs[NUM_BUFFERS]) == (b"\x01\x00", b"\x00\x00")  # §5.1.6.4.2 vs QEMU 7.2


class _Null:
    """A side that records nothing: to ask a shape which frames it expects."""

    memory = PhysicalMemory(1 << 16, 1 << 12, seed=1)

    def addr(self, i: int) -> int:
        return (1 << 12) + i * 2048

    def desc(self, i: int, addr: int, length: int, flags: int = 0, nxt: int = 0) -> None:
        pass

    def post(self, heads: list[int]) -> None:
        pass

    def used(self, count: int) -> list[tuple[int, int]]:
        return []
