"""The device's compiled burst path (device/fastdev.c) against the numpy engines it stands in for.

Two identical rigs get the same random stream of raw TX descriptors
(plain bursts most of the time, and now and then a hostile one: a DEXT or
IC command, a fragment without EOP, a runt, a length past MAX_TX_PACKET, a
buffer beyond memory or straddling its end, a buffer that is the TX ring) and the same hostile RX
postings (a buffer beyond memory, a buffer on top of the RX ring itself).
One rig runs with the burst path, the other with the numpy engines only.
Afterwards every byte of physical memory, every frame on the wire, every
register, statistic and counter must be the same.  The burst path must
also actually have been taken, or the comparison proves nothing.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device import fastdev
from device.e1000 import E1000
from device.rx_engine import RxEngine
from device.tx_engine import TxEngine
from ring import regs
from ring.descriptors import MAX_TX_PACKET, RX_DESC, TXD_CMD_DEXT, TXD_CMD_EOP, TXD_CMD_IC, TXD_CMD_RS
from tests.conftest import Rig, frame, make_rig
from tests.device.raw import GOOD, RawRx, RawTx
from tests.verifier.compiled import compiled_accelerator

RING = 16


@pytest.fixture(autouse=True)
def _compiled() -> None:
    """The fastdev module must be here wherever it can be built (tests/verifier/compiled.py)."""
    compiled_accelerator(fastdev.enabled(), fastdev.status())


def numpy_only(rig: Rig) -> Rig:
    """The same rig with every engine's burst path switched off."""
    devs: tuple[E1000, E1000] = (rig.nic0, rig.nic1)
    for dev in devs:
        dev.fast = None
        for tx in dev.tx:
            tx.fast = None
        for rx in dev.rx:
            rx.fast = None
    return rig


@dataclasses.dataclass
class Taken:
    """How often the burst path did the work, counted by wrapping the engines' ``_burst``."""

    tx: int = 0
    rx: int = 0


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> Taken:
    count = Taken()
    tx_burst, rx_burst = TxEngine._burst, RxEngine._burst

    def tx(self: TxEngine, *args: int) -> object:
        out = tx_burst(self, *args)
        count.tx += out is not None
        return out

    def rx(self: RxEngine, *args: object) -> bool:
        out = rx_burst(self, *args)  # type: ignore[arg-type]
        count.rx += out
        return out

    monkeypatch.setattr(TxEngine, "_burst", tx)
    monkeypatch.setattr(RxEngine, "_burst", rx)
    return count


# One descriptor: (kind, length).  "plain" is what a driver writes; the rest is what an attacker does.
KINDS = ("plain", "plain", "plain", "plain", "dext", "ic", "no-eop", "runt", "huge", "beyond", "straddle", "no-rs",
         "on-ring")  # fmt: skip
descriptor = st.tuples(st.sampled_from(KINDS), st.integers(60, 1514))
kick = st.lists(descriptor, min_size=1, max_size=RING - 1)
rx_hostility = st.sampled_from(("none", "none", "beyond", "on-ring"))


def put(tx: RawTx, kind: str, length: int, seq: int) -> None:
    payload = bytes((seq + i) & 0xFF for i in range(max(0, length - 14)))
    data = frame(payload)[:length]
    size = tx.memory.size
    if kind == "plain":
        tx.put(data)
    elif kind == "no-rs":
        tx.put(data, cmd=GOOD & ~TXD_CMD_RS)
    elif kind == "dext":
        tx.put(data, cmd=GOOD | TXD_CMD_DEXT)
    elif kind == "ic":
        tx.put(data, cmd=GOOD | TXD_CMD_IC)
    elif kind == "no-eop":
        tx.put(data, cmd=GOOD & ~TXD_CMD_EOP)
    elif kind == "runt":
        tx.put(data[:20])
    elif kind == "huge":
        tx.put(data, length=MAX_TX_PACKET + 1)
    elif kind == "beyond":
        tx.put(data, addr=size + 4096)
    elif kind == "on-ring":  # the buffer is the TX ring itself: it must be read as fetched, before any DD lands
        tx.put(data, addr=tx.base, length=min(length, 16 * RING))
    else:  # straddle: the buffer begins inside memory and ends past it
        tx.put(data, addr=size - 30)


