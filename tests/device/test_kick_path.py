"""The plain kick (compiled: fastdev.c tx_kick, rx_arrive; numpy: _burst_numpy, arrive_batch) against the engines.

With no tap on the cable a plain burst goes from the sender's scratch to
the receiver's buffers without a FrameBatch (``Port.transmit_burst``), so
tests/device/test_burst_path.py, whose rig taps the cable, never sees the
receiving half.  Here two rigs with untapped cables get the same hostile TX
stream and, on the receiving NIC, the same RCTL and address changes (CRC
kept, every buffer size code, LPE, the receiver off, a frame not ours, a
ring with too few buffers posted).  One rig runs compiled, one on the
numpy path (whose plain kick and arrival are a few whole-batch numpy
operations), one on the numpy engines alone with those two switched off;
every byte of memory, register, statistic and counter must end the same,
and the plain kick and arrival must have been taken.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device import fastdev
from device.e1000 import E1000, EngineMode
from device.rx_engine import RxEngine
from device.tx_engine import TxEngine
from ring import regs
from ring.descriptors import RX_DESC
from ring.frames import FrameBatch
from tests.conftest import MAC1, Rig, frame, make_rig
from tests.device.raw import RawRx, RawTx
from tests.device.test_burst_path import RING, kick, numpy_only, put
from tests.verifier.compiled import compiled_accelerator

#: What the receiving NIC's driver changes before a kick (RCTL bits, RAL0, the buffers it posts).
RX_CHANGES = ("none", "none", "none", "crc", "bsize256", "bsize1024", "bsex16k", "reserved", "lpe", "off", "not-ours",
              "one-buffer")  # fmt: skip


@pytest.fixture(autouse=True)
def _compiled() -> None:
    compiled_accelerator(fastdev.enabled(), fastdev.status())


def untapped() -> Rig:
    rig = make_rig()
    rig.cable.taps.clear()
    return rig


def engines_only(rig: Rig) -> Rig:
    """The numpy path without its plain kick and arrival: every burst through the engines' general code."""
    rig = numpy_only(rig)
    for dev in (rig.nic0, rig.nic1):
        for tx in dev.tx:
            setattr(tx, "_burst_numpy", lambda: None)  # noqa: B010 (an instance's method replaced)
        for rx in dev.rx:
            setattr(rx, "arrive_batch", lambda _frames: False)  # noqa: B010
    return rig


def change_rx(dev: E1000, change: str) -> None:
    rctl = dev.reg(regs.RCTL)
    size = regs.RCTL_BSIZE_MASK | regs.RCTL_BSEX
    if change == "crc":
        dev.write32(regs.RCTL, rctl & ~regs.RCTL_SECRC)
    elif change == "bsize256":
        dev.write32(regs.RCTL, rctl & ~size | 3 << regs.RCTL_BSIZE_SHIFT)
    elif change == "bsize1024":
        dev.write32(regs.RCTL, rctl & ~size | 1 << regs.RCTL_BSIZE_SHIFT)
    elif change == "bsex16k":
        dev.write32(regs.RCTL, rctl & ~size | 1 << regs.RCTL_BSIZE_SHIFT | regs.RCTL_BSEX)
    elif change == "reserved":  # BSIZE 0 with BSEX is reserved: the device takes 2048
        dev.write32(regs.RCTL, rctl & ~size | regs.RCTL_BSEX)
    elif change == "lpe":
        dev.write32(regs.RCTL, rctl | regs.RCTL_LPE)
    elif change == "off":
        dev.write32(regs.RCTL, rctl & ~regs.RCTL_EN)
    elif change == "not-ours":  # RAL0 invalid, RAL1 another address: every frame is someone else's
        dev.write32(regs.RAH0, 0)
        dev.write32(regs.RAL0 + 8, 0x0000_0002)
        dev.write32(regs.RAH0 + 8, 0x0900 | regs.RAH_AV)


