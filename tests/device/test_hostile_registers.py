"""Hostile register and descriptor input: every case has a defined, bounded, counted answer.

Each test runs with a DMA observer on both NICs and ends by checking that no
access the bus allowed ever reached outside physical memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from device.e1000 import ALL_ONES, mac_to_regs
from ring import regs
from ring.descriptors import (
    DESC_SIZE,
    MAX_TX_PACKET,
    TX_DESC,
    TXD_CMD_DEXT,
    TXD_CMD_EOP,
    TXD_CMD_IFCS,
    TXD_CMD_RS,
    TXD_STAT_DD,
)
from tests.conftest import MAC0, Rig, batch, seq_frame, seq_of
from tests.device.raw import BUF, GOOD, DmaLog, RawTx, u8, watch

MORE = TXD_CMD_IFCS | TXD_CMD_RS  # a fragment: not the end of its packet


@pytest.fixture
def log(rig: Rig) -> Iterator[DmaLog]:
    dma = watch(rig.nic0, rig.nic1)
    yield dma
    dma.assert_bounded()


def counters(rig: Rig, nic: str = "nic0") -> dict[str, int]:
    dev = rig.nic0 if nic == "nic0" else rig.nic1
    return {k: v for k, v in dev.counters.as_dict().items() if v}


# -- ring geometry ------------------------------------------------------------------
def test_tdlen_low_bits_ignored(rig: Rig, log: DmaLog) -> None:
    tx = RawTx(rig.nic0, rig.memory, size=8)
    rig.nic0.write32(regs.TDLEN, 8 * DESC_SIZE + 0x5F)
    assert rig.nic0.read32(regs.TDLEN) == 8 * DESC_SIZE
    rig.nic0.write32(regs.RDLEN, 0x7F)
    assert rig.nic0.read32(regs.RDLEN) == 0
    assert counters(rig) == {"ring_len_misaligned": 2}
    tx.send(seq_frame(1))  # the ring still works with the aligned length
    assert [seq_of(f) for f in rig.wire] == [1]


def test_ring_base_low_bits_ignored(rig: Rig, log: DmaLog) -> None:
    tx = RawTx(rig.nic0, rig.memory, size=8)
    rig.nic0.write32(regs.TDBAL, (tx.base & 0xFFFF_FFFF) | 0xF)
    assert rig.nic0.read32(regs.TDBAL) == tx.base & 0xFFFF_FFFF
    tx.send(seq_frame(1))
    assert len(rig.wire) == 1
    assert log.ranges("tx-desc") == [(tx.base, DESC_SIZE)]


def test_tdlen_zero_processes_nothing(rig: Rig, log: DmaLog) -> None:
    tx = RawTx(rig.nic0, rig.memory, size=8)
    rig.nic0.write32(regs.TDLEN, 0)
    tx.send(seq_frame(1), seq_frame(2))
    assert rig.nic0.reg(regs.TDH) == 0 and rig.nic0.reg(regs.TDT) == 2
    assert rig.wire == [] and log.batches == []
    assert tx.ring["status"][0] == 0


@pytest.mark.parametrize(("head", "tail"), [(0, 8), (0, 0xFFFF), (0, 0xFFFF_FFFF), (9, 1), (0x1234, 3)])
def test_head_or_tail_beyond_ring(rig: Rig, log: DmaLog, head: int, tail: int) -> None:
    tx = RawTx(rig.nic0, rig.memory, size=8)
    tx.put(seq_frame(1))
    rig.nic0.write32(regs.TDH, head)
    rig.nic0.write32(regs.TDT, tail)
    assert rig.nic0.reg(regs.TDT) == tail & 0xFFFF  # head and tail are 16-bit registers
    assert rig.nic0.reg(regs.TDH) == head & 0xFFFF  # the queue stalls where it is
    assert counters(rig) == {"bad_ring_index": 1}
    assert log.batches == [] and rig.wire == []
    # a sane head and tail make the queue work again
    rig.nic0.write32(regs.TDH, 0)
    rig.nic0.write32(regs.TDT, 1)
    assert [seq_of(f) for f in rig.wire] == [1]


@pytest.mark.parametrize("base", [16 << 20, (16 << 20) + 0x1000, 1 << 32, 0xFFFF_FFFF_FFFF_FFF0])
def test_tx_ring_base_beyond_memory(rig: Rig, log: DmaLog, base: int) -> None:
    dev = rig.nic0
    dev.write32(regs.TDBAL, base & 0xFFFF_FFFF)
    dev.write32(regs.TDBAH, base >> 32)
    dev.write32(regs.TDLEN, 8 * DESC_SIZE)
    dev.write32(regs.TDT, 3)
    assert counters(rig) == {"desc_fetch_errors": 1}
    assert dev.reg(regs.TDH) == 0  # the queue stalls: nothing fetched, nothing consumed
    assert rig.wire == []
    fetches = log.of("tx-desc")
    assert len(fetches) == 1 and not fetches[0].allowed.any()
    assert [b.purpose for b in log.batches] == ["tx-desc"]  # no data read, no write-back
    assert rig.nic0.dma.blocked == 1


def test_tx_ring_address_wrapping_2_64_never_reaches_address_0(rig: Rig, log: DmaLog) -> None:
    dev = rig.nic0
    kernel_page = rig.memory.data[:4096].copy()
    base = 2**64 - DESC_SIZE  # slot 1 would sit at 2**64, which a wrapping adder makes 0
    dev.write32(regs.TDBAL, base & 0xFFFF_FFFF)
    dev.write32(regs.TDBAH, base >> 32)
    dev.write32(regs.TDLEN, 8 * DESC_SIZE)
    dev.write32(regs.TDH, 1)
    dev.write32(regs.TDT, 3)
    assert counters(rig) == {"desc_fetch_errors": 1}
    assert dev.reg(regs.TDH) == 1 and rig.wire == []
    assert [b.purpose for b in log.batches] == ["tx-desc"]
    assert not log.batches[0].allowed.any()
    assert (rig.memory.data[:4096] == kernel_page).all()


def test_rx_ring_address_wrapping_2_64_never_reaches_address_0(rig: Rig, log: DmaLog) -> None:
    dev = rig.nic1
    kernel_page = rig.memory.data[:4096].copy()
    base = 2**64 - DESC_SIZE
    dev.write32(regs.RDBAL, base & 0xFFFF_FFFF)
    dev.write32(regs.RDBAH, base >> 32)
    dev.write32(regs.RDLEN, 8 * DESC_SIZE)
    dev.write32(regs.RDH, 1)
    dev.write32(regs.RDT, 5)
    rig.nic0.port.transmit(batch([seq_frame(1), seq_frame(2)]))
    assert counters(rig, "nic1") == {"desc_fetch_errors": 1}
    assert dev.read32(regs.MPC) == 2
    assert [b.purpose for b in log.batches] == ["rx-desc"]
    assert not log.batches[0].allowed.any()
    assert (rig.memory.data[:4096] == kernel_page).all()


def test_tx_ring_straddling_the_end_of_memory_stalls_at_the_edge(rig: Rig, log: DmaLog) -> None:
    dev, mem = rig.nic0, rig.memory
    base = mem.size - 2 * DESC_SIZE  # slots 0 and 1 inside memory, 2..7 beyond
    buf = mem.alloc(BUF, owner=7).phys
    ring = mem.view(base, 2 * DESC_SIZE).view(TX_DESC)
    f = seq_frame(1)
    mem.view(buf, len(f))[:] = u8(f)
    ring["addr"] = buf
    ring["length"] = len(f)
    ring["cmd"] = GOOD
    dev.write32(regs.TDBAL, base)
    dev.write32(regs.TDLEN, 8 * DESC_SIZE)
    dev.write32(regs.TDT, 2)
    assert dev.reg(regs.TDH) == 2 and len(rig.wire) == 2
    assert (ring["status"] & TXD_STAT_DD).all()
    dev.write32(regs.TDT, 5)
    assert dev.reg(regs.TDH) == 2 and len(rig.wire) == 2
    assert counters(rig) == {"desc_fetch_errors": 1}


# -- buffers ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("addr", "length"),
    [
        (16 << 20, 64),  # just past the end of memory
        ((16 << 20) - 32, 64),  # starts inside, ends outside
        (1 << 40, 64),
        (2**64 - 16, 64),  # addr + len wraps 2**64
        (2**64 - 1, 0x3000),
    ],
)
def test_tx_buffer_beyond_memory(rig: Rig, log: DmaLog, addr: int, length: int) -> None:
    tx = RawTx(rig.nic0, rig.memory, size=8)
    tx.put(seq_frame(1))
    bad = tx.put(addr=addr, length=length)
    tx.put(seq_frame(3))
    tx.kick()
    assert counters(rig) == {"dma_errors": 1}
    assert [seq_of(f) for f in rig.wire] == [1, 3]  # the bad packet is dropped, nothing of it is sent
    assert tx.ring["status"][bad] & TXD_STAT_DD  # still completed
    assert tx.head == 3
    blocked = log.ranges("tx-data", allowed=False)
    assert blocked == [(addr, length)]


def test_tx_fragment_beyond_memory_drops_the_whole_packet(rig: Rig, log: DmaLog) -> None:
    tx = RawTx(rig.nic0, rig.memory, size=8)
    whole = seq_frame(2, 300)
    tx.put(whole[:100], MORE)
    tx.put(addr=1 << 40, length=100, cmd=MORE)
    tx.put(whole[200:], GOOD)
    tx.put(seq_frame(4))
    tx.kick()
    assert counters(rig) == {"dma_errors": 1}
    assert [seq_of(f) for f in rig.wire] == [4]
    assert (tx.ring["status"][:4] & TXD_STAT_DD).all()


# -- packets that are wrong in shape ---------------------------------------------------------
def test_packet_that_never_ends(rig: Rig, log: DmaLog) -> None:
    tx = RawTx(rig.nic0, rig.memory, size=16)
    engine = rig.nic0.tx[0]
    for _ in range(4):
        tx.put(b"\xab" * BUF, MORE)
    tx.kick()
    assert rig.wire == [] and tx.head == 4  # held, not sent, descriptors completed
    assert (tx.ring["status"][:4] & TXD_STAT_DD).all()
    assert engine.partial.fragments == 4 and engine.partial.length == 4 * BUF
    assert sum(d.size for d in engine.partial.data) == 4 * BUF
    fragments = MAX_TX_PACKET // BUF + 1  # enough to pass the limit
    for _ in range(fragments - 4):
        tx.put(b"\xcd" * BUF, MORE)
    tx.kick()
    assert engine.partial.length > MAX_TX_PACKET
    assert engine.partial.bad
    assert engine.partial.data == []  # its bytes are not kept
    reads_before = len(log.ranges("tx-data"))
    tx.put(b"\xef" * BUF, MORE)  # still open: not even fetched any more
    tx.kick()
    assert len(log.ranges("tx-data")) == reads_before
    assert counters(rig) == {}  # counted only when the packet finally ends
    tx.put(seq_frame(1), GOOD)
    tx.put(seq_frame(2), GOOD)
    tx.kick()
    assert counters(rig) == {"oversize_packets": 1}
    assert [seq_of(f) for f in rig.wire] == [2]
    assert engine.partial.fragments == 0 and not engine.partial.bad


def test_single_descriptor_longer_than_max(rig: Rig, log: DmaLog) -> None:
    tx = RawTx(rig.nic0, rig.memory, size=8)
    tx.put(addr=tx.buf(0), length=MAX_TX_PACKET + 1)
    tx.put(seq_frame(1))
    tx.kick()
    assert counters(rig) == {"oversize_packets": 1}
    assert [seq_of(f) for f in rig.wire] == [1]


def test_dext_descriptor_unsupported(rig: Rig, log: DmaLog) -> None:
    tx = RawTx(rig.nic0, rig.memory, size=8)
    tx.put(seq_frame(1), GOOD | TXD_CMD_DEXT)
    tx.put(seq_frame(2)[:30], MORE)
    tx.put(seq_frame(2)[30:], GOOD | TXD_CMD_DEXT)  # one DEXT fragment dooms its packet
    tx.put(seq_frame(3))
    tx.kick()
    assert counters(rig) == {"unsupported_desc": 2}
    assert [seq_of(f) for f in rig.wire] == [3]
    assert (tx.ring["status"][:4] & TXD_STAT_DD).all()


def test_zero_length_packets(rig: Rig, log: DmaLog) -> None:
    tx = RawTx(rig.nic0, rig.memory, size=8)
    tx.put(length=0, cmd=GOOD)
    tx.put(length=0, cmd=MORE)
    tx.put(length=0, cmd=GOOD)
    tx.put(seq_frame(1))
    tx.kick()
    assert counters(rig) == {"empty_packets": 2}
    assert [seq_of(f) for f in rig.wire] == [1]
    assert (tx.ring["status"][:4] & TXD_STAT_DD).all()
    assert all(length > 0 for _, length in log.ranges("tx-data"))  # nothing fetched for them


def test_eop_only_on_a_later_kick_with_zero_length_middle(rig: Rig, log: DmaLog) -> None:
    tx = RawTx(rig.nic0, rig.memory, size=8)
    whole = seq_frame(1, 200)
    tx.put(whole[:50], MORE)
    tx.put(length=0, cmd=MORE)
    tx.kick()
    tx.put(whole[50:], TXD_CMD_EOP | TXD_CMD_RS)
    tx.kick()
    assert rig.wire == [whole]
    assert counters(rig) == {}


# -- the register window itself ------------------------------------------------------------------
@pytest.mark.parametrize("offset", [1, 2, 3, regs.TDT + 1, regs.BAR0_SIZE, regs.BAR0_SIZE + 4, -4, 1 << 40])
def test_bad_register_access(rig: Rig, log: DmaLog, offset: int) -> None:
    dev = rig.nic0
    before = dev.regs.copy()
    assert dev.read32(offset) == ALL_ONES
    dev.write32(offset, 0x1234_5678)
    assert (dev.regs == before).all()
    assert counters(rig) == {"bad_register_access": 2}


def test_ctrl_rst_resets_registers_and_reloads_mac(rig: Rig, log: DmaLog) -> None:
    dev = rig.nic0
    tx = RawTx(dev, rig.memory, size=8)
    tx.put(b"\x11" * 100, MORE)  # an open packet inside the engine
    tx.kick()
    dev.write32(regs.RAL0, 0xDEAD_BEEF)
    dev.write32(regs.RAH0, 0)
    dev.write32(regs.IMS, 0xFF)
    tx.send(seq_frame(1))
    assert dev.stats  # statistics pending
    dev.write32(regs.CTRL, regs.CTRL_RST | regs.CTRL_SLU)
    ral, rah = mac_to_regs(MAC0)
    assert dev.read32(regs.RAL0) == ral == int.from_bytes(MAC0[:4], "little")
    assert dev.read32(regs.RAH0) == rah
    assert rah & regs.RAH_AV
    assert dev.read32(regs.CTRL) & regs.CTRL_RST == 0  # self-clearing
    for offset in (*regs.TX_RING_REGS, *regs.RX_RING_REGS, regs.TCTL, regs.RCTL, regs.IMS, regs.ICR):
        assert dev.read32(offset) == 0, regs.reg_name(offset)
    assert dev.read32(regs.STATUS) == regs.STATUS_FD  # link down until SLU is set again
    assert dev.read32(regs.GPTC) == 0 and dev.read32(regs.TPT) == 0
    assert dev.tx[0].partial.fragments == 0
    # the kernel's bring-up works again after the reset
    dev.write32(regs.CTRL, regs.CTRL_SLU | regs.CTRL_FD)
    assert dev.read32(regs.STATUS) & regs.STATUS_LU


def test_read_only_and_clear_on_read_registers(rig: Rig, log: DmaLog) -> None:
    dev = rig.nic0
    dev.write32(regs.STATUS, 0)
    assert dev.read32(regs.STATUS) & regs.STATUS_LU  # read-only
    dev.write32(regs.ICS, regs.ICR_TXDW)
    assert dev.read32(regs.ICR) & regs.ICR_TXDW
    assert dev.read32(regs.ICR) == 0  # clear on read
    dev.write32(regs.IMS, 0b1010)
    dev.write32(regs.IMC, 0b0010)
    assert dev.read32(regs.IMS) == 0b1000
    assert counters(rig) == {}


# -- receive side -----------------------------------------------------------------------------
def test_rx_ring_base_beyond_memory(rig: Rig, log: DmaLog) -> None:
    dev = rig.nic1
    dev.write32(regs.RDBAL, rig.memory.size & 0xFFFF_FFFF)
    dev.write32(regs.RDBAH, 0)
    dev.write32(regs.RDLEN, 8 * DESC_SIZE)
    dev.write32(regs.RDT, 7)
    snapshot = rig.memory.data.copy()
    txq = rig.tx_queue(size=8)
    assert txq.tx_burst(batch([seq_frame(i) for i in range(3)])) == 3
    assert counters(rig, "nic1") == {"desc_fetch_errors": 1}
    assert dev.read32(regs.MPC) == 3
    assert dev.read32(regs.GPRC) == 0
    assert dev.reg(regs.RDH) == 0
    rx_batches = [b for b in log.batches if b.device == "nic1"]
    assert [b.purpose for b in rx_batches] == ["rx-desc"] and not rx_batches[0].allowed.any()
    # nothing but alice's own new queue memory changed
    changed = (rig.memory.data != snapshot).nonzero()[0]
    assert all(rig.memory.owner_of(int(p)) == rig.alice.tenant_id for p in changed)


def test_rx_head_or_tail_beyond_ring(rig: Rig, log: DmaLog) -> None:
    rxq = rig.rx_queue(size=8)
    rig.nic1.write32(regs.RDT, 8)
    rig.tx_queue(size=8).tx_burst(batch([seq_frame(1), seq_frame(2)]))
    assert counters(rig, "nic1") == {"bad_ring_index": 1}
    assert rig.nic1.read32(regs.MPC) == 2
    assert not [b for b in log.batches if b.device == "nic1"]
    rig.nic1.write32(regs.RDT, 7)
    rig.nic0.port.transmit(batch([seq_frame(3)]))
    assert [seq_of(f) for f in rxq.rx_burst()] == [3]


def test_rx_ring_of_length_zero(rig: Rig, log: DmaLog) -> None:
    rig.nic1.write32(regs.RDT, 5)  # a tail but no ring
    rig.nic0.port.transmit(batch([seq_frame(1)]))
    assert rig.nic1.read32(regs.MPC) == 1
    assert counters(rig, "nic1") == {}
    assert log.batches == []
