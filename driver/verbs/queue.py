"""``tx_burst``/``rx_burst`` over RDMA: a burst of frames is a batch of SEND work requests.

The verbs counterpart of ``driver/tenant/txq.py`` and ``driver/tenant/rxq.py``.  A queue owns
a registered region cut into fixed-size slots; a slot's index is the WR's
``wr_id``, so a completion names the slot it frees.

* ``VerbsTxQueue.tx_burst`` reaps send completions, copies the frames into
  free slots with one numpy scatter, and posts one SEND WR per frame in one
  post (one doorbell) through its ``WorkPoster``: the kernel's gate or, with
  protection off, the raw device.  WRs the gate refuses free their slots at
  once; the count returned is what was posted (back-pressure, as DPDK).
* ``VerbsRxQueue.rx_burst`` polls receive completions, gathers the frames
  out of their slots (after the 40-byte GRH on a UD queue pair), and posts
  fresh receive WRs for the slots it consumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from driver.verbs.memory import Arena
from ring.frames import FrameBatch, gather, scatter
from ring.verbs_api import CompletionSource, WorkPoster
from ring.verbs_format import IBV_SEND_SIGNALED, IBV_WC_SUCCESS, IBV_WR_SEND, RECV_WR, SEND_WR, SGE, WorkBatch


@dataclass(frozen=True)
class SlotRegion:
    """``slots`` buffers of ``slot_size`` bytes at ``addr`` inside ``arena``, all in the MR named by ``lkey``."""

    arena: Arena
    addr: int
    slot_size: int
    slots: int
    lkey: int

    def slot_addr(self, slot: np.ndarray) -> np.ndarray:
        return np.uint64(self.addr) + slot.astype(np.uint64) * np.uint64(self.slot_size)


@dataclass
class VerbsQueueStats:
    frames: int = 0
    bytes: int = 0
    refused: int = 0  # WRs the kernel refused at post time
    errors: int = 0  # completions with a status other than IBV_WC_SUCCESS


def _one_sge_batch(wrs: np.ndarray, region: SlotRegion, slots: np.ndarray, lengths: np.ndarray) -> WorkBatch:
    sges = np.zeros(slots.size, dtype=SGE)
    sges["addr"] = region.slot_addr(slots)
    sges["length"] = lengths
    sges["lkey"] = region.lkey
    return WorkBatch(wrs, sges)


class VerbsTxQueue:
    def __init__(self, poster: WorkPoster, qp_num: int, completions: CompletionSource, region: SlotRegion) -> None:
        self.poster, self.qp_num, self.completions, self.region = poster, qp_num, completions, region
        self.busy = np.zeros(region.slots, dtype=bool)
        self.stats = VerbsQueueStats()

    def reap(self) -> int:
        wcs = self.completions.poll(self.region.slots)
        self.busy[wcs["wr_id"].astype(np.int64)] = False
        self.stats.errors += int(np.count_nonzero(wcs["status"] != IBV_WC_SUCCESS))
        return int(wcs.size)

    def tx_burst(self, frames: FrameBatch) -> int:
        """Post as many frames as there are free slots; returns how many the device accepted."""
        if len(frames) and int(frames.lengths.max()) > self.region.slot_size:
            raise ValueError(f"a frame is longer than the {self.region.slot_size}-byte slot")
        self.reap()
        free = np.flatnonzero(~self.busy)[: len(frames)]
        if free.size == 0:
            return 0
        batch = frames.take(0, free.size)
        base = self.region.arena.offset(self.region.addr)
        scatter(self.region.arena.view, base + free * self.region.slot_size, batch.lengths, batch.data)
        wrs = np.zeros(free.size, dtype=SEND_WR)
        wrs["wr_id"] = free
        wrs["opcode"] = IBV_WR_SEND
        wrs["num_sge"] = 1
        wrs["send_flags"] = IBV_SEND_SIGNALED
        result = self.poster.post_send(self.qp_num, _one_sge_batch(wrs, self.region, free, batch.lengths))
        self.busy[free[result.posted]] = True
        self.stats.refused += int(free.size - result.count)
        self.stats.frames += result.count
        self.stats.bytes += int(batch.lengths[result.posted].sum())
        return result.count


class VerbsRxQueue:
    def __init__(
        self, poster: WorkPoster, qp_num: int, completions: CompletionSource, region: SlotRegion, header: int = 0
    ) -> None:
        """``header``: bytes the device writes before the payload (``GRH_SIZE`` on a UD queue pair)."""
        self.poster, self.qp_num, self.completions, self.region = poster, qp_num, completions, region
        self.header = header
        self.posted = np.zeros(region.slots, dtype=bool)
        self.stats = VerbsQueueStats()

    def fill(self) -> int:
        """Post a receive WR for every slot without one."""
        slots = np.flatnonzero(~self.posted)
        if slots.size == 0:
            return 0
        wrs = np.zeros(slots.size, dtype=RECV_WR)
        wrs["wr_id"] = slots
        wrs["num_sge"] = 1
        lengths = np.full(slots.size, self.region.slot_size, dtype=np.int64)
        result = self.poster.post_recv(self.qp_num, _one_sge_batch(wrs, self.region, slots, lengths))
        self.posted[slots[result.posted]] = True
        self.stats.refused += int(slots.size - result.count)
        return result.count

    def rx_burst(self, max_frames: int) -> FrameBatch:
        """Up to ``max_frames`` received frames, in completion order; the slots are posted again."""
        wcs = self.completions.poll(max_frames)
        slots = wcs["wr_id"].astype(np.int64)
        self.posted[slots] = False
        good = wcs["status"] == IBV_WC_SUCCESS
        self.stats.errors += int(np.count_nonzero(~good))
        slots = slots[good]
        lengths = wcs["byte_len"][good].astype(np.int64) - self.header
        base = self.region.arena.offset(self.region.addr)
        data = gather(self.region.arena.view, base + slots * self.region.slot_size + self.header, lengths)
        self.stats.frames += int(slots.size)
        self.stats.bytes += int(lengths.sum())
        self.fill()
        return FrameBatch(data, lengths)
