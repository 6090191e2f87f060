"""The transmit engine: through tx_burst -> cable -> rx_burst, and through raw descriptors on one device."""

from __future__ import annotations

import numpy as np

from ring import regs
from ring.descriptors import (
    ETH_FCS_LEN,
    ETH_MIN_FRAME,
    TXD_CMD_EOP,
    TXD_CMD_IC,
    TXD_CMD_IFCS,
    TXD_CMD_RS,
    TXD_STAT_DD,
    TXD_STAT_REFUSED,
)
from tests.conftest import Rig, batch, frame, seq_frame, seq_of
from tests.device.raw import GOOD, RawTx

NO_RS = TXD_CMD_EOP | TXD_CMD_IFCS


def test_burst_crosses_the_cable_intact(rig: Rig) -> None:
    txq, rxq = rig.tx_queue(), rig.rx_queue()
    frames = [seq_frame(i, 60 + 37 * i) for i in range(20)]
    assert txq.tx_burst(batch(frames)) == 20
    assert rig.wire == frames
    assert list(rxq.rx_burst()) == frames
    assert txq.stats.frames == 20 and txq.stats.bytes == sum(map(len, frames))
    assert rig.nic0.reg(regs.TDH) == rig.nic0.reg(regs.TDT) == txq.tail == 20


def test_dd_written_back_only_with_rs(rig: Rig) -> None:
    tx = RawTx(rig.nic0, rig.memory)
    cmds = [GOOD, NO_RS, GOOD, NO_RS, NO_RS]
    for i, cmd in enumerate(cmds):
        tx.put(seq_frame(i), cmd)
    tx.kick()
    status = tx.ring["status"][: len(cmds)]
    assert ((status & TXD_STAT_DD) != 0).tolist() == [c & TXD_CMD_RS != 0 for c in cmds]
    assert tx.head == len(cmds)  # every descriptor consumed, reported or not
    assert [seq_of(f) for f in rig.wire] == list(range(len(cmds)))
    # write-back leaves address, length and command as the driver wrote them
    assert tx.ring["length"][: len(cmds)].tolist() == [64] * len(cmds)
    assert tx.ring["cmd"][: len(cmds)].tolist() == cmds


def test_tx_queue_reaps_completions(rig: Rig) -> None:
    txq = rig.tx_queue(size=16)
    assert txq.tx_burst(batch([seq_frame(i) for i in range(5)])) == 5
    assert txq.in_flight == 5
    assert txq.pool.available == 11
    assert txq.reap() == 5
    assert txq.in_flight == 0 and txq.pool.available == 16
    assert txq.stats.completed == 5 and txq.stats.refused == 0
    assert txq.reap() == 0


def test_long_frame_spans_two_descriptors(rig: Rig) -> None:
    txq = rig.tx_queue(size=16)
    long = seq_frame(7, 3000)
    assert txq.tx_burst(batch([seq_frame(1), long, seq_frame(2)])) == 3
    assert txq.tail == 4
    assert txq.ring["length"][:4].tolist() == [64, 2048, 3000 - 2048, 64]
    eop = (txq.ring["cmd"][:4] & TXD_CMD_EOP) != 0
    assert eop.tolist() == [True, False, True, True]
    assert rig.wire == [seq_frame(1), long, seq_frame(2)]
    assert rig.nic0.counters.oversize_packets == 0


def test_fragments_joined_at_eop(rig: Rig) -> None:
    tx = RawTx(rig.nic0, rig.memory)
    whole = seq_frame(3, 301)
    tx.put(whole[:100], TXD_CMD_IFCS | TXD_CMD_RS)
    tx.put(whole[100:101], TXD_CMD_RS)
    tx.put(whole[101:], GOOD)
    tx.put(seq_frame(4), GOOD)
    tx.kick()
    assert rig.wire == [whole, seq_frame(4)]


