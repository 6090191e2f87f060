"""The receive engine: write-back, long packets, missed packets, filters and statistics."""

from __future__ import annotations

import zlib

from ring import indices, regs
from ring.descriptors import ETH_FCS_LEN, RXD_ERR_RXE, RXD_STAT_DD, RXD_STAT_EOP
from ring.frames import FrameBatch
from tests.conftest import MAC0, Rig, batch, frame, seq_frame, seq_of
from tests.device.raw import RawRx

DONE = RXD_STAT_DD | RXD_STAT_EOP


def enable_long_packets(rig: Rig) -> None:
    rig.nic1.write32(regs.RCTL, rig.nic1.read32(regs.RCTL) | regs.RCTL_LPE)


def test_write_back_then_rx_burst(rig: Rig) -> None:
    txq, rxq = rig.tx_queue(), rig.rx_queue(size=16)
    frames = [seq_frame(i, 60 + 10 * i) for i in range(5)]
    txq.tx_burst(batch(frames))
    assert rxq.ring["status"][:5].tolist() == [DONE] * 5
    assert rxq.ring["length"][:5].tolist() == [len(f) for f in frames]  # SECRC: no FCS
    assert rxq.ring["errors"][:5].tolist() == [0] * 5
    assert rxq.ring["status"][5:].tolist() == [0] * 11
    assert rig.nic1.reg(regs.RDH) == 5
    assert list(rxq.rx_burst()) == frames
    # the slots are re-armed and given back: the tail moved on by five
    assert rxq.ring["status"][:5].tolist() == [0] * 5
    assert rig.nic1.reg(regs.RDT) == indices.advance(15, 5, 16)
    assert rxq.stats.frames == 5 and rxq.stats.bytes == sum(map(len, frames))
    assert len(rxq.rx_burst()) == 0


def test_rx_burst_max_frames(rig: Rig) -> None:
    txq, rxq = rig.tx_queue(), rig.rx_queue(size=16)
    frames = [seq_frame(i) for i in range(7)]
    txq.tx_burst(batch(frames))
    assert list(rxq.rx_burst(3)) == frames[:3]
    assert len(rxq.rx_burst(0)) == 0
    assert list(rxq.rx_burst(100)) == frames[3:]


def test_long_packet_spans_two_buffers(rig: Rig) -> None:
    enable_long_packets(rig)
    txq, rxq = rig.tx_queue(), rig.rx_queue(size=16)
    long = seq_frame(1, 3000)
    assert txq.tx_burst(batch([long, seq_frame(2)])) == 2
    assert rxq.ring["length"][:3].tolist() == [2048, 3000 - 2048, 64]
    assert rxq.ring["status"][:3].tolist() == [RXD_STAT_DD, DONE, DONE]
    assert rig.nic1.reg(regs.RDH) == 3
    got = rxq.rx_burst()
    assert list(got) == [long, seq_frame(2)]
    assert rig.nic1.read32(regs.GPRC) == 2


def test_long_packet_refused_without_lpe(rig: Rig) -> None:
    txq, rxq = rig.tx_queue(), rig.rx_queue(size=16)
    assert txq.tx_burst(batch([seq_frame(1), seq_frame(2, 3000), seq_frame(3, 1514)])) == 3
    assert [seq_of(f) for f in rxq.rx_burst()] == [1, 3]  # 1514 bytes is the longest standard frame
    assert rig.nic1.counters.rx_oversize == 1
    assert rig.nic1.read32(regs.ROC) == 1


def test_partial_frame_is_never_placed(rig: Rig) -> None:
    enable_long_packets(rig)
    txq, rxq = rig.tx_queue(), rig.rx_queue(size=8)
    txq.tx_burst(batch([seq_frame(i) for i in range(6)]))  # 7 posted, 6 used: one left
    txq.tx_burst(batch([seq_frame(6, 3000)]))  # needs two: missed whole
    assert rig.nic1.reg(regs.RDH) == 6
    assert rig.nic1.read32(regs.MPC) == 1
    assert [seq_of(f) for f in rxq.rx_burst()] == list(range(6))


