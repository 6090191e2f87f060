"""The transmit engine: from TDH to TDT, fetch, gather, assemble, send, write back.

8254x manual 3.3: the device fetches descriptors between head and tail,
DMA-reads each buffer, joins fragments until the descriptor with EOP, sends
the frame, and writes DD back into descriptors that asked for it with RS.
All of one kick is done as numpy batches: one descriptor fetch, one data
gather, one write-back.  Hostile input has a bounded, counted answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from device import fastdev
from ring import indices, regs
from ring.descriptors import (
    DESC_SIZE,
    ETH_MIN_FRAME,
    MAX_TX_PACKET,
    TX_DESC,
    TXD_CMD_DEXT,
    TXD_CMD_EOP,
    TXD_CMD_IC,
    TXD_CMD_RS,
    TXD_STAT_DD,
    word_shift,
)
from ring.frames import FrameBatch

if TYPE_CHECKING:
    from device.e1000 import E1000

#: Bytes of frames one compiled kick may gather (a larger kick takes the numpy engine).
BURST_SCRATCH = 1 << 20

#: Where the numpy kick finds the command and the length in a descriptor's second 64-bit word.
_CMD_SHIFT, _LENGTH_SHIFT = word_shift(TX_DESC, "cmd"), word_shift(TX_DESC, "length")


@dataclass
class PartialPacket:
    """Fragments fetched for a packet whose EOP has not arrived yet (bounded by MAX_TX_PACKET)."""

    data: list[npt.NDArray[np.uint8]] = field(default_factory=list)
    length: int = 0
    fragments: int = 0
    bad: bool = False  # already doomed (oversize, unreadable, DEXT): its bytes are not kept
    first_cmd: int = 0
    first_cso: int = 0
    first_css: int = 0

    def clear(self) -> None:
        self.data.clear()
        self.length = self.fragments = 0
        self.bad = False
        self.first_cmd = self.first_cso = self.first_css = 0


def internet_checksum(data: bytes) -> int:
    """RFC 1071 ones' complement sum, as the IC offload inserts it."""
    if len(data) % 2:
        data += b"\0"
    words = np.frombuffer(data, dtype=">u2").astype(np.uint64)
    total = int(words.sum())
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class TxEngine:
    """Transmit side of one queue of an E1000."""

    def __init__(self, dev: E1000, queue: int) -> None:
        self.dev = dev
        self.queue = queue
        self._regs = dev.regs  # the register file, read through this queue's word index of each ring register
        self._word = {base: regs.queue_reg(base, queue) >> 2 for base in regs.TX_RING_REGS}
        self.partial = PartialPacket()
        #: (base, count, head, tail) at which the queue stalled on a bad ring, or None
        self.stalled_at: tuple[int, int, int, int] | None = None
        self.fast = fastdev.enabled()
        memory = dev.dma.memory.data
        #: the register words the plain kick reads, in one fancy index: TCTL, CTRL, TDLEN, TDH, TDT, TDBAL, TDBAH
        self._kick_words = np.array(
            [regs.TCTL >> 2, regs.CTRL >> 2] + [self._word[r] for r in (regs.TDLEN, regs.TDH, regs.TDT, regs.TDBAL,
                                                                       regs.TDBAH)], dtype=np.intp)  # fmt: skip
        #: memory as transmit descriptors (TDBAL ignores bits 3:0, so every ring starts on one of these)
        self._descs = memory[: memory.size - memory.size % DESC_SIZE].view(TX_DESC)
        #: the same as rows of two 64-bit words (the numpy kick reads commands, lengths and addresses from these in
        #: two reductions) and their status bytes (where it writes DD)
        self._desc_words = self._descs.view(np.uint64).reshape(-1, 2)
        self._desc_status = self._descs["status"]
        #: the lengths of the last plain kick of equal frames, read-only: the next such kick, most likely as many
        #: frames as long, hands the same array to its FrameBatch
        self._same_lengths = np.zeros(0, dtype=np.int64)
        #: a compiled kick's frames are in the scratch and not on the wire yet: a kick nested in its
        #: interrupt handler takes the numpy engine, which leaves the scratch alone
        self._in_flight = False
        if self.fast is not None:  # the burst path's scratch: frames of one kick land here before they are copied out
            self._out = np.zeros(BURST_SCRATCH, dtype=np.uint8)
            self._out_len = np.zeros(65536, dtype=np.int64)
            self._out_total = np.zeros(3, dtype=np.int64)  # bytes gathered, longest frame, translated accesses
            self._c_out = self.fast.ptr(self._out)
            self._c_out_len = self.fast.i64(self._out_len)
            self._c_out_total = self.fast.i64(self._out_total)
            self._c_mem = self.fast.ptr(dev.dma.memory.data)
            self._mem_size = dev.dma.memory.data.size
            self._c_regs = fastdev.u32(self.fast, dev.regs)
            self._kicked = 0  # frames of the last compiled kick, still in the scratch

    def reg(self, offset: int) -> int:
        """This queue's copy of a queue-0 ring register (TDBAL, TDLEN, TDH, TDT ...)."""
        return int(self._regs[self._word[offset]])

    def run(self) -> int:
        """Process every descriptor from TDH to TDT; return how many were consumed."""
        if not self.partial.fragments and self.stalled_at is None:
            # compiled, unless a kick is still in the scratch (this one is nested in its interrupt handler)
            kicked = self._burst_numpy() if self.fast is None else (None if self._in_flight else self._burst())
            if kicked is not None:
                return kicked
        dev = self.dev
        if not dev.reg(regs.TCTL) & regs.TCTL_EN:
            return 0
        count = self.reg(regs.TDLEN) // DESC_SIZE
        head, tail = self.reg(regs.TDH), self.reg(regs.TDT)
        if count == 0 or head == tail:
            return 0
        base = self.reg(regs.TDBAL) | (self.reg(regs.TDBAH) << 32)
        state = (base, count, head, tail)
        if state == self.stalled_at:
            return 0  # nothing changed since the queue stalled: do not count it again
        if head >= count or tail >= count:
            dev.counters.bad_ring_index += 1
            self.stalled_at = state
            return 0
        room = dev.partner_room()  # 802.3x: None, or how many frames the paused-or-not partner takes now
        limited = room is not None and room < indices.used(head, tail, count)
        if room is not None:
            if room == 0:
                return 0  # XOFF: the descriptors stay between TDH and TDT, not done, until XON
            if limited:
                tail = indices.advance(head, room, count)  # each frame takes at least one descriptor
        sent = self._burst_window(base, count, head, tail)
        if sent is not None:
            n, frames = sent
            dev.set_reg(regs.queue_reg(regs.TDH, self.queue), tail)
            dev.raise_irq(regs.ICR_TXDW | regs.ICR_TXQE)
            self._send(frames, limited)
            return n
        n = indices.used(head, tail, count)
        slots = indices.slots(head, n, count)
        descs, fetched = dev.dma.read_descriptors(self.queue, "tx-desc", base, slots, TX_DESC)
        if not bool(fetched.all()):
            dev.counters.desc_fetch_errors += 1
            n = int(np.argmin(fetched))
            if n == 0:
                self.stalled_at = state
                return 0
            slots, descs = slots[:n], descs[:n]
        frames = self._assemble(descs)
        rs = (descs["cmd"] & TXD_CMD_RS) != 0
        if bool(rs.all()):
            descs["status"] = TXD_STAT_DD
            dev.dma.write_descriptors(self.queue, "tx-wb", base, slots, descs)
        elif bool(rs.any()):
            done = descs[rs]
            done["status"] = TXD_STAT_DD
            dev.dma.write_descriptors(self.queue, "tx-wb", base, slots[rs], done)
        dev.set_reg(regs.queue_reg(regs.TDH, self.queue), indices.advance(head, n, count))
        dev.raise_irq(regs.ICR_TXDW | regs.ICR_TXQE)
        self._send(frames, limited)
        return n

    def _send(self, frames: FrameBatch, limited: bool = False) -> None:
        """Put the frames on the wire; ``limited``: the partner's room cut the kick, so it is full now (XOFF)."""
        dev = self.dev
        n = len(frames)
        if n:
            if dev.port.connected:
                dev.count_tx(n, frames.nbytes)
            else:
                dev.counters.tx_no_carrier += n
            dev.port.transmit(frames)
        if limited:
            dev.partner_room()  # the partner sees its ring full and pauses us, so it sends XON when it has room

    def _burst(self) -> int | None:
        """The whole kick of a plain burst compiled (device/fastdev.h, tx_kick): descriptors consumed, or None
        (nothing done: ``run``'s own code decides what the kick is).

        One C call reads the ring registers, fetches TDH..TDT, gathers every
        frame into the scratch, writes DD back where RS asks and moves TDH;
        then, in the order ``run`` keeps, the interrupt (TXDW|TXQE), the
        counters and the wire.  The burst stays in the scratch: a receiver on
        a plain cable places it from there (``Port.transmit_burst``), and only
        a tap or another kind of receiver makes a FrameBatch of it.  This is
        DPDK's and ixy's one-doorbell-per-batch practice carried to the device.
        """
        fast, dev = self.fast, self.dev
        dma = dev.dma
        view = dma.burst_view()
        if fast is None or view is None:
            return None
        n = int(fast.lib.tx_kick(self._c_mem, self._mem_size, self._c_regs, self.queue, self._c_out,
                                 self._out.size, self._c_out_len, self._c_out_total, view))  # fmt: skip
        if n < 0:
            return None
        total = self._out_total
        if dma.iommu is not None:  # the accesses the numpy engine would have translated, all IOTLB hits
            dma.iommu.count_hits(int(total[2]))
        self._kicked, self._in_flight = n, True
        try:
            dev.raise_irq(regs.ICR_TXDW | regs.ICR_TXQE)
            port = dev.port
            if port.wire is not None:
                dev.count_tx(n, int(total[0]))
            else:
                dev.counters.tx_no_carrier += n
            port.transmit_burst(n, self._c_out, self._c_out_len, self._kicked_frames)
        finally:
            self._in_flight = False
        return n

    def _burst_numpy(self) -> int | None:
        """``_burst`` on the numpy path: the plain kick in a few whole-batch operations, or None (nothing done).

        The same plain case as tx_kick (device/fastdev.h), from one read of
        the ring registers: the TDH..TDT window of descriptors looked at in
        place, every command judged by one AND and one OR over the window (all
        EOP, none DEXT or IC), one gather of the buffers (a row gather when
        the frames have one length, as bench/numpy_limit.py does), DD written
        into the window where RS asks, TDH moved; then ``run``'s interrupt and
        send.  Only with no DMA observer and no IOMMU: those see or translate
        each access batch, which the engine below does.  A buffer within the
        longest frame of memory's end also takes the engine (one bound for all).
        """
        dev = self.dev
        dma = dev.dma
        if dma.observers or dma.iommu is not None:
            return None
        tctl, ctrl, tdlen, head, tail, bal, bah = self._regs[self._kick_words].tolist()
        count = tdlen // DESC_SIZE
        if not tctl & regs.TCTL_EN or ctrl & regs.CTRL_RFCE or head == tail or head >= count or tail >= count:
            return None
        memory = dma.memory.data
        size = memory.size
        base = bal | bah << 32
        wraps = tail < head
        if base % DESC_SIZE or base + DESC_SIZE * (count if wraps else tail) > size:
            return None
        first = base // DESC_SIZE
        window = (
            np.concatenate((np.arange(head, count), np.arange(tail))) + first
            if wraps
            else slice(head + first, tail + first)
        )
        words = self._desc_words[window]  # read before DD is written back (a buffer may be the ring itself)
        # One AND and one OR over the window's words: all EOP, none DEXT or IC, and (the common burst) one length
        # when the length bits agree in both; the OR of the addresses bounds them all (any address is at most it).
        every = int(np.bitwise_and.reduce(words[:, 1]))
        some_addr, some = np.bitwise_or.reduce(words, axis=0).tolist()
        if not every >> _CMD_SHIFT & TXD_CMD_EOP or some >> _CMD_SHIFT & (TXD_CMD_DEXT | TXD_CMD_IC):
            return None
        shortest, longest = every >> _LENGTH_SHIFT & 0xFFFF, some >> _LENGTH_SHIFT & 0xFFFF
        length = None
        if shortest != longest:
            length = self._descs["length"][window]
            shortest, longest = int(np.minimum.reduce(length)), int(np.maximum.reduce(length))
        addr = words[:, 0]
        # addr < size <= 2**62: the bound cannot wrap
        if (
            shortest < ETH_MIN_FRAME
            or longest > MAX_TX_PACKET
            or (some_addr + longest > size and int(np.maximum.reduce(addr)) + longest > size)
        ):
            return None
        n = words.shape[0]
        if length is None:
            lengths = self._same_lengths
            if lengths.size != n or int(lengths[0]) != shortest:
                lengths = self._same_lengths = np.full(n, shortest, dtype=np.int64)
                lengths.flags.writeable = False
            data = dma.rows(shortest)[addr.view(np.int64)].ravel()  # addr < size: signed indices index faster
        else:
            lengths = length.astype(np.int64)
            data = fastdev.gather(memory, addr.view(np.int64), lengths)
        status = self._desc_status
        if every >> _CMD_SHIFT & TXD_CMD_RS:
            status[window] = TXD_STAT_DD
        elif some >> _CMD_SHIFT & TXD_CMD_RS:
            cmd = words[:, 1] >> np.uint64(_CMD_SHIFT)
            status[(np.arange(head, head + n)[(cmd & TXD_CMD_RS) != 0]) % count + first] = TXD_STAT_DD
        self._regs[self._word[regs.TDH]] = tail
        dev.raise_irq(regs.ICR_TXDW | regs.ICR_TXQE)
        port = dev.port
        if port.wire is not None:
            dev.count_tx(n, int(data.size))
        else:
            dev.counters.tx_no_carrier += n
        port.transmit(FrameBatch.counted(data, lengths, longest, None if length is not None else longest))
        return n

    def _kicked_frames(self) -> FrameBatch:
        """The last compiled kick's frames, copied out of the scratch (the next kick reuses it)."""
        n = self._kicked
        total, longest, _accesses = self._out_total.tolist()
        return FrameBatch.counted(self._out[:total].copy(), self._out_len[:n].copy(), longest)

    def _burst_window(self, base: int, count: int, head: int, tail: int) -> tuple[int, FrameBatch] | None:
        """The compiled gather (device/fastdev.h) of a window ``run`` chose: (descriptors consumed, frames), or None.

        Only when nothing must see the accesses one batch at a time (no DMA
        observer), an IOMMU (if any) has every page in its IOTLB, and no packet
        is open from the last kick; the C refuses any other burst untouched,
        and the numpy engine runs.
        """
        fast, dma = self.fast, self.dev.dma
        if fast is None or self.partial.fragments or self._in_flight:
            return None
        view = dma.burst_view()
        if view is None:
            return None
        mem = dma.memory.data
        n = int(fast.lib.tx_burst_gather(self._c_mem, mem.size, base, count, head, tail, self._c_out,
                                         self._out.size, self._c_out_len, self._c_out_total, view))  # fmt: skip
        if n < 0:
            return None
        if dma.iommu is not None:  # the accesses the numpy engine would have translated, all IOTLB hits
            dma.iommu.count_hits(int(self._out_total[2]))
        total, longest, _accesses = self._out_total.tolist()
        return n, FrameBatch.counted(self._out[:total].copy(), self._out_len[:n].copy(), longest)

    @property
    def pending(self) -> bool:
        """Descriptors wait between TDH and TDT and the queue is neither stalled on them nor paused (XOFF)."""
        count = self.reg(regs.TDLEN) // DESC_SIZE
        head, tail = self.reg(regs.TDH), self.reg(regs.TDT)
        base = self.reg(regs.TDBAL) | (self.reg(regs.TDBAH) << 32)
        return head != tail and (base, count, head, tail) != self.stalled_at and self.dev.partner_room() != 0

    def _assemble(self, descs: npt.NDArray[np.void]) -> FrameBatch:
        """Turn a run of fetched descriptors into complete frames; carry the open tail.

        Descriptor i belongs to packet ``pkt[i]``; packet 0 continues the
        packet left open by the previous kick.  A packet is dropped whole
        when any fragment is a DEXT descriptor, unreadable, or when it grows
        past MAX_TX_PACKET (then its bytes are no longer even fetched).
        """
        dev, part = self.dev, self.partial
        cmd = descs["cmd"]
        lengths = descs["length"].astype(np.int64)
        if (
            not part.fragments
            and bool(((cmd & (TXD_CMD_EOP | TXD_CMD_DEXT)) == TXD_CMD_EOP).all())
            and int(lengths.min()) > 0
            and int(lengths.max()) <= MAX_TX_PACKET
        ):
            return self._one_per_packet(descs, cmd, lengths)
        eop = (cmd & TXD_CMD_EOP) != 0
        dext = (cmd & TXD_CMD_DEXT) != 0
        complete = int(np.count_nonzero(eop))
        npkt = complete + 1
        pkt = np.cumsum(eop) - eop
        pkt_len = np.bincount(pkt, weights=lengths, minlength=npkt).astype(np.int64)
        pkt_len[0] += part.length
        bad = np.bincount(pkt, weights=dext, minlength=npkt) > 0
        bad[0] |= part.bad
        oversize = pkt_len > MAX_TX_PACKET
        dev.counters.unsupported_desc += int(np.count_nonzero(dext))
        dev.counters.oversize_packets += int(np.count_nonzero(oversize[:complete]))
        bad |= oversize
        # Fetch only the fragments of packets that can still be sent.
        want = ~bad[pkt] & (lengths > 0)
        data, readable = dev.dma.read(self.queue, "tx-data", descs["addr"][want], lengths[want])
        got_pkt, got_len = pkt[want], lengths[want]
        if not bool(readable.all()):
            lost = np.unique(got_pkt[~readable])
            dev.counters.dma_errors += int(lost.size)
            bad[lost] = True
            got_pkt, got_len = got_pkt[readable], got_len[readable]
        in_frame = ~bad[got_pkt] & (got_pkt < complete)
        frame_bytes = data if bool(in_frame.all()) else data[np.repeat(in_frame, got_len)]
        sendable = ~bad[:complete] & (pkt_len[:complete] > 0)
        dev.counters.empty_packets += int(np.count_nonzero(~bad[:complete] & (pkt_len[:complete] == 0)))
        # First descriptor of each packet carries IC/CSO/CSS (legacy format).
        first = np.minimum(np.searchsorted(pkt, np.arange(npkt)), pkt.size - 1)
        first_cmd = cmd[first].astype(np.int64)
        first_cso = descs["cso"][first].astype(np.int64)
        first_css = descs["css"][first].astype(np.int64)
        if part.fragments:
            first_cmd[0], first_cso[0], first_css[0] = part.first_cmd, part.first_cso, part.first_css
            if complete and sendable[0] and part.data:
                frame_bytes = np.concatenate([*part.data, frame_bytes])
        frames = FrameBatch(frame_bytes, pkt_len[:complete][sendable])
        frames = self._offload(
            frames, first_cmd[:complete][sendable], first_cso[:complete][sendable], first_css[:complete][sendable]
        )
        # Carry the packet still open after the last EOP.
        open_desc = pkt == complete
        opened = int(np.count_nonzero(open_desc))
        if complete:
            part.clear()
        if opened:
            if part.fragments == 0:
                part.first_cmd = int(first_cmd[complete])
                part.first_cso = int(first_cso[complete])
                part.first_css = int(first_css[complete])
            part.fragments += opened
            part.length = int(pkt_len[complete])
            part.bad = bool(bad[complete])
            if part.bad:
                part.data.clear()
            else:
                part.data.append(data[np.repeat(got_pkt == complete, got_len)])
        return frames

    def _one_per_packet(
        self, descs: npt.NDArray[np.void], cmd: npt.NDArray[np.uint8], lengths: npt.NDArray[np.int64]
    ) -> FrameBatch:
        """Fast path: every descriptor is a whole packet (the common burst)."""
        data, readable = self.dev.dma.read(self.queue, "tx-data", descs["addr"], lengths)
        if not bool(readable.all()):
            self.dev.counters.dma_errors += int(readable.size - np.count_nonzero(readable))
            lengths = lengths[readable]
            cmd = cmd[readable]
            descs = descs[readable]
        frames = FrameBatch(data, lengths)
        if not bool((cmd & TXD_CMD_IC).any()) and int(lengths.min(initial=ETH_MIN_FRAME)) >= ETH_MIN_FRAME:
            return frames
        return self._offload(frames, cmd.astype(np.int64), descs["cso"].astype(np.int64), descs["css"].astype(np.int64))

    def _offload(
        self,
        frames: FrameBatch,
        first_cmd: npt.NDArray[np.int64],
        cso: npt.NDArray[np.int64],
        css: npt.NDArray[np.int64],
    ) -> FrameBatch:
        """Legacy checksum insertion (IC with CSO/CSS of the first descriptor) and TCTL.PSP padding.

        Both are rare on the fast path, so only the frames that ask pay a Python loop.
        """
        dev = self.dev
        if len(frames) == 0:
            return frames
        wants_ic = (first_cmd & TXD_CMD_IC) != 0
        pad = bool(dev.reg(regs.TCTL) & regs.TCTL_PSP) and int(frames.lengths.min()) < ETH_MIN_FRAME
        if not pad and not bool(wants_ic.any()):
            return frames
        data, lengths = frames.data.copy(), frames.lengths
        offsets = frames.offsets
        for i in np.flatnonzero(wants_ic).tolist():
            at, start, size, base = int(cso[i]), int(css[i]), int(lengths[i]), int(offsets[i])
            if at + 2 > size or start >= size:
                dev.counters.csum_offset_errors += 1
                continue
            # the sum includes whatever software left at CSO (a pseudo-header seed, 3.3.3)
            body = data[base : base + size]
            body[at : at + 2] = np.frombuffer(internet_checksum(body[start:].tobytes()).to_bytes(2, "big"), np.uint8)
        if not pad:
            return FrameBatch(data, lengths)
        # TCTL.PSP: short frames padded with zeros to ETH_MIN_FRAME, every frame moved in one scatter
        padded = np.maximum(lengths, ETH_MIN_FRAME)
        out = np.zeros(int(padded.sum()), dtype=np.uint8)
        fastdev.scatter(out, np.cumsum(padded) - padded, lengths, data)
        return FrameBatch(out, padded)