def test_packet_open_across_kicks_is_carried(rig: Rig) -> None:
    tx = RawTx(rig.nic0, rig.memory)
    whole = seq_frame(5, 2500)
    tx.put(whole[:1000], TXD_CMD_RS)
    tx.kick()
    assert rig.wire == []
    assert tx.head == 1 and tx.ring["status"][0] & TXD_STAT_DD
    assert rig.nic0.tx[0].partial.fragments == 1
    tx.put(whole[1000:2000], TXD_CMD_RS)
    tx.kick()
    assert rig.wire == []
    tx.put(whole[2000:], GOOD)
    tx.put(seq_frame(6), GOOD)
    tx.kick()
    assert rig.wire == [whole, seq_frame(6)]
    assert rig.nic0.tx[0].partial.fragments == 0


def test_ring_full_gives_backpressure(rig: Rig) -> None:
    txq = rig.tx_queue(size=16)
    frames = [seq_frame(i) for i in range(40)]
    assert txq.tx_burst(batch(frames)) == 15  # size - 1: one slot stays empty
    assert txq.stats.backpressure == 1
    # pause the transmitter: the ring stays full and the next burst takes nothing
    rig.nic0.write32(regs.TCTL, regs.TCTL_PSP)
    assert txq.tx_burst(batch(frames[15:30])) == 15
    assert txq.tx_burst(batch(frames[30:])) == 0
    assert txq.stats.backpressure == 2
    assert txq.in_flight == 15 and txq.pool.available == 1
    assert rig.nic0.reg(regs.TDH) == 15 and rig.nic0.reg(regs.TDT) == 14  # tail + 1 == head: full
    assert len(rig.wire) == 15
    # enabling the transmitter (a TCTL write) runs the queue; the ring drains in order
    rig.nic0.write32(regs.TCTL, regs.TCTL_EN | regs.TCTL_PSP)
    assert rig.nic0.reg(regs.TDH) == 14
    assert txq.tx_burst(batch(frames[30:])) == 10
    assert [seq_of(f) for f in rig.wire] == list(range(40))


def test_pool_smaller_than_ring_gives_backpressure(rig: Rig) -> None:
    txq = rig.tx_queue(size=32, pool_size=8)
    assert txq.tx_burst(batch([seq_frame(i) for i in range(20)])) == 8
    assert txq.stats.backpressure == 1
    # a frame needing two buffers is not split: 7 one-buffer frames fit, then nothing
    rig.nic0.write32(regs.TCTL, 0)
    assert txq.tx_burst(batch([seq_frame(i) for i in range(7)] + [seq_frame(99, 3000)])) == 7
    assert txq.pool.available == 1
    assert txq.tx_burst(batch([seq_frame(100, 3000)])) == 0


def test_statistics_registers(rig: Rig) -> None:
    txq, rxq = rig.tx_queue(), rig.rx_queue()
    sizes = [64, 100, 1514, 3000 - 1486]
    assert txq.tx_burst(batch([seq_frame(i, n) for i, n in enumerate(sizes)])) == 4
    octets = sum(sizes) + ETH_FCS_LEN * len(sizes)
    nic0 = rig.nic0
    assert nic0.read32(regs.GPTC) == 4
    assert nic0.read32(regs.TPT) == 4
    assert nic0.read32(regs.GOTCL) == octets
    assert nic0.read32(regs.GOTCL) == octets  # the low half alone does not clear
    assert nic0.read32(regs.GOTCH) == 0  # reading the high half clears the pair
    assert nic0.read32(regs.GOTCL) == 0
    assert nic0.read32(regs.TOTL) == octets
    assert nic0.read32(regs.GPTC) == 0  # clear on read
    assert nic0.read32(regs.TPT) == 0
    assert len(rxq.rx_burst()) == 4