def test_no_descriptor_drops_into_mpc(rig: Rig) -> None:
    txq, rxq = rig.tx_queue(), rig.rx_queue(size=8)
    frames = [seq_frame(i) for i in range(10)]
    assert txq.tx_burst(batch(frames)) == 10
    assert rig.nic1.read32(regs.MPC) == 3  # 7 buffers posted
    assert rig.nic1.read32(regs.MPC) == 0  # clear on read
    assert rig.nic1.read32(regs.ICR) & regs.ICR_RXO
    assert list(rxq.rx_burst()) == frames[:7]
    txq.tx_burst(batch(frames[7:]))  # room again
    assert list(rxq.rx_burst()) == frames[7:]
    assert rig.nic1.read32(regs.MPC) == 0


def test_no_rx_ring_at_all_counts_mpc(rig: Rig) -> None:
    txq = rig.tx_queue()
    txq.tx_burst(batch([seq_frame(i) for i in range(4)]))  # RDLEN is 0: nothing posted
    assert rig.nic1.read32(regs.MPC) == 4
    assert rig.nic1.read32(regs.GPRC) == 0


def test_receive_statistics(rig: Rig) -> None:
    txq, rxq = rig.tx_queue(), rig.rx_queue()
    sizes = [60, 61, 1000, 1514]
    txq.tx_burst(batch([seq_frame(i, n) for i, n in enumerate(sizes)]))
    octets = sum(sizes) + ETH_FCS_LEN * len(sizes)  # GORC counts the FCS even when SECRC strips it
    nic1 = rig.nic1
    assert nic1.read32(regs.GPRC) == 4
    assert nic1.read32(regs.TPR) == 4
    assert nic1.read32(regs.GORCL) == octets
    assert nic1.read32(regs.GORCH) == 0
    assert nic1.read32(regs.GORCL) == 0
    assert nic1.read32(regs.GPRC) == 0
    assert len(rxq.rx_burst()) == 4


def test_fcs_kept_without_secrc(rig: Rig) -> None:
    rig.nic1.write32(regs.RCTL, rig.nic1.read32(regs.RCTL) & ~regs.RCTL_SECRC)
    rx = RawRx(rig.nic1, rig.memory, size=8)
    f = seq_frame(9, 100)
    rig.nic1.receive(batch([f]))
    assert int(rx.ring["length"][0]) == 104
    assert rx.data(0) == f + zlib.crc32(f).to_bytes(4, "little")
    assert rig.nic1.read32(regs.GORCL) == 104


def test_raw_ring_write_back_and_wrap(rig: Rig) -> None:
    rx = RawRx(rig.nic1, rig.memory, size=8)
    rig.nic1.receive(batch([seq_frame(i) for i in range(5)]))
    assert rx.ring["status"][:5].tolist() == [DONE] * 5
    assert [seq_of(rx.data(i)) for i in range(5)] == list(range(5))
    # the driver gives the five slots back: RDT moves from 7 to 4 (wrapping)
    rx.ring["status"][:5] = 0
    rig.nic1.write32(regs.RDT, 4)
    rig.nic1.receive(batch([seq_frame(i) for i in range(5, 11)]))
    assert rig.nic1.reg(regs.RDH) == 3
    slots = indices.slots(5, 6, 8).tolist()
    assert [seq_of(rx.data(s)) for s in slots] == list(range(5, 11))
    assert rig.nic1.read32(regs.MPC) == 0
    rig.nic1.receive(batch([seq_frame(11), seq_frame(12)]))  # RDH + 1 == RDT: one more fits
    assert rig.nic1.read32(regs.MPC) == 1
    assert rig.nic1.reg(regs.RDH) == rig.nic1.reg(regs.RDT) == 4


def test_address_filter(rig: Rig) -> None:
    rx = RawRx(rig.nic1, rig.memory, size=8)
    mine = seq_frame(1)
    other = frame(b"\0" * 50, dst=bytes.fromhex("020000000099"))
    bcast = frame(b"\1" * 50, dst=b"\xff" * 6)
    mcast = frame(b"\2" * 50, dst=bytes.fromhex("01005e000001"))
    rig.nic1.receive(batch([other, mine, bcast, mcast]))
    assert rig.nic1.reg(regs.RDH) == 2
    assert [rx.data(0), rx.data(1)] == [mine, bcast]  # BAM set by bring-up
    assert rig.nic1.counters.rx_filtered == 2
    rig.nic1.write32(regs.RCTL, rig.nic1.read32(regs.RCTL) | regs.RCTL_UPE | regs.RCTL_MPE)
    rig.nic1.receive(batch([other, mcast]))
    assert rx.data(2) == other and rx.data(3) == mcast


