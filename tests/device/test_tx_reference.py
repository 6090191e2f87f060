"""The TX engine against a reference model: random descriptor streams, any split into doorbell kicks.

The model is a plain per-descriptor loop written from the datasheet rules
and device/counters.py, sharing no code with the engine: packets end at EOP,
a packet is dropped whole for a DEXT fragment, an unreadable fragment or a
length past MAX_TX_PACKET (whose fragments are then not even fetched), empty
packets are dropped, IC inserts a checksum, TCTL.PSP pads.  The device must
put the same frames on the wire and count the same events.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ring import regs
from ring.descriptors import (
    ETH_MIN_FRAME,
    MAX_TX_PACKET,
    TXD_CMD_DEXT,
    TXD_CMD_EOP,
    TXD_CMD_IC,
    TXD_CMD_RS,
    TXD_STAT_DD,
)
from tests.conftest import make_rig
from tests.device.raw import RawTx, watch

RING = 16
DATA = 64 << 10


@dataclass
class Desc:
    addr: int
    length: int
    cmd: int
    cso: int
    css: int


@dataclass
class OpenPacket:
    data: list[bytes] = field(default_factory=list)
    length: int = 0
    bad: bool = False
    first: Desc | None = None


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class Model:
    def __init__(self, memory: bytes, psp: bool) -> None:
        self.memory = memory
        self.psp = psp
        self.open = OpenPacket()
        self.counters: Counter[str] = Counter()

    def kick(self, descs: list[Desc]) -> list[bytes]:
        # split into packets: the open one continues, every EOP closes one
        packets: list[list[Desc]] = [[]]
        for d in descs:
            packets[-1].append(d)
            if d.cmd & TXD_CMD_EOP:
                packets.append([])
        out = []
        for i, frags in enumerate(packets):
            carried = self.open if i == 0 else OpenPacket()
            complete = i < len(packets) - 1
            first = carried.first or (frags[0] if frags else None)
            length = carried.length + sum(d.length for d in frags)
            dext = sum(1 for d in frags if d.cmd & TXD_CMD_DEXT)
            self.counters["unsupported_desc"] += dext
            bad = carried.bad or dext > 0 or length > MAX_TX_PACKET
            if complete and length > MAX_TX_PACKET:
                self.counters["oversize_packets"] += 1
            data = list(carried.data)
            if not bad:
                for d in frags:
                    if d.length == 0:
                        continue
                    if d.addr + d.length > len(self.memory):
                        bad = True
                    else:
                        data.append(self.memory[d.addr : d.addr + d.length])
                if bad:
                    self.counters["dma_errors"] += 1
            if not complete:
                self.open = OpenPacket([] if bad else data, length, bad, first if frags or carried.first else None)
                continue
            if bad:
                continue
            if length == 0:
                self.counters["empty_packets"] += 1
                continue
            frame = b"".join(data)
            assert first is not None
            if first.cmd & TXD_CMD_IC:
                if first.cso + 2 > len(frame) or first.css >= len(frame):
                    self.counters["csum_offset_errors"] += 1
                else:
                    body = bytearray(frame)
                    body[first.cso : first.cso + 2] = checksum(bytes(body[first.css :])).to_bytes(2, "big")
                    frame = bytes(body)
            if self.psp and len(frame) < ETH_MIN_FRAME:
                frame += bytes(ETH_MIN_FRAME - len(frame))
            out.append(frame)
        if len(packets) > 1 and not packets[-1]:
            self.open = OpenPacket()
        return out


MEM = 16 << 20
lengths = st.sampled_from([0, 1, 14, 59, 60, 61, 100, 1514, 2048, 5000, 9000, MAX_TX_PACKET, MAX_TX_PACKET + 1])
cmds = st.builds(
    lambda eop, rs, dext, ic, other: eop | rs | dext | ic | other,
    st.sampled_from([TXD_CMD_EOP, TXD_CMD_EOP, 0]),
    st.sampled_from([TXD_CMD_RS, TXD_CMD_RS, 0]),
    st.sampled_from([0] * 12 + [TXD_CMD_DEXT]),
    st.sampled_from([0] * 6 + [TXD_CMD_IC]),
    st.sampled_from([0, 0x02, 0x10, 0x40, 0x80]),  # IFCS, RPS, VLE, IDE: no effect on the frame
)
# where a buffer points: the tenant's data (offset), kernel memory, or beyond / across the end of memory
places = st.one_of(
    st.integers(0, DATA - MAX_TX_PACKET - 1).map(lambda off: ("data", off)),
    st.integers(0, (1 << 20) - MAX_TX_PACKET - 1).map(lambda a: ("abs", a)),
    st.sampled_from([MEM, MEM - 100, 1 << 40, 2**64 - 64]).map(lambda a: ("abs", a)),
)
descs = st.tuples(places, lengths, cmds, st.integers(0, 80), st.integers(0, 80))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(descs, max_size=RING - 1), min_size=1, max_size=6), st.booleans())
def test_engine_matches_reference(kicks: list[list[tuple[tuple[str, int], int, int, int, int]]], psp: bool) -> None:
    rig = make_rig()
    log = watch(rig.nic0)
    rig.nic0.write32(regs.TCTL, regs.TCTL_EN | (regs.TCTL_PSP if psp else 0))
    data = rig.memory.alloc(DATA, owner=7).phys
    rig.memory.view(data, DATA)[:] = np.random.default_rng(len(kicks)).integers(0, 256, DATA, dtype=np.uint8)
    tx = RawTx(rig.nic0, rig.memory, size=RING)
    model = Model(b"", psp)
    expected: list[bytes] = []
    for kick in kicks:
        batch = []
        for (kind, where), length, cmd, cso, css in kick:
            addr = data + where if kind == "data" else where
            batch.append(Desc(addr, length, cmd, cso, css))
            slot = tx.put(addr=addr, length=length, cmd=cmd)
            tx.ring["cso"][slot] = cso
            tx.ring["css"][slot] = css
        model.memory = rig.memory.data.tobytes()
        expected += model.kick(batch)
        tail_before = tx.tail
        tx.kick()
        assert tx.head == tail_before
        for i, d in enumerate(batch):
            slot = (tx.tail - len(batch) + i) % RING
            assert bool(tx.ring["status"][slot] & TXD_STAT_DD) == bool(d.cmd & TXD_CMD_RS)
    assert rig.wire == expected
    got = {k: v for k, v in rig.nic0.counters.as_dict().items() if v}
    assert got == {k: v for k, v in model.counters.items() if v}
    log.assert_bounded()
