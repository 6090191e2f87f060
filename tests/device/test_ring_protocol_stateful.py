"""The ring protocol as a state machine: tenant posts and reaps, the device runs, frames cross a cable.

An independent model (a plain loop in the cable tap) predicts which frames
the receiver can place, from the RX descriptors posted at the moment each
burst arrives; everything else must show up in MPC.  After every step no
frame is lost, duplicated or reordered, the TX head never passes the tail
and buffers are conserved.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ring import indices, regs
from ring.descriptors import DESC_SIZE, RXD_STAT_DD, RXD_STAT_EOP
from ring.frames import FrameBatch
from tests.conftest import batch, make_rig, seq_frame, seq_of

RING = 16  # TX descriptors
RX_RING = 8  # small, so the receiver runs out of buffers often
SIZES = st.sampled_from([60, 200, 1514, 2100, 3000])


class RingProtocol(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rig = make_rig()
        nic1 = self.rig.nic1
        nic1.write32(regs.RCTL, nic1.read32(regs.RCTL) | regs.RCTL_LPE)
        self.txq = self.rig.tx_queue(size=RING)
        self.rxq = self.rig.rx_queue(size=RX_RING)
        self.next_seq = 0
        self.size_of: dict[int, int] = {}
        self.accepted: list[int] = []  # sequence numbers tx_burst took, in order
        self.wire: list[int] = []  # what crossed the cable
        self.placed: list[int] = []  # what the model says the receiver had room for
        self.dropped: list[int] = []  # what the model says it had no room for
        self.received: list[int] = []  # what rx_burst returned
        self.missed = 0  # MPC, accumulated (the register clears on read)
        self.paused = False
        self.rig.cable.taps.append(self._model)

    def _model(self, source: str, frames: FrameBatch, _stamps: npt.NDArray[np.int64]) -> None:
        assert source == "nic0"
        nic1 = self.rig.nic1
        count = nic1.reg(regs.RDLEN) // DESC_SIZE
        room = indices.used(nic1.reg(regs.RDH), nic1.reg(regs.RDT), count)
        full = False
        for f in frames:
            seq = seq_of(f)
            self.wire.append(seq)
            need = -(-len(f) // self.rxq.pool.buf_size)
            if not full and need <= room:
                room -= need
                self.placed.append(seq)
            else:
                full = True  # frames are placed in order: after the first miss, nothing more
                self.dropped.append(seq)

    # -- tenant ---------------------------------------------------------------------------------
    @rule(sizes=st.lists(SIZES, max_size=10))
    def post(self, sizes: list[int]) -> None:
        seqs = list(range(self.next_seq, self.next_seq + len(sizes)))
        self.next_seq += len(sizes)
        for seq, size in zip(seqs, sizes, strict=True):
            self.size_of[seq] = size
        backpressure = self.txq.stats.backpressure
        n = self.txq.tx_burst(batch([seq_frame(s, n) for s, n in zip(seqs, sizes, strict=True)]))
        assert 0 <= n <= len(sizes)
        assert (self.txq.stats.backpressure > backpressure) == (n < len(sizes))
        self.accepted += seqs[:n]

    @rule(max_frames=st.integers(1, RX_RING))
    def rx_reap(self, max_frames: int) -> None:
        got = self.rxq.rx_burst(max_frames)
        assert len(got) <= max_frames
        for f in got:
            seq = seq_of(f)
            assert f == seq_frame(seq, self.size_of[seq])
            self.received.append(seq)

    @rule()
    def tx_reap(self) -> None:
        before = self.txq.in_flight
        k = self.txq.reap()
        assert self.txq.in_flight == before - k

    # -- device ---------------------------------------------------------------------------------
    @rule()
    def rekick(self) -> None:
        nic0 = self.rig.nic0
        nic0.write32(regs.TDT, nic0.reg(regs.TDT))

    @rule()
    def pause_transmitter(self) -> None:
        self.rig.nic0.write32(regs.TCTL, regs.TCTL_PSP)
        self.paused = True

    @rule()
    def resume_transmitter(self) -> None:
        self.rig.nic0.write32(regs.TCTL, regs.TCTL_EN | regs.TCTL_PSP)  # runs the queue inline
        self.paused = False

    # -- invariants -----------------------------------------------------------------------------
    @invariant()
    def nothing_lost_duplicated_or_reordered(self) -> None:
        assert self.wire == self.accepted[: len(self.wire)]
        if not self.paused:
            assert len(self.wire) == len(self.accepted)
        assert self.received == self.placed[: len(self.received)]
        assert sorted(self.placed + self.dropped) == self.wire
        self.missed += self.rig.nic1.read32(regs.MPC)
        assert self.missed == len(self.dropped)

    @invariant()
    def placed_frames_wait_in_the_rx_ring(self) -> None:
        rxq, nic1 = self.rxq, self.rig.nic1
        waiting = indices.used(rxq.next, nic1.reg(regs.RDH), RX_RING)
        status = rxq.ring["status"][indices.slots(rxq.next, waiting, RX_RING)]
        assert ((status & RXD_STAT_DD) != 0).all()
        assert int(np.count_nonzero(status & RXD_STAT_EOP)) == len(self.placed) - len(self.received)
        assert indices.used(rxq.next, rxq.tail, RX_RING) == RX_RING - 1  # every slot but one is posted
        assert nic1.reg(regs.RDT) == rxq.tail

    @invariant()
    def tx_head_never_passes_tail(self) -> None:
        txq, nic0 = self.txq, self.rig.nic0
        head, tail = nic0.reg(regs.TDH), nic0.reg(regs.TDT)
        assert tail == txq.tail
        assert indices.used(txq.clean, head, RING) <= indices.used(txq.clean, tail, RING)
        assert 0 <= txq.in_flight <= RING - 1
        if not self.paused:
            assert head == tail

    @invariant()
    def buffers_conserved(self) -> None:
        txq = self.txq
        assert txq.pool.available + txq.in_flight == txq.pool.count
        held = txq.slot_buf[txq.slot_buf >= 0]
        assert held.size == txq.in_flight and np.unique(held).size == held.size
        assert self.rxq.pool.available == self.rxq.pool.count  # RX slot i keeps buffer i


RingProtocol.TestCase.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)
TestRingProtocol = RingProtocol.TestCase
