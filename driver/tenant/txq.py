"""The user-space transmit queue: ``tx_burst`` as DPDK's rte_eth_tx_burst or ixy's tx_batch.

One call reaps finished descriptors, copies a burst of frames into pinned
buffers, writes the descriptors into the user ring as one numpy assignment
and rings the doorbell once.  When the ring or the pool is full it sends
what fits and returns the count: back-pressure, never a silent drop.  The
queue's ``last_shortfall`` says how many were left and why (ring-full or
pool-empty, driver/tenant/shortfall.py), as a short ``write`` or EAGAIN does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from driver.tenant import pmd
from driver.tenant.mempool import DEFAULT_BUF_SIZE, Mempool
from driver.tenant.shortfall import Reason, Shortfall
from ring import indices
from ring.descriptors import (
    DESC_SIZE,
    TX_DESC,
    TXD_CMD_EOP,
    TXD_CMD_IFCS,
    TXD_CMD_RS,
    TXD_STAT_DD,
    TXD_STAT_REFUSED,
    word_shift,
)
from ring.frames import FrameBatch, buffer_chunks, scatter, scatter_rows
from ring.regs import MAX_RING_SLOTS, RING_LEN_ALIGN
from ring.syscalls import Syscalls

#: The command of every descriptor ``tx_burst`` writes for a one-buffer frame: insert the FCS, report status, end
#: of packet; and the same placed in the descriptor's second word, as ``_one_buffer_each`` writes it.
ONE_BUFFER_CMD = TXD_CMD_IFCS | TXD_CMD_RS | TXD_CMD_EOP
ONE_BUFFER_WORD = np.uint64(ONE_BUFFER_CMD << word_shift(TX_DESC, "cmd"))

#: The status bytes of a window of descriptors the device completed plainly (DD, nothing else): the common reap
#: compares the window's status bytes with a prefix of this, which is cheaper than any numpy reduction.
ALL_DONE = bytes([TXD_STAT_DD]) * MAX_RING_SLOTS

#: e1000: TDLEN must be a multiple of 128 bytes, so a ring holds a multiple of 8 descriptors.
RING_ALIGN_DESCS = RING_LEN_ALIGN // DESC_SIZE


def check_ring_size(size: int) -> None:
    """Refuse ring sizes the hardware cannot express (e1000: TDLEN/RDLEN % 128 == 0, in bits 19:7)."""
    if size < RING_ALIGN_DESCS or size % RING_ALIGN_DESCS or size > MAX_RING_SLOTS:
        raise ValueError(
            f"ring size must be a multiple of {RING_ALIGN_DESCS} between {RING_ALIGN_DESCS} and {MAX_RING_SLOTS}, "
            f"got {size}"
        )


@dataclass
class TxStats:
    frames: int = 0
    bytes: int = 0
    completed: int = 0  # descriptors reaped with DD
    refused: int = 0  # descriptors completed with TXD_STAT_REFUSED by the kernel
    backpressure: int = 0  # bursts that could not take every frame (ring_full + pool_empty)
    ring_full: int = 0  # ... because no descriptor was free
    pool_empty: int = 0  # ... because no buffer was free


class TxQueue:
    """One transmit ring in the tenant's memory, with its buffer pool."""

    def __init__(
        self,
        sys: Syscalls,
        nic: str,
        queue: int = 0,
        size: int = 512,
        buf_size: int = DEFAULT_BUF_SIZE,
        pool_size: int | None = None,
    ) -> None:
        check_ring_size(size)
        self.size = size
        self.region = sys.alloc_dma(size * DESC_SIZE)
        self.ring = self.region.view.view(TX_DESC)
        self.pool = Mempool(sys, pool_size or size, buf_size)
        self.handle = sys.open_tx_queue(nic, queue, self.region, size)
        self.doorbell = self.handle.doorbell
        self.tail = 0
        self.clean = 0
        self.slot_buf = np.full(size, -1, dtype=np.int64)  # the pool buffer of each slot in flight, or -1
        self.stats = TxStats()
        self.last_shortfall: Shortfall | None = None  # what the last tx_burst left, and why (None: it took all)
        self.words = self.ring.view(np.uint64).reshape(size, 2)  # (address, length|cmd|status) per slot
        self.status = self.ring["status"]
        self.fast = pmd.enabled()
        if self.fast is not None:  # pointers into arrays that live as long as the queue
            f, pool = self.fast, self.pool
            self._refused = np.zeros(1, dtype=np.int64)
            self._c = (f.ptr(self.region.view), f.i64(self.slot_buf), f.i64(pool.stack), f.i64(pool.top))
            self._c_pool = (pool.count, f.ptr(pool.memory), pool.buf_size, pool.region.bus)
            self._c_refused = f.i64(self._refused)
            self._out = np.zeros(f.lib.PMD_TX_OUT, dtype=np.int64)  # what pmd_tx_post did (pmd.h)
            self._c_out = f.i64(self._out)  # read through the pointer: Python ints, no numpy scalars
            #: the last batch's arrays and C pointers to them: a caller sending the same batch again (a bench, a
            #: replay) costs no new pointers; the arrays are held here, so the pointers stay valid
            self._c_batch: tuple[object, object, object, object] = (None, None, None, None)

    @property
    def in_flight(self) -> int:
        """Descriptors handed to the device and not yet reaped."""
        return indices.used(self.clean, self.tail, self.size)

    def reap(self) -> int:
        """Take back every finished descriptor from the head of the ring; return how many."""
        pending = self.in_flight
        if pending == 0:
            return 0
        if self.fast is not None:
            ring, slot_buf, stack, top = self._c
            k = int(self.fast.lib.pmd_tx_reap(ring, self.size, self.clean, pending, slot_buf, stack, top,
                                              self.pool.count, self._c_refused))  # fmt: skip
            if k >= 0:  # -1: a double free, which the numpy code below reports
                self.stats.completed += k
                self.stats.refused += int(self._refused[0])
                self.clean = indices.advance(self.clean, k, self.size)
                return k
        clean = self.clean
        if clean + pending <= self.size:  # no wrap: read the status bytes in place
            status = self.status[clean : clean + pending]
        else:
            status = indices.read_window(self.status, clean, pending)
        if status.tobytes() == ALL_DONE[:pending]:  # the common reap: all done, none refused (a byte compare)
            k = pending
        else:
            done = (status & TXD_STAT_DD) != 0
            k = pending if bool(done.all()) else int(np.argmin(done))
            if k == 0:
                return 0
            self.stats.refused += int(np.count_nonzero(status[:k] & TXD_STAT_REFUSED))
        self.stats.completed += k
        if clean + k <= self.size:
            bufs = self.slot_buf[clean : clean + k]
            # a slot filled by hand (tests, attacks) holds no pool buffer
            self.pool.free(bufs if np.minimum.reduce(bufs) >= 0 else bufs[bufs >= 0])
            bufs[:] = -1
        else:
            bufs = indices.read_window(self.slot_buf, clean, k)
            self.pool.free(bufs[bufs >= 0])
            indices.write_window(self.slot_buf, clean, np.full(k, -1, dtype=np.int64))
        self.clean = indices.advance(clean, k, self.size)
        return k

    def tx_burst(self, batch: FrameBatch) -> int:
        """Queue as many frames of ``batch`` as fit, ring the doorbell once, return the count.

        Fewer than ``len(batch)``: the rest were not taken (the caller still
        has them), and ``last_shortfall`` says how many and why.
        """
        self.last_shortfall = None
        lengths = batch.lengths
        if self.fast is not None and lengths.size:
            # the common burst, in one call of pmd.c: reap, then every frame into one buffer each
            data = batch.data
            c_data, c_lengths, p_data, p_lengths = self._c_batch
            if data is not c_data or lengths is not c_lengths:
                p_data, p_lengths = self._pointers(data, lengths)
            ring, slot_buf, stack, top = self._c
            count, memory, buf_size, bus = self._c_pool
            out = self._c_out
            posted = self.fast.lib.pmd_tx_post(
                ring, self.size, self.clean, self.tail, lengths.size, p_data, data.size, p_lengths, stack, top, count,
                memory, buf_size, bus, ONE_BUFFER_CMD, slot_buf, out,
            )  # fmt: skip
            if posted != -1:  # -1: nothing done, the numpy reap reports what pmd.c refused
                stats = self.stats
                stats.completed += out[0]  # out: PMD_TX_REAPED, _REFUSED, _CLEAN, _TAIL, _BYTES
                stats.refused += out[1]
                self.clean = out[2]
                if posted >= 0:
                    self.tail = out[3]
                    self.doorbell.write32(self.handle.tail_offset, self.tail)
                    stats.frames += posted
                    stats.bytes += out[4]
                    return posted
                # -2: reaped, not posted (back-pressure, a frame needing two buffers...): the numpy code decides
        self.reap()
        if lengths.size == 0:
            return 0
        same = batch.known_same
        if same is not None:  # a batch built from a matrix of frames: no pass over the lengths
            shortest = longest = same
        else:
            shortest, longest = int(np.minimum.reduce(lengths)), int(np.maximum.reduce(lengths))
        if shortest <= 0:
            raise ValueError("cannot send an empty frame")
        buf = self.pool.buf_size
        if longest <= buf:
            return self._one_buffer_each(batch, lengths, longest if shortest == longest else None)
        per_frame = -(-lengths // buf)
        room = min(indices.free(self.clean, self.tail, self.size), self.pool.available)
        ends = np.cumsum(per_frame)
        n = int(np.searchsorted(ends, room, side="right"))
        if n < len(batch):
            self._short(len(batch), n)
        if n == 0:
            return 0
        ndesc = int(ends[n - 1])
        bufs = self.pool.alloc(ndesc)
        if ndesc == n:
            chunk = lengths[:n]
            last = np.ones(n, dtype=bool)
        else:
            chunk, last, _frame_of = buffer_chunks(lengths[:n], per_frame[:n], buf)
        nbytes = int(lengths[:n].sum())
        scatter(self.pool.memory, self.pool.offsets(bufs), chunk, batch.data[:nbytes])
        descs = np.zeros(ndesc, dtype=TX_DESC)
        descs["addr"] = self.pool.bus_addr[bufs]
        descs["length"] = chunk
        descs["cmd"] = TXD_CMD_IFCS | TXD_CMD_RS | np.where(last, TXD_CMD_EOP, 0)
        indices.write_window(self.ring, self.tail, descs)
        indices.write_window(self.slot_buf, self.tail, bufs)
        self.tail = indices.advance(self.tail, ndesc, self.size)
        self.doorbell.write32(self.handle.tail_offset, self.tail)
        self.stats.frames += n
        self.stats.bytes += nbytes
        return n

    def _short(self, asked: int, done: int) -> None:
        """Record a burst that took ``done`` of ``asked`` frames: the ring, or else the pool, ran out."""
        ring_free = indices.free(self.clean, self.tail, self.size)
        reason = Reason.RING_FULL if ring_free <= self.pool.available else Reason.POOL_EMPTY
        self.last_shortfall = Shortfall(asked, done, reason)
        self.stats.backpressure += 1
        if reason is Reason.RING_FULL:
            self.stats.ring_full += 1
        else:
            self.stats.pool_empty += 1

    def _pointers(self, data: npt.NDArray[np.uint8], lengths: npt.NDArray[np.int64]) -> tuple[Any, Any]:
        """C pointers to a batch's arrays for pmd.c, kept with the arrays for the next burst of the same batch.

        The arrays are kept too, so their memory stays where the pointers
        point; a batch pmd.c cannot read in place (not contiguous) gets NULL
        pointers, which pmd.c refuses (the numpy code posts it).
        """
        f = self.fast
        assert f is not None
        if data.flags.c_contiguous and lengths.flags.c_contiguous and lengths.dtype == np.int64:
            p_data, p_lengths = f.ptr(data), f.i64(lengths)
        else:
            p_data, p_lengths = f.ffi.NULL, f.ffi.NULL
        self._c_batch = (data, lengths, p_data, p_lengths)
        return p_data, p_lengths

    def _one_buffer_each(self, batch: FrameBatch, lengths: npt.NDArray[np.int64], same: int | None) -> int:
        """The common burst: every frame fits one buffer, so one descriptor per frame, written as whole words.

        ``same``: the length of every frame when all are equal (the frames
        then move as one row scatter and the descriptors' second words are
        one value), else None.
        """
        room = min(indices.free(self.clean, self.tail, self.size), self.pool.available)
        n = min(lengths.size, room)
        if n < lengths.size:
            self._short(lengths.size, n)
            if n == 0:
                return 0
            lengths = lengths[:n]
            nbytes = int(lengths.sum())
            data = batch.data[:nbytes]
        else:
            nbytes, data = batch.data.size, batch.data
        pool = self.pool
        bufs = pool.take(n)  # a view of the pool's stack: used up before anything is freed again
        scatter_rows(pool.rows, bufs, lengths, data, same)
        tail = self.tail
        if tail + n <= self.size:
            words = self.words[tail : tail + n]
            words[:, 0] = pool.bus_addr[bufs]
            words[:, 1] = ONE_BUFFER_WORD | (np.uint64(same) if same is not None else lengths.astype(np.uint64))
            self.slot_buf[tail : tail + n] = bufs
        else:
            descs = np.zeros(n, dtype=TX_DESC)
            descs["addr"] = pool.bus_addr[bufs]
            descs["length"] = lengths
            descs["cmd"] = ONE_BUFFER_CMD
            indices.write_window(self.ring, tail, descs)
            indices.write_window(self.slot_buf, tail, bufs)
        self.tail = indices.advance(tail, n, self.size)
        self.doorbell.write32(self.handle.tail_offset, self.tail)
        self.stats.frames += n
        self.stats.bytes += nbytes
        return n