def test_receiver_disabled_or_link_down(rig: Rig) -> None:
    rx = RawRx(rig.nic1, rig.memory, size=8)
    rctl = rig.nic1.read32(regs.RCTL)
    rig.nic1.write32(regs.RCTL, rctl & ~regs.RCTL_EN)
    rig.nic1.receive(batch([seq_frame(1)]))
    rig.nic1.write32(regs.RCTL, rctl)
    rig.nic1.write32(regs.CTRL, regs.CTRL_FD)  # SLU clear: link down
    assert not rig.nic1.read32(regs.STATUS) & regs.STATUS_LU
    rig.nic1.receive(batch([seq_frame(2)]))
    assert rig.nic1.counters.rx_disabled == 2
    assert rig.nic1.reg(regs.RDH) == 0
    rig.nic1.write32(regs.CTRL, regs.CTRL_FD | regs.CTRL_SLU)
    rig.nic1.receive(batch([seq_frame(3)]))
    assert seq_of(rx.data(0)) == 3


def test_rx_buffer_outside_memory_flags_rxe(rig: Rig) -> None:
    txq, rxq = rig.tx_queue(), rig.rx_queue(size=8)
    rxq.ring["addr"][1] = rig.memory.size + 4096  # a buffer the bus cannot reach
    frames = [seq_frame(i) for i in range(3)]
    txq.tx_burst(batch(frames))
    assert rxq.ring["errors"][:3].tolist() == [0, RXD_ERR_RXE, 0]
    assert rxq.ring["status"][:3].tolist() == [DONE] * 3
    assert list(rxq.rx_burst()) == [frames[0], frames[2]]
    assert rxq.stats.errors == 1
    assert rig.nic1.counters.dma_errors == 1
    assert rig.nic1.read32(regs.GPRC) == 2


def test_empty_burst_from_the_wire_is_a_no_op(rig: Rig) -> None:
    rx = RawRx(rig.nic1, rig.memory, size=8)
    assert rig.nic1.rx[0].place(FrameBatch()) == 0
    rig.nic1.receive(FrameBatch())  # a wire may deliver an empty burst: nothing happens
    rig.nic0.port.transmit(FrameBatch())
    assert rig.nic1.reg(regs.RDH) == 0
    assert rig.nic1.counters.as_dict() == {k: 0 for k in rig.nic1.counters.as_dict()}
    rig.nic1.receive(batch([frame(b"x" * 46, src=MAC0)]))
    assert rig.nic1.reg(regs.RDH) == 1 and rx.ring["status"][0] == DONE


def test_small_buffer_size_spans_descriptors(rig: Rig) -> None:
    rx = RawRx(rig.nic1, rig.memory, size=8)
    rig.nic1.write32(regs.RCTL, rig.nic1.read32(regs.RCTL) | (3 << regs.RCTL_BSIZE_SHIFT))  # BSIZE 256
    f = seq_frame(1, 600)
    rig.nic1.receive(batch([f, seq_frame(2, 100)]))
    assert rx.ring["length"][:4].tolist() == [256, 256, 88, 100]
    assert rx.ring["status"][:4].tolist() == [RXD_STAT_DD, RXD_STAT_DD, DONE, DONE]
    assert b"".join(rx.data(i) for i in range(3)) == f
    assert rig.nic1.reg(regs.RDH) == 4


def test_rx_burst_skips_refused_slots(rig: Rig) -> None:
    txq, rxq = rig.tx_queue(), rig.rx_queue(size=8)
    txq.tx_burst(batch([seq_frame(0), seq_frame(1)]))
    # slot 2 completed back without DMA, as the kernel does for a refused buffer
    rxq.ring["status"][2] = RXD_STAT_DD
    rxq.ring["errors"][2] = RXD_ERR_RXE
    rxq.ring["length"][2] = 0
    rig.nic1.write32(regs.RDH, 3)
    txq.tx_burst(batch([seq_frame(3)]))
    assert [seq_of(f) for f in rxq.rx_burst()] == [0, 1, 3]
    assert rxq.stats.refused == 1 and rxq.stats.errors == 0
    assert rig.nic1.reg(regs.RDT) == indices.advance(7, 4, 8)
