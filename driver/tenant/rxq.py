"""The user-space receive queue: ``rx_burst`` as DPDK's rte_eth_rx_burst or ixy's rx_batch.

Each ring slot keeps its own buffer (slot ``i`` uses buffer ``i``), as the
e1000 legacy layout invites.  A burst finds the run of done descriptors at
the head of the ring, stops at the last complete frame (EOP), copies the
frames out as one gather, re-arms the slots and rings the doorbell once.
Fewer frames than asked is never an error: ``last_shortfall`` says whether
the ring had no more (ring-empty, EAGAIN) or more are ready (more-ready).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from driver.tenant import pmd
from driver.tenant.mempool import Mempool
from driver.tenant.shortfall import Reason, Shortfall
from driver.tenant.txq import check_ring_size
from ring import indices
from ring.descriptors import DESC_SIZE, RX_DESC, RXD_ERR_REFUSED, RXD_STAT_DD, RXD_STAT_EOP, word_shift
from ring.frames import FrameBatch, gather
from ring.syscalls import DEVICE_WRITE, Syscalls

#: Bytes of one arena the compiled ``rx_burst`` copies frames into (a larger burst takes the numpy code).
RX_SCRATCH = 1 << 20

#: Where length, status and errors sit in an RX descriptor's second 64-bit word (3.2.3), and the bits of that
#: word that make it "a whole frame in one buffer, done, no error": the run ``rx_burst`` takes in one gather.
RX_LENGTH_SHIFT, RX_STATUS_SHIFT = word_shift(RX_DESC, "length"), word_shift(RX_DESC, "status")
RX_SIMPLE = (RXD_STAT_DD | RXD_STAT_EOP) << RX_STATUS_SHIFT
RX_SIMPLE_MASK = np.uint64(0xFFFF << RX_LENGTH_SHIFT | RX_SIMPLE | 0xFF << word_shift(RX_DESC, "errors"))


@dataclass
class RxStats:
    frames: int = 0
    bytes: int = 0
    errors: int = 0  # frames the device completed with an error bit
    refused: int = 0  # descriptors the kernel completed back without DMA


class RxQueue:
    """One receive ring in the tenant's memory; all slots but one are posted."""

    def __init__(self, sys: Syscalls, nic: str, queue: int = 0, size: int = 512) -> None:
        check_ring_size(size)
        self.size = size
        self.region = sys.alloc_dma(size * DESC_SIZE)
        self.ring = self.region.view.view(RX_DESC)
        self.handle = sys.open_rx_queue(nic, queue, self.region, size)
        self.pool = Mempool(sys, size, self.handle.buffer_size, DEVICE_WRITE)
        self.doorbell = self.handle.doorbell
        self.ring["addr"] = self.pool.bus_addr
        self.words = self.ring.view(np.uint64).reshape(size, 2)  # (address, length|csum|status|errors|special)
        self.status, self.length, self.errors = self.ring["status"], self.ring["length"], self.ring["errors"]
        self.offsets = self.pool.offsets(np.arange(size, dtype=np.int64))  # slot i's buffer is buffer i
        self.fresh = np.zeros_like(self.words)  # every slot armed: its buffer's address, the rest zero
        self.fresh[:, 0] = self.pool.bus_addr  # (re-arming slots is one copy of rows of this)
        self.fast = pmd.enabled()
        self._arena_at: tuple[int, int] = (0, 0)  # bytes and lengths of the compiled path's arena used
        if self.fast is not None:
            f = self.fast
            self._res = np.zeros(f.lib.PMD_RX_OUT, dtype=np.int64)  # what pmd_rx_burst did (pmd.h)
            self._c_res = f.i64(self._res)  # read through the pointer: Python ints, no numpy scalars
            self._c = (f.ptr(self.region.view), f.ptr(self.pool.memory), self.pool.buf_size, self.pool.region.bus)
            self._new_arena()
        self.next = 0
        self.tail = size - 1
        self.stats = RxStats()
        self.last_shortfall: Shortfall | None = None  # why the last rx_burst returned fewer than asked
        self._last_note: Shortfall | None = None  # the last Shortfall built (immutable: reused when equal)
        #: the last same-length run's (second word, length, the word repeated that many times): the next burst is
        #: most likely as long, which one byte compare confirms
        self._last_run: tuple[int, int, bytes] = (0, 0, b"")
        self.doorbell.write32(self.handle.tail_offset, self.tail)

    def rx_burst(self, max_frames: int = 1 << 30) -> FrameBatch:
        """Return up to ``max_frames`` complete frames and give their slots back to the device.

        Fewer than ``max_frames``: ``last_shortfall`` says why.
        """
        m = -1  # frames the compiled path took (-1: it did not run, or left the burst to the numpy code)
        if self.fast is not None and max_frames > 0:
            ring, pool, buf_size, bus = self._c
            res = self._c_res
            for _ in range(2):  # a second time in a fresh arena when this one is full
                at, counted = self._arena_at
                m = self.fast.lib.pmd_rx_burst(ring, self.size, self.next, self.tail, max_frames, pool, buf_size, bus,
                                               self._c_out + at, self._out.size - at, self._c_len + counted,
                                               self._out_len.size - counted, res)  # fmt: skip
                if m != -3 or (at == 0 and counted == 0):
                    break
                self._next_arena()
            if m > 0:  # res: PMD_RX_BYTES, PMD_RX_LONGEST, PMD_RX_NEXT, PMD_RX_TAIL
                total = res[0]
                batch = FrameBatch.counted(self._out[at : at + total], self._out_len[counted : counted + m], res[1])
                self._arena_at = (at + total, counted + m)
                self.next, self.tail = res[2], res[3]
                self.stats.frames += m
                self.stats.bytes += total
                self.doorbell.write32(self.handle.tail_offset, self.tail)
                if m < max_frames:  # the doorbell write may have brought more (the ring is not empty: m were posted)
                    self._shortfall(max_frames, m, bool(self.status[self.next] & RXD_STAT_DD))
                else:
                    self.last_shortfall = None
                return batch
        posted = indices.used(self.next, self.tail, self.size)  # the same after the burst: both indices move by m
        if m == 0 or posted == 0 or max_frames <= 0:
            batch = FrameBatch.none()
        else:
            run = self._same_length_run(posted, max_frames)
            batch = run if run is not None else self._receive(posted, max_frames)
        self._shortfall(max_frames, batch.lengths.size, posted > 0 and bool(self.status[self.next] & RXD_STAT_DD))
        return batch

    def _next_arena(self) -> None:
        """The arena is full: start it over when no batch views it any more (nothing but this queue holds it, as a
        DPDK mbuf goes back to its pool when freed), else take a fresh one.  Starting over spares the allocation,
        the two pointer conversions (about 4.5 us together) and the next bursts' copies into memory not in cache."""
        if (sys.getrefcount(self._out), sys.getrefcount(self._out_len)) == self._arena_refs:
            self._arena_at = (0, 0)
            return
        self._new_arena()

    def _new_arena(self) -> None:
        """Fresh memory for the compiled path to copy frames into: each burst's FrameBatch is a view of the next
        unused part of it, so nothing is copied twice; a full arena is left to the batches that still view it.
        (DPDK hands out mbufs from a pool for the same reason: the receive copy is the only copy.)"""
        assert self.fast is not None
        self._out = np.empty(min(self.size * self.pool.buf_size, RX_SCRATCH), dtype=np.uint8)
        self._out_len = np.empty(self.size * 8, dtype=np.int64)
        self._c_out, self._c_len = self.fast.ptr(self._out), self.fast.i64(self._out_len)
        self._arena_at = (0, 0)
        #: the arrays' reference counts while nothing but this queue holds them, counted the way ``_next_arena``
        #: counts (an attribute read passed as the argument), so no interpreter's counting is assumed
        self._arena_refs = (sys.getrefcount(self._out), sys.getrefcount(self._out_len))

    def _shortfall(self, asked: int, got: int, more: bool) -> None:
        """Note why a burst returned fewer than asked (or None); an equal note is kept, not rebuilt."""
        if got >= asked:
            self.last_shortfall = None
            return
        reason = Reason.MORE_READY if more else Reason.RING_EMPTY
        last = self._last_note
        if last is None or last.asked != asked or last.done != got or last.reason is not reason:
            last = self._last_note = Shortfall(asked, got, reason)
        self.last_shortfall = last

    def ready(self) -> int:
        """Descriptors done and waiting at the head of the ring (DPDK's rte_eth_rx_queue_count): its occupancy."""
        posted = indices.used(self.next, self.tail, self.size)
        if posted == 0:
            return 0
        done = (indices.read_window(self.status, self.next, posted) & RXD_STAT_DD) != 0
        return posted if bool(done.all()) else int(np.argmin(done))

    def _receive(self, posted: int, max_frames: int) -> FrameBatch:
        """Every other burst: frames of mixed lengths, spanning descriptors, with errors, refused, or wrapping."""
        start = self.next
        if start + posted <= self.size:  # no wrap: read the status bytes in place
            status = self.status[start : start + posted]
        else:
            status = indices.read_window(self.status, start, posted)
        done = (status & RXD_STAT_DD) != 0
        k = posted if bool(done.all()) else int(np.argmin(done))
        if k == 0:
            return FrameBatch.none()
        if start + k <= self.size and bool((status[:k] & RXD_STAT_EOP).all()):
            lengths = self.length[start : start + k].astype(np.int64)
            if not bool(self.errors[start : start + k].any()):
                # one descriptor per frame, no errors, no wrap, mixed lengths
                m = min(k, max_frames)
                batch = FrameBatch(gather(self.pool.memory, self.offsets[start : start + m], lengths[:m]), lengths[:m])
                self.words[start : start + m] = self.fresh[start : start + m]
                return self._give_back(m, batch, len(batch), batch.nbytes)
        descs = indices.read_window(self.ring, start, k)
        lengths = descs["length"].astype(np.int64)
        if bool((descs["status"] & RXD_STAT_EOP).all()) and not bool(descs["errors"].any()):
            m = min(k, max_frames)
            slots = indices.slots(start, m, self.size)
            batch = FrameBatch(gather(self.pool.memory, self.pool.offsets(slots), lengths[:m]), lengths[:m])
        else:
            m, slots, batch = self._complete_frames(descs, lengths, k, max_frames)
            if m == 0:
                return FrameBatch.none()
        indices.write_window(self.words, start, self.fresh[slots])
        return self._give_back(m, batch, len(batch), batch.nbytes)

    def _same_length_run(self, posted: int, max_frames: int) -> FrameBatch | None:
        """The common burst, in a handful of whole-batch numpy operations; None: the general code decides.

        The run of done descriptors from ``start`` (up to the end of the ring:
        a run that wraps takes the general code) that each hold a whole frame
        (DD and EOP, no error bit) of the same length, found with one compare
        of the descriptors' second words; when it is the whole run of done
        descriptors, the frames are one row gather of the buffers (slot i owns
        buffer i) and the slots are re-armed with one copy.
        """
        start = self.next
        end = min(posted, self.size - start)  # the posted slots up to the end of the ring
        words = self.words[start : start + end, 1]
        length = (int(words[0]) >> RX_LENGTH_SHIFT) & 0xFFFF
        if length == 0 or length > self.pool.buf_size:
            return None
        plain = RX_SIMPLE | length << RX_LENGTH_SHIFT  # the second word of a plain frame of this length
        word, k, run = self._last_run
        # As long as the last run: its words exactly plain (csum and special 0: within the mask), the next not done
        if not (
            word == plain
            and k < end
            and words[:k].tobytes() == run
            and not (int(words[k]) >> RX_STATUS_SHIFT) & RXD_STAT_DD
        ):
            simple = (words & RX_SIMPLE_MASK) == np.uint64(plain)
            k = int(simple.argmin())
            if simple[k]:
                k = end
                if end < posted and self.status[0] & RXD_STAT_DD:
                    return None  # the done run wraps past the end of the ring
            elif (int(words[k]) >> RX_STATUS_SHIFT) & RXD_STAT_DD or k == 0:
                return None  # the done run goes on with another length, several buffers or an error (or is empty)
            if k < end and (word, self._last_run[1]) != (plain, k):
                self._last_run = (plain, k, np.full(k, plain, dtype=np.uint64).tobytes())
        m = min(k, max_frames)
        lengths = np.empty(m, dtype=np.int64)  # (two C calls: np.full is numpy's Python around the same two)
        lengths.fill(length)
        batch = FrameBatch.counted(self.pool.rows[start : start + m, :length].flatten(), lengths, length, length)
        self.words[start : start + m] = self.fresh[start : start + m]
        return self._give_back(m, batch, m, m * length)

    def _give_back(self, m: int, batch: FrameBatch, frames: int, nbytes: int) -> FrameBatch:
        """The ``m`` slots from ``next`` are re-armed: count the frames, move the indices, ring the doorbell once."""
        self.stats.frames += frames
        self.stats.bytes += nbytes
        self.next = indices.advance(self.next, m, self.size)
        self.tail = indices.advance(self.tail, m, self.size)
        self.doorbell.write32(self.handle.tail_offset, self.tail)
        return batch

    def _complete_frames(
        self, descs: npt.NDArray[np.void], lengths: npt.NDArray[np.int64], k: int, max_frames: int
    ) -> tuple[int, npt.NDArray[np.int64], FrameBatch]:
        """General path: frames spanning descriptors, error frames, kernel-refused slots.

        Returns how many descriptors to consume (through the last complete
        frame, plus refused slots right after it), their slots, and the frames.
        """
        status, errors = descs["status"], descs["errors"]
        refused = ((errors & RXD_ERR_REFUSED) != 0) & ((status & RXD_STAT_EOP) == 0) & (lengths == 0)
        eop = ((status & RXD_STAT_EOP) != 0) & ~refused
        ends = np.flatnonzero(eop)[:max_frames]
        m = int(ends[-1]) + 1 if ends.size else 0
        if m < k and ends.size < max_frames:
            tail_refused = refused[m:]
            m += k - m if bool(tail_refused.all()) else int(np.argmin(tail_refused))
        slots = indices.slots(self.next, m, self.size)
        refused, eop, lengths, errors = refused[:m], eop[:m], lengths[:m], errors[:m]
        data_slots = ~refused
        frame_id = (np.cumsum(eop) - eop)[data_slots]  # frame each data descriptor belongs to
        frames = int(np.count_nonzero(eop))
        frame_len = np.bincount(frame_id, weights=lengths[data_slots], minlength=frames).astype(np.int64)
        bad = np.bincount(frame_id, weights=errors[data_slots] != 0, minlength=frames) > 0
        data = gather(self.pool.memory, self.pool.offsets(slots[data_slots]), lengths[data_slots])
        batch = FrameBatch(data, frame_len[:frames])
        if bool(bad.any()):
            keep = ~bad[:frames]
            batch = FrameBatch(data[np.repeat(keep, batch.lengths)], batch.lengths[keep])
            self.stats.errors += int(np.count_nonzero(bad))
        self.stats.refused += int(np.count_nonzero(refused))
        return m, slots, batch