def drive(rig: Rig, kicks: list[list[tuple[str, int]]], changes: list[str]) -> None:
    tx = RawTx(rig.nic0, rig.memory, RING)
    RawRx(rig.nic1, rig.memory, RING)
    rctl, ral, rah = rig.nic1.reg(regs.RCTL), rig.nic1.reg(regs.RAL0), rig.nic1.reg(regs.RAH0)
    seq = 0
    for i, burst in enumerate(kicks):
        change = changes[i % len(changes)]
        rig.nic1.write32(regs.RCTL, rctl)  # each kick starts from the kernel's RCTL and address
        rig.nic1.write32(regs.RAL0, ral)
        rig.nic1.write32(regs.RAH0, rah)
        rig.nic1.write32(regs.RAH0 + 8, 0)
        change_rx(rig.nic1, change)
        head = rig.nic1.reg(regs.RDH)
        rig.nic1.write32(regs.RDT, (head + 1) % RING if change == "one-buffer" else (head - 1) % RING)
        for kind, length in burst:
            put(tx, kind, length, seq)
            seq += 1
        tx.kick()


def state(rig: Rig) -> tuple[object, ...]:
    devs: tuple[E1000, E1000] = (rig.nic0, rig.nic1)
    return (
        rig.memory.data.tobytes(),
        [d.regs.tobytes() for d in devs],
        [dict(d.stats) for d in devs],
        [dataclasses.asdict(d.counters) for d in devs],
        [(e.partial.length, e.partial.fragments, e.partial.bad, e.stalled_at) for e in rig.nic0.tx],
        [d.port.sent_frames for d in devs],
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(kick, min_size=1, max_size=10), st.lists(st.sampled_from(RX_CHANGES), min_size=1, max_size=4))
def test_the_plain_kick_leaves_memory_and_registers_as_the_engines_do(
    kicks: list[list[tuple[str, int]]], changes: list[str]
) -> None:
    rigs = [untapped(), numpy_only(untapped()), engines_only(untapped())]
    for rig in rigs:
        drive(rig, kicks, changes)
    compiled, numpy_kick, engines = (state(rig) for rig in rigs)
    assert compiled == engines
    assert numpy_kick == engines


@settings(max_examples=30, deadline=None)
@given(st.lists(kick, min_size=1, max_size=10), st.lists(st.sampled_from(RX_CHANGES), min_size=1, max_size=4))
def test_on_a_tapped_cable_the_numpy_kick_puts_the_same_frames_on_the_wire(
    kicks: list[list[tuple[str, int]]], changes: list[str]
) -> None:
    rigs = [numpy_only(make_rig()), engines_only(make_rig())]
    for rig in rigs:
        drive(rig, kicks, changes)
    assert rigs[0].wire == rigs[1].wire
    assert state(rigs[0]) == state(rigs[1])


def test_the_numpy_kick_and_arrival_are_taken_for_a_plain_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[object] = []
    kick_numpy, arrive_batch = TxEngine._burst_numpy, RxEngine.arrive_batch

    def spy_kick(self: TxEngine) -> int | None:
        out = kick_numpy(self)
        taken.append(out)
        return out

    def spy_arrive(self: RxEngine, frames: FrameBatch) -> bool:
        out = arrive_batch(self, frames)
        taken.append(out)
        return out

    monkeypatch.setattr(TxEngine, "_burst_numpy", spy_kick)
    monkeypatch.setattr(RxEngine, "arrive_batch", spy_arrive)
    rig = numpy_only(untapped())
    tx, rx = RawTx(rig.nic0, rig.memory, RING), RawRx(rig.nic1, rig.memory, RING)
    same = [frame(bytes([i]) * 50) for i in range(4)]  # one length: the row gather and scatter
    mixed = [frame(bytes([i]) * (50 + i)) for i in range(4)]  # mixed lengths: the range gather and scatter
    tx.send(*same)
    tx.send(*mixed)
    # RawTx's TDT = 0 is no kick; each arrival returns inside its kick (the frames go on the wire before it ends)
    assert taken == [None, True, 4, True, 4]
    assert [rx.data(slot) for slot in range(8)] == same + mixed