def drive(rig: Rig, kicks: list[list[tuple[str, int]]], hostility: list[str]) -> None:
    tx = RawTx(rig.nic0, rig.memory, RING)
    rx = RawRx(rig.nic1, rig.memory, RING)
    seq = 0
    for i, burst in enumerate(kicks):
        # the receiver gives back what it consumed (every slot but one posted), sometimes with a hostile buffer
        head = rig.nic1.reg(regs.RDH)
        slot = head
        if hostility[i % len(hostility)] == "beyond":
            rx.ring["addr"][slot] = rig.memory.size - 8
        elif hostility[i % len(hostility)] == "on-ring":
            rx.ring["addr"][slot] = rx.base + 16 * ((slot + 2) % RING)
        rig.nic1.write32(regs.RDT, (head - 1) % RING)
        for kind, length in burst:
            put(tx, kind, length, seq)
            seq += 1
        tx.kick()


def state(rig: Rig) -> tuple[object, ...]:
    devs: tuple[E1000, E1000] = (rig.nic0, rig.nic1)
    return (
        rig.memory.data.tobytes(),
        [bytes(f) for f in rig.wire],
        [d.regs.tobytes() for d in devs],
        [dict(d.stats) for d in devs],
        [dataclasses.asdict(d.counters) for d in devs],
        [(e.partial.length, e.partial.fragments, e.partial.bad, e.stalled_at) for e in rig.nic0.tx],
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(kick, min_size=1, max_size=12), st.lists(rx_hostility, min_size=1, max_size=4))
def test_the_burst_path_leaves_memory_wire_and_registers_as_the_numpy_engines_do(
    kicks: list[list[tuple[str, int]]], hostility: list[str]
) -> None:
    fast, slow = make_rig(), numpy_only(make_rig())
    drive(fast, kicks, hostility)
    drive(slow, kicks, hostility)
    assert state(fast) == state(slow)


def test_a_plain_burst_takes_the_burst_path_and_arrives_whole(taken: Taken) -> None:
    rig = make_rig()
    drive(rig, [[("plain", 64 + i) for i in range(8)]], ["none"])
    assert (taken.tx, taken.rx) == (1, 1)
    sent = [bytes(f) for f in rig.wire]
    assert [len(f) for f in sent] == [64 + i for i in range(8)]
    base = rig.nic1.reg(regs.RDBAL) | rig.nic1.reg(regs.RDBAH) << 32
    ring = rig.memory.view(base, RING * 16).view(RX_DESC)  # the receive ring as the device wrote it back
    assert ring["length"][:8].tolist() == [64 + i for i in range(8)]  # RCTL.SECRC: no FCS in the buffer
    assert ring["status"][:8].tolist() == [0x03] * 8  # DD | EOP
    got = [rig.memory.view(int(a), int(n)).tobytes() for a, n in zip(ring["addr"][:8], ring["length"][:8], strict=True)]
    assert got == sent


def test_an_observer_or_an_iommu_sends_every_burst_through_the_numpy_engines(taken: Taken) -> None:
    rig = make_rig()
    rig.nic0.dma.observers.append(lambda batch: None)
    rig.nic1.dma.observers.append(lambda batch: None)
    drive(rig, [[("plain", 64)] * 4], ["none"])
    assert (taken.tx, taken.rx) == (0, 0)
    assert len(rig.wire) == 4


def test_the_address_filter_shortcut_needs_every_frame_to_be_ours() -> None:
    fast, slow = make_rig(), numpy_only(make_rig())
    for rig in (fast, slow):
        tx = RawTx(rig.nic0, rig.memory, RING)
        RawRx(rig.nic1, rig.memory, RING)
        ours, other = frame(bytes(50)), b"\x02\x00\x00\x00\x00\x09" + frame(bytes(50))[6:]
        broadcast = b"\xff" * 6 + frame(bytes(50))[6:]
        tx.send(ours, other, broadcast, ours)
    assert state(fast) == state(slow)
    assert len(fast.wire) == 4 and fast.nic1.counters.rx_filtered == 1  # the frame for 02:..:09 is not ours