def test_statistics_are_read_only_and_64_bit(rig: Rig) -> None:
    txq = rig.tx_queue(size=16)
    assert txq.tx_burst(batch([seq_frame(i, 1514) for i in range(3)])) == 3
    rig.nic0.write32(regs.GPTC, 1234)  # statistics are read-only
    rig.nic0.write32(regs.GOTCL, 0)
    assert rig.nic0.read32(regs.GPTC) == 3
    # past 2**32 octets the pair carries into the high register (the count itself is the device's own)
    rig.nic0.count_stat(regs.GOTCL, (5 << 32) - 3 * (1514 + ETH_FCS_LEN) + 9)
    low, high = rig.nic0.read32(regs.GOTCL), rig.nic0.read32(regs.GOTCH)
    assert (high, low) == (5, 9)
    assert rig.nic0.read32(regs.GOTCH) == 0


def test_psp_pads_short_frames(rig: Rig) -> None:
    txq = rig.tx_queue(size=16)
    short = frame(b"hi" * 3)
    assert len(short) == 20
    assert txq.tx_burst(batch([short])) == 1
    assert rig.wire == [short + bytes(ETH_MIN_FRAME - 20)]
    assert rig.nic0.read32(regs.GOTCL) == ETH_MIN_FRAME + ETH_FCS_LEN
    rig.nic0.write32(regs.TCTL, regs.TCTL_EN)  # PSP off: the frame goes out as it is
    assert txq.tx_burst(batch([short])) == 1
    assert rig.wire[-1] == short


def test_checksum_insertion(rig: Rig) -> None:
    tx = RawTx(rig.nic0, rig.memory)
    payload = bytes(range(60))
    pkt = frame(payload)
    slot = tx.put(pkt, GOOD | TXD_CMD_IC)
    tx.ring["css"][slot] = 14
    tx.ring["cso"][slot] = 24
    tx.kick()
    sent = rig.wire[-1]
    # the bytes already at CSO are part of the sum: software leaves its pseudo-header seed there
    body = bytearray(pkt)
    words = np.frombuffer(bytes(body[14:]), dtype=">u2").astype(np.int64)
    total = int(words.sum())
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert sent[24:26] == (~total & 0xFFFF).to_bytes(2, "big")
    assert sent[:24] == pkt[:24] and sent[26:] == pkt[26:]
    # CSO outside the packet: sent untouched and counted
    slot = tx.put(pkt, GOOD | TXD_CMD_IC)
    tx.ring["cso"][slot] = 200
    tx.kick()
    assert rig.wire[-1] == pkt
    assert rig.nic0.counters.csum_offset_errors == 1


def test_wraparound_keeps_order(rig: Rig) -> None:
    txq, rxq = rig.tx_queue(size=16), rig.rx_queue(size=16)
    rng = np.random.default_rng(5)
    sent: list[bytes] = []
    got: list[bytes] = []
    heads = set()
    seq = 0
    for _ in range(60):
        k = int(rng.integers(1, 8))
        frames = [seq_frame(seq + i, int(rng.choice([60, 128, 1514]))) for i in range(k)]
        seq += k
        assert txq.tx_burst(batch(frames)) == k
        sent += frames
        heads.add(rig.nic0.reg(regs.TDH))
        got += list(rxq.rx_burst())
    assert got == sent
    assert len(sent) > 10 * 16  # both rings wrapped many times
    assert len(heads) == 16
    assert rig.nic1.read32(regs.MPC) == 0


def test_reap_counts_refused_completions(rig: Rig) -> None:
    txq = rig.tx_queue(size=16)
    rig.nic0.write32(regs.TCTL, 0)  # the device does not run: completions come from "the kernel"
    assert txq.tx_burst(batch([seq_frame(i) for i in range(4)])) == 4
    assert txq.reap() == 0
    txq.ring["status"][:2] = TXD_STAT_DD | TXD_STAT_REFUSED
    txq.ring["status"][3] = TXD_STAT_DD  # done out of order: reaping stops at slot 2
    assert txq.reap() == 2
    assert txq.stats.refused == 2 and txq.in_flight == 2
    assert txq.pool.available + txq.in_flight == txq.pool.count
