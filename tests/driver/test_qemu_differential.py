"""Differential: the same descriptor streams through the emulated E1000 and QEMU's e1000.

Both devices are brought up by the kernel's own ``bring_up`` and then driven
by hand through their BAR (any ``RegisterBus``), with rings and buffers at
the same physical addresses of two memories built alike.  Valid traffic
only: single- and multi-descriptor packets, a TX ring that wraps, RX frames
spanning several 256-byte buffers and an RX ring that wraps.  Required: the
same frames on the wire, the same TDH/RDH, the same descriptor write-backs.

One difference is known and asserted as such: QEMU sets RXD_STAT_IXSM
("ignore checksum indication", manual 3.2.3.1) on the last descriptor of
every received frame (hw/net/e1000.c ``e1000_receive_iov``); the emulated
NIC has no receive checksum offload and leaves it clear.  docs/device.md
lists the differences.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from device.e1000 import E1000
from ring import indices, regs
from ring.descriptors import (
    DESC_SIZE,
    RX_DESC,
    RXD_STAT_EOP,
    RXD_STAT_IXSM,
    TX_DESC,
    TXD_CMD_EOP,
    TXD_CMD_IFCS,
    TXD_CMD_RS,
)
from ring.frames import FrameBatch
from ring.memory import PhysicalMemory
from ring.syscalls import RegisterBus
from tests.conftest import MAC0, MAC1, frame, seq_frame
from tests.driver.qemu_rig import KERNEL, MEMORY, qemu_rig
from verifier.nic_control import bring_up

pytestmark = pytest.mark.privileged  # QEMU: fails under CI=true when missing (tests/needs.py)

RING = 8
BUF = 2048
RX_BSIZE_256 = 3 << regs.RCTL_BSIZE_SHIFT  # table 13-66: BSIZE 11b, BSEX 0 = 256 bytes
OWNER = 7
DEADLINE_S = 5.0

RxBack = tuple[int, int, int, bytes]  # length, status, errors, data of one RX descriptor
RxStep = tuple[int, list[RxBack]]  # RDH, then the write-backs of the slots the step used


@dataclass
class Recorder:
    """The emulated NIC's wire: keeps every frame it is given (device/wire.py ``Wire``)."""

    frames: list[bytes] = field(default_factory=list)

    def carry(self, _source: object, frames: FrameBatch) -> None:
        self.frames.extend(frames)


@dataclass
class RawNic:
    """A ring of each kind at fixed addresses, programmed by hand through a BAR."""

    bus: RegisterBus
    memory: PhysicalMemory
    tx_base: int = 0
    tx_bufs: int = 0
    rx_base: int = 0
    rx_bufs: int = 0
    tail: int = 0

    def __post_init__(self) -> None:
        m = self.memory
        self.tx_base = m.alloc(RING * DESC_SIZE, OWNER).phys
        self.tx_bufs = m.alloc(RING * BUF, OWNER).phys
        self.rx_base = m.alloc(RING * DESC_SIZE, OWNER).phys
        self.rx_bufs = m.alloc(RING * BUF, OWNER).phys
        self.tx_ring = m.view(self.tx_base, RING * DESC_SIZE).view(TX_DESC)
        self.rx_ring = m.view(self.rx_base, RING * DESC_SIZE).view(RX_DESC)
        bring_up(self.bus, MAC0)
        for bal, bah, rlen, head, tail, base in (
            (*regs.TX_RING_REGS, self.tx_base),
            (*regs.RX_RING_REGS, self.rx_base),
        ):
            self.bus.write32(bal, base & 0xFFFF_FFFF)
            self.bus.write32(bah, base >> 32)
            self.bus.write32(rlen, RING * DESC_SIZE)
            self.bus.write32(head, 0)
            self.bus.write32(tail, 0)

    # -- TX -------------------------------------------------------------------
    def post_packet(self, pieces: list[bytes]) -> None:
        """One packet in ``len(pieces)`` descriptors (EOP on the last), every one with RS."""
        for i, piece in enumerate(pieces):
            slot = self.tail
            addr = self.tx_bufs + slot * BUF
            self.memory.view(addr, len(piece))[:] = np.frombuffer(piece, dtype=np.uint8)
            cmd = TXD_CMD_IFCS | TXD_CMD_RS | (TXD_CMD_EOP if i == len(pieces) - 1 else 0)
            self.tx_ring[slot] = (addr, len(piece), 0, cmd, 0, 0, 0)
            self.tail = indices.advance(self.tail, 1, RING)

    def kick(self) -> None:
        self.bus.write32(regs.TDT, self.tail)

    # -- RX -------------------------------------------------------------------
    def enable_small_buffers(self) -> None:
        self.bus.write32(regs.RCTL, regs.RCTL_EN | regs.RCTL_BAM | regs.RCTL_SECRC | RX_BSIZE_256)

    def post_rx(self, slots: list[int], new_tail: int) -> None:
        """Fresh descriptors (buffer ``slot``, status clear) in ``slots``, then the new tail.

        The tail write is flushed by a read before the caller sends frames: over qtest (as over PCI)
        a write is posted, and frames travel on another path (the UDP cable), so without the flush a
        frame can reach the device while it still sees the old tail, too few buffers, and drops it.
        """
        for slot in slots:
            self.rx_ring[slot] = (self.rx_bufs + slot * BUF, 0, 0, 0, 0, 0)
        self.bus.write32(regs.RDT, new_tail)
        self.bus.read32(regs.RDT)

    def rx_writeback(self, slots: list[int]) -> list[RxBack]:
        """(length, status, errors, data) of each slot, as the device wrote them."""
        out = []
        for slot in slots:
            d = self.rx_ring[slot]
            data = self.memory.view(int(d["addr"]), int(d["length"])).tobytes()
            out.append((int(d["length"]), int(d["status"]), int(d["errors"]), data))
        return out