def test_a_plain_burst_on_an_untapped_cable_is_placed_from_the_senders_scratch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arrived: list[bool] = []
    real = RxEngine.arrive

    def spy(self: RxEngine, n: int, data: object, lengths: object) -> bool:
        out = real(self, n, data, lengths)
        arrived.append(out)
        return out

    monkeypatch.setattr(RxEngine, "arrive", spy)
    rig = untapped()
    tx, rx = RawTx(rig.nic0, rig.memory, RING), RawRx(rig.nic1, rig.memory, RING)
    frames = [frame(bytes([i]) * (50 + i)) for i in range(8)]
    tx.send(*frames)
    assert arrived == [True]
    ring = rx.ring
    assert ring["length"][:8].tolist() == [len(f) for f in frames]
    assert ring["status"][:8].tolist() == [0x03] * 8  # DD | EOP, one write-back for the burst
    assert [rx.data(slot) for slot in range(8)] == frames
    assert rig.nic1.reg(regs.RDH) == 8 and rig.nic0.reg(regs.TDH) == 8
    assert rig.nic1.read32(regs.ICR) & regs.ICR_RXT0
    assert rig.nic1.read32(regs.GPRC) == 8 and rig.nic0.read32(regs.GPTC) == 8


def test_a_kick_from_the_transmit_interrupt_keeps_the_order_of_the_wire() -> None:
    """The sender's interrupt handler runs before the burst leaves; a kick it makes goes out first, as before."""

    def rig_with_handler(compiled: bool) -> Rig:
        rig = untapped() if compiled else numpy_only(untapped())
        rig.cable.taps.append(lambda _src, frames, _stamps: rig.wire.extend(frames))
        tx = RawTx(rig.nic0, rig.memory, RING)
        RawRx(rig.nic1, rig.memory, RING)
        nested = [frame(b"nested" * 10)]

        def handler() -> None:
            rig.nic0.read32(regs.ICR)
            if nested:
                tx.send(nested.pop())

        rig.nic0.irq = handler
        rig.nic0.write32(regs.IMS, regs.ICR_TXDW)
        tx.send(frame(b"first" * 12), frame(b"second" * 10))
        return rig

    fast, slow = rig_with_handler(True), rig_with_handler(False)
    assert fast.wire == slow.wire
    assert [bytes(f)[14:20] for f in fast.wire] == [b"nested", b"firstf", b"second"]
    assert state(fast) == state(slow)


def test_the_receive_ring_as_written_back_by_the_compiled_arrival() -> None:
    rig = untapped()
    tx, rx = RawTx(rig.nic0, rig.memory, RING), RawRx(rig.nic1, rig.memory, RING)
    for _ in range(3):  # wrap the receive ring: the write-back spans its end
        tx.send(*[frame(bytes(46), dst=MAC1)] * 7)
        rig.nic1.write32(regs.RDT, (rig.nic1.reg(regs.RDH) - 1) % RING)
    descs = rig.memory.view(rx.base, RING * 16).view(RX_DESC)
    assert int(rig.nic1.reg(regs.RDH)) == 21 % RING
    assert set(descs["status"].tolist()) == {0x03}
    assert rig.nic1.read32(regs.GPRC) == 21


def test_a_threaded_receiver_takes_the_compiled_burst_as_a_frame_batch_through_its_fifo() -> None:
    """The receiver's arrive refuses (its FIFO must hold the burst): the sender copies it out of the scratch."""

    def run(compiled: bool) -> tuple[Rig, list[bytes]]:
        rig = make_rig(EngineMode.THREADED)
        rig.cable.taps.clear()
        if not compiled:
            numpy_only(rig)
        tx, rx = RawTx(rig.nic0, rig.memory, RING), RawRx(rig.nic1, rig.memory, RING)
        frames = [frame(bytes([i]) * (46 + i)) for i in range(5)]
        tx.send(*frames)
        rig.nic0.poll()  # the transmitter: the burst goes into nic1's FIFO
        assert len(rig.nic1.inbound) == 1
        tx.send(*frames[:2])  # the next kick reuses the scratch: the FIFO's burst must be a copy
        rig.nic0.poll()
        rig.nic1.poll()
        return rig, [rx.data(slot) for slot in range(7)]

    (fast, got), (slow, expected) = run(True), run(False)
    assert (
        got
        == expected
        == [frame(bytes([i]) * (46 + i)) for i in range(5)] + [frame(bytes([i]) * (46 + i)) for i in range(2)]
    )
    assert state(fast) == state(slow)
