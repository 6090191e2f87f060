"""The receive engine: DMA-write arriving frames into the buffers between RDH and RDT.

8254x manual 3.2: a frame larger than one buffer (RCTL.BSIZE) spans several
descriptors, EOP on the last; the device writes length and status (DD, EOP)
back and advances RDH.  RDH == RDT means the device owns no buffer: the frame
is missed and counted in MPC.  A frame is placed only if all its
descriptors are available, so no half frame is ever left in the ring.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from device import fastdev
from ring import indices, regs
from ring.descriptors import (
    DESC_SIZE,
    ETH_FCS_LEN,
    ETH_MAX_FRAME,
    RX_DESC,
    RXD_ERR_RXE,
    RXD_STAT_DD,
    RXD_STAT_EOP,
    word_shift,
)
from ring.frames import FrameBatch, buffer_chunks, rows_at
from ring.frames import scatter as numpy_scatter

if TYPE_CHECKING:
    from device.e1000 import E1000

#: Without RCTL.LPE the 8254x refuses frames longer than 1522 bytes with FCS, the size of a
#: full VLAN-tagged frame (counted in ROC, 13.7.36); 1518 here, where frames carry no FCS.
MAX_STD_FRAME = ETH_MAX_FRAME + 4

#: The second word of a plainly received descriptor (DD|EOP, checksum, errors and special 0) without its length.
_DONE_WORD = (RXD_STAT_DD | RXD_STAT_EOP) << word_shift(RX_DESC, "status")
_LENGTH_SHIFT = word_shift(RX_DESC, "length")


def with_fcs(frames: FrameBatch) -> FrameBatch:
    """Append the Ethernet FCS (CRC-32, little endian on the wire) to every frame."""
    return FrameBatch.from_frames(f + zlib.crc32(f).to_bytes(4, "little") for f in frames)


class RxEngine:
    """Receive side of one queue of an E1000."""

    def __init__(self, dev: E1000, queue: int) -> None:
        self.dev = dev
        self.queue = queue
        self._regs = dev.regs  # the register file, read through this queue's word index of each ring register
        self._word = {base: regs.queue_reg(base, queue) >> 2 for base in regs.RX_RING_REGS}
        self.fast = fastdev.enabled()
        memory = dev.dma.memory.data
        #: the register words the plain arrival reads, in one fancy index: RCTL, STATUS, RDLEN, RDH, RDT, RDBAL, RDBAH
        self._arrive_words = np.array(
            [regs.RCTL >> 2, regs.STATUS >> 2] + [self._word[r] for r in (regs.RDLEN, regs.RDH, regs.RDT, regs.RDBAL,
                                                                         regs.RDBAH)], dtype=np.intp)  # fmt: skip
        #: memory as receive descriptors (RDBAL ignores bits 3:0, so every ring starts on one of these)
        self._descs = memory[: memory.size - memory.size % DESC_SIZE].view(RX_DESC)
        #: the same as rows of two 64-bit words: the plain arrival fetches the addresses and writes the
        #: descriptors back as these (a structured copy moves field by field)
        self._desc_words = self._descs.view(np.uint64).reshape(-1, 2)
        if self.fast is not None:
            # where the burst path fetches descriptors, and notes each buffer's physical address
            self._snap = np.zeros(65536 * (DESC_SIZE + 8), dtype=np.uint8)
            self._c_snap = self.fast.ptr(self._snap)
            #: bytes the last compiled placement wrote, and the accesses the numpy engine would have translated
            self._placed = np.zeros(2, dtype=np.int64)
            self._c_placed = self.fast.i64(self._placed)
            self._c_mem = self.fast.ptr(dev.dma.memory.data)
            self._mem_size = dev.dma.memory.data.size
            self._c_regs = fastdev.u32(self.fast, dev.regs)

    def reg(self, offset: int) -> int:
        """This queue's copy of a queue-0 ring register (RDBAL, RDLEN, RDH, RDT ...)."""
        return int(self._regs[self._word[offset]])

    def free_descriptors(self) -> int:
        """Receive descriptors the device owns now (RDH to RDT): how many one-buffer frames it can place."""
        count = self.reg(regs.RDLEN) // DESC_SIZE
        head, tail = self.reg(regs.RDH), self.reg(regs.RDT)
        if count == 0 or head >= count or tail >= count:
            return 0
        return indices.used(head, tail, count)

    def place(self, frames: FrameBatch) -> int:
        """Write as many frames as the posted buffers hold; count the rest in MPC."""
        dev = self.dev
        arrived = len(frames)
        if arrived == 0:
            return 0
        count = self.reg(regs.RDLEN) // DESC_SIZE
        head, tail = self.reg(regs.RDH), self.reg(regs.RDT)
        if count and (head >= count or tail >= count):
            dev.counters.bad_ring_index += 1
            dev.count_stat(regs.MPC, arrived)
            return 0
        rctl = dev.reg(regs.RCTL)
        strip_crc = bool(rctl & regs.RCTL_SECRC)
        if not strip_crc:
            frames = with_fcs(frames)
        bsize = self._buffer_bytes(rctl)
        avail = indices.used(head, tail, count) if count else 0
        fits_one = frames.longest <= bsize
        if fits_one:  # the common case: one buffer per frame
            n = min(arrived, avail)
        else:
            per_frame = -(-frames.lengths // bsize)
            ends = np.cumsum(per_frame)
            n = int(np.searchsorted(ends, avail, side="right"))
        if n < arrived:
            dev.count_stat(regs.MPC, arrived - n)
            dev.raise_irq(regs.ICR_RXO)
        if n == 0:
            return 0
        ndesc = n if fits_one else int(ends[n - 1])
        base = self.reg(regs.RDBAL) | (self.reg(regs.RDBAH) << 32)
        if fits_one and self._burst(frames, base, count, head, n):
            dev.set_reg(regs.queue_reg(regs.RDH, self.queue), indices.advance(head, n, count))
            octets = int(self._placed[0])
            dev.count_rx(n, octets + (ETH_FCS_LEN * n if strip_crc else 0))
            dev.raise_irq(regs.ICR_RXT0)
            return n
        slots = indices.slots(head, ndesc, count)
        descs, fetched = dev.dma.read_descriptors(self.queue, "rx-desc", base, slots, RX_DESC)
        if not bool(fetched.all()):
            dev.counters.desc_fetch_errors += 1
            dev.count_stat(regs.MPC, n)
            return 0
        lengths = frames.lengths[:n]
        last: npt.NDArray[np.bool_] | None = None  # None: every descriptor ends its frame
        if fits_one:
            chunk = lengths
            frame_of = np.arange(n)
        else:
            chunk, last, frame_of = buffer_chunks(lengths, per_frame[:n], bsize)
        nbytes = int(lengths.sum())
        written = dev.dma.write(self.queue, "rx-data", descs["addr"], chunk, frames.data[:nbytes])
        failed = np.zeros(n, dtype=bool)
        if not bool(written.all()):
            failed[frame_of[~written]] = True
            dev.counters.dma_errors += int(np.count_nonzero(failed))
        descs["length"] = chunk
        descs["csum"] = 0
        descs["status"] = RXD_STAT_DD | RXD_STAT_EOP if last is None else RXD_STAT_DD | np.where(last, RXD_STAT_EOP, 0)
        descs["errors"] = np.where(failed[frame_of], RXD_ERR_RXE, 0) if bool(failed.any()) else 0
        descs["special"] = 0
        dev.dma.write_descriptors(self.queue, "rx-wb", base, slots, descs)
        dev.set_reg(regs.queue_reg(regs.RDH, self.queue), indices.advance(head, ndesc, count))
        good = lengths[~failed]
        dev.count_rx(int(good.size), int(good.sum()) + (ETH_FCS_LEN * int(good.size) if strip_crc else 0))
        dev.raise_irq(regs.ICR_RXT0)
        return n

    def arrive_batch(self, frames: FrameBatch) -> bool:
        """``arrive`` on the numpy path: the plain arrival of a burst in a few whole-batch operations; False:
        nothing done, ``E1000._receive_now`` and ``place`` decide.

        The same plain case as rx_arrive (device/fastdev.h), checked from one
        read of the ring registers; then one fetch of the window's buffer
        addresses, one scatter (a row scatter when the frames have one
        length, as bench/numpy_limit.py does), one write-back of the whole
        descriptors (address as fetched, length, DD|EOP) and one RDH move.
        Only with no DMA observer and no IOMMU: those see or translate each
        access batch, which the engine below does.  A buffer within the
        longest frame of memory's end also takes the engine (one bound for all).
        """
        dev = self.dev
        dma = dev.dma
        if dma.observers or dma.iommu is not None:
            return False
        rctl, status, rdlen, head, tail, bal, bah = self._regs[self._arrive_words].tolist()
        if not rctl & regs.RCTL_EN or not status & regs.STATUS_LU or not rctl & regs.RCTL_SECRC:
            return False
        mac = dev.unicast_address()
        lengths, data = frames.lengths, frames.data
        n = lengths.size
        count = rdlen // DESC_SIZE
        if mac is None or n == 0 or count == 0 or head >= count or tail >= count or (tail - head) % count < n:
            return False
        same = frames.known_same
        if same is not None:  # the sender knew every frame is this long: no pass over the lengths
            shortest = longest = same
        else:
            known = frames.known_longest
            longest = int(np.maximum.reduce(lengths)) if known is None else known
            shortest = int(np.minimum.reduce(lengths))
        if shortest < 6 or longest > self._buffer_bytes(rctl) or (not rctl & regs.RCTL_LPE and longest > MAX_STD_FRAME):
            return False
        if shortest == longest:  # every destination compared as one run of bytes (a copy of the 6-byte columns)
            if data.reshape(n, shortest)[:, :6].tobytes() != mac.tobytes() * n:
                return False
        elif not np.logical_and.reduce(rows_at(data, np.cumsum(lengths) - lengths, 6) == mac, axis=None):
            return False
        memory = dma.memory.data
        size = memory.size
        base = bal | bah << 32
        wraps = head + n > count
        if base % DESC_SIZE or base + DESC_SIZE * (count if wraps else head + n) > size:
            return False
        first = base // DESC_SIZE
        window = (head + np.arange(n)) % count + first if wraps else slice(first + head, first + head + n)
        ring = self._desc_words
        addrs = ring[window, 0]  # the fetch: copied before any byte is written (a buffer may be the ring)
        if not wraps:
            addrs = addrs.copy()
        if int(np.maximum.reduce(addrs)) + longest > size:  # addr < size <= 2**62: the bound cannot wrap
            return False
        done: np.uint64 | npt.NDArray[np.uint64]
        if shortest == longest:
            dma.rows(shortest)[addrs.view(np.int64)] = data.reshape(n, shortest)  # addr < size: signed index faster
            done = np.uint64(_DONE_WORD | shortest << _LENGTH_SHIFT)
        else:
            numpy_scatter(memory, addrs.astype(np.int64), lengths, data)
            done = lengths.astype(np.uint64) << np.uint64(_LENGTH_SHIFT) | np.uint64(_DONE_WORD)
        # the write-back: the address as fetched, then length with DD|EOP (csum, errors and special 0)
        ring[window, 0] = addrs
        ring[window, 1] = done
        self._regs[self._word[regs.RDH]] = (head + n) % count
        dev.count_rx(n, int(data.size) + ETH_FCS_LEN * n)
        dev.raise_irq(regs.ICR_RXT0)
        return True

    @staticmethod
    def _buffer_bytes(rctl: int) -> int:
        """RCTL.BSIZE/BSEX as bytes (table 13-66); a reserved code reads as 2048."""
        code = ((rctl & regs.RCTL_BSIZE_MASK) >> regs.RCTL_BSIZE_SHIFT, bool(rctl & regs.RCTL_BSEX))
        return regs.RCTL_BSIZE_BYTES.get(code, 2048)

    def arrive(self, n: int, data: Any, lengths: Any) -> bool:
        """The whole arrival of a plain burst compiled (device/fastdev.h, rx_arrive); False: nothing done.

        ``n`` frames at C pointers (the sender's scratch).  One C call checks
        what ``E1000._receive_now`` and ``place`` would decide for the common
        case (receiver on, link up, CRC stripped, every frame for the first
        receive address and within one buffer, a buffer posted for each),
        places them and writes length and DD|EOP back, and moves RDH; then
        the counters and one RXT0 interrupt for the burst (8254x 3.2).  Any
        other case is refused untouched and the sender makes a FrameBatch.
        Queue 0 of a one-queue NIC, whose lock the caller holds.
        """
        fast, dev = self.fast, self.dev
        dma = dev.dma
        view = None if fast is None else dma.burst_view()
        if fast is None or view is None:
            return False
        placed = fast.lib.rx_arrive(self._c_mem, self._mem_size, self._c_regs, n, data, lengths, self._c_snap,
                                    self._c_placed, view)  # fmt: skip
        if placed < 0:
            return False
        octets, accesses = self._placed.tolist()
        if dma.iommu is not None:
            dma.iommu.count_hits(accesses)
        dev.count_rx(n, octets + ETH_FCS_LEN * n)
        dev.raise_irq(regs.ICR_RXT0)
        return True

    def _burst(self, frames: FrameBatch, base: int, count: int, head: int, n: int) -> bool:
        """The compiled placement (device/fastdev.h) of ``n`` one-buffer frames; False: the numpy engine runs.

        As on transmit, only when no observer must see the accesses and an
        IOMMU (if any) has every page in its IOTLB; the C refuses, untouched,
        a burst with a descriptor or buffer outside memory or a page it misses.
        """
        fast, dma = self.fast, self.dev.dma
        view = None if fast is None else dma.burst_view()
        if fast is None or view is None:
            return False
        data, lengths = fastdev.batch_pointers(fast, frames)
        placed = fast.lib.rx_burst_scatter(
            self._c_mem, dma.memory.data.size, base, count, head, n, data, lengths,
            RXD_STAT_DD | RXD_STAT_EOP, self._c_snap, self._c_placed, view,
        )  # fmt: skip
        if placed >= 0 and dma.iommu is not None:  # fetch and write-back of each run, and one access per buffer
            dma.iommu.count_hits(n + (2 if head + n <= count else 4))
        return bool(placed >= 0)