def tx_script(nic: RawNic, wire: Callable[[int], list[bytes]]) -> list[tuple[int, list[bytes], list[int]]]:
    """Three doorbells: three packets; one packet in three descriptors; four packets across the ring's end."""
    steps = []
    big = seq_frame(3, 700)
    for packets in (
        [[seq_frame(0)], [seq_frame(1, 128)], [seq_frame(2, 1514)]],
        [[big[:14], big[14:300], big[300:]]],
        [[seq_frame(10 + i, 64 + 100 * i)] for i in range(4)],  # slots 6, 7, 0, 1
    ):
        for pieces in packets:
            nic.post_packet(pieces)
        nic.kick()
        sent = wire(len(packets))
        steps.append((nic.bus.read32(regs.TDH), sent, nic.tx_ring["status"].tolist()))
    return steps


RX_FRAMES = [
    [frame(bytes(range(46)), dst=MAC0, src=MAC1)],  # 60 bytes: one buffer
    [frame(bytes(i & 0xFF for i in range(286)), dst=MAC0, src=MAC1)],  # 300 bytes: 256 + 44
    [frame(bytes((3 * i) & 0xFF for i in range(586)), dst=MAC0, src=MAC1)],  # 600 bytes: 256 + 256 + 88
]
RX_WRAP_FRAMES = [frame(bytes((i + k) & 0xFF for i in range(286)), dst=MAC0, src=MAC1) for k in range(2)]


def rx_script(nic: RawNic, deliver: Callable[[list[bytes]], None], ready: Callable[[], None]) -> list[RxStep]:
    """Seven buffers posted, frames of 1, 2 and 3 buffers, six buffers re-posted, two frames across the end.

    Every slot holds a buffer address from the start: QEMU skips a descriptor whose address is 0
    (hw/net/e1000.c, "skip descriptors with null buf addr"), the emulated NIC would DMA to 0.
    """
    nic.enable_small_buffers()
    nic.post_rx(list(range(RING)), RING - 1)
    ready()
    steps: list[RxStep] = []
    for frames in RX_FRAMES:
        deliver(frames)
    head = wait_head(nic.bus, 6)
    steps.append((head, nic.rx_writeback(list(range(6)))))
    nic.post_rx(list(range(6)), 5)  # slots 6, 7, 0, 1, 2, 3, 4 are the device's now
    deliver(RX_WRAP_FRAMES)
    head = wait_head(nic.bus, 2)
    steps.append((head, nic.rx_writeback([6, 7, 0, 1])))
    return steps


def wait_head(bus: RegisterBus, want: int) -> int:
    deadline = time.monotonic() + DEADLINE_S
    head = bus.read32(regs.RDH)
    while head != want and time.monotonic() < deadline:
        time.sleep(0.005)
        head = bus.read32(regs.RDH)
    return head


def emulated_nic() -> tuple[RawNic, Recorder, E1000]:
    memory = PhysicalMemory(MEMORY, KERNEL, seed=1)
    dev = E1000("nic0", memory, MAC0)
    recorder = Recorder()
    dev.port.wire = recorder
    dev.attach()
    return RawNic(dev, memory), recorder, dev


def without_ixsm(steps: list[RxStep]) -> tuple[list[RxStep], list[int]]:
    """RX write-backs with IXSM cleared, and the statuses where it was set."""
    cleaned: list[RxStep] = []
    ixsm: list[int] = []
    for head, backs in steps:
        rows = []
        for length, status, errors, data in backs:
            if status & RXD_STAT_IXSM:
                ixsm.append(status)
            rows.append((length, status & ~RXD_STAT_IXSM, errors, data))
        cleaned.append((head, rows))
    return cleaned, ixsm


def eop_count(steps: list[RxStep]) -> int:
    return sum(1 for _head, backs in steps for _l, status, _e, _d in backs if status & RXD_STAT_EOP)


def test_tx_streams_agree() -> None:
    emu, recorder, _dev = emulated_nic()

    def emu_wire(n: int) -> list[bytes]:
        sent, recorder.frames[:] = list(recorder.frames), []
        return sent

    expected = tx_script(emu, emu_wire)
    with qemu_rig() as rig:
        got = tx_script(RawNic(rig.nic(), rig.memory), lambda n: rig.wire(count=n))
        assert rig.quiet_wire(wait_s=0.1)
    assert [step[0] for step in got] == [3, 6, 2]
    assert got == expected


def test_rx_streams_agree() -> None:
    emu, _recorder, dev = emulated_nic()

    def emu_deliver(frames: list[bytes]) -> None:
        for f in frames:
            dev.receive(FrameBatch.from_frames([f]))

    expected = rx_script(emu, emu_deliver, lambda: None)
    with qemu_rig() as rig:
        nic = RawNic(rig.nic(), rig.memory)
        got = rx_script(nic, rig.inject, rig.nic().wait_rx_ready)
    assert [step[0] for step in got] == [6, 2]
    cleaned, ixsm = without_ixsm(got)
    assert cleaned == expected
    # the one known difference: QEMU marks the last descriptor of each frame IXSM, the emulated NIC does not
    assert len(ixsm) == eop_count(got) == len(RX_FRAMES) + len(RX_WRAP_FRAMES)
    assert without_ixsm(expected)[1] == []
