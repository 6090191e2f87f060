"""The user-space receive queue: ``rx_burst`` as DPDK's rte_eth_rx_burst or ixy's rx_batch.

Each ring slot keeps its own buffer (slot ``i`` uses buffer ``i``), as the
e1000 legacy layout invites.  A burst finds the run of done descriptors at
the head of the ring, stops at the last complete frame (EOP), copies the
frames out as one gather, re-arms the slots and rings the doorbell once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ring import indices
from ring.descriptors import DESC_SIZE, RX_DESC, RXD_ERR_REFUSED, RXD_STAT_DD, RXD_STAT_EOP
from ring.frames import FrameBatch, gather
from ring.mempool import Mempool
from ring.syscalls import Syscalls
from ring.txq import check_ring_size


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
        self.pool = Mempool(sys, size, self.handle.buffer_size)
        self.doorbell = self.handle.doorbell
        self.ring["addr"] = self.pool.bus_addr
        self.next = 0
        self.tail = size - 1
        self.stats = RxStats()
        self.doorbell.write32(self.handle.tail_offset, self.tail)

    def rx_burst(self, max_frames: int = 1 << 30) -> FrameBatch:
        """Return up to ``max_frames`` complete frames and give their slots back to the device."""
        posted = indices.used(self.next, self.tail, self.size)
        if posted == 0 or max_frames <= 0:
            return FrameBatch()
        idx = indices.slots(self.next, posted, self.size)
        status = self.ring["status"][idx]
        done = (status & RXD_STAT_DD) != 0
        k = posted if bool(done.all()) else int(np.argmin(done))
        if k == 0:
            return FrameBatch()
        idx, status = idx[:k], status[:k]
        errors = self.ring["errors"][idx]
        lengths = self.ring["length"][idx].astype(np.int64)
        refused = ((errors & RXD_ERR_REFUSED) != 0) & ((status & RXD_STAT_EOP) == 0) & (lengths == 0)
        eop = ((status & RXD_STAT_EOP) != 0) & ~refused
        ends = np.flatnonzero(eop)
        if ends.size > max_frames:
            ends = ends[:max_frames]
        # Consume through the last complete frame; trailing refused slots go too.
        if ends.size:
            m = int(ends[-1]) + 1
        else:
            m = 0
        if m < k and ends.size < max_frames:
            tail_refused = refused[m:]
            m += k - m if bool(tail_refused.all()) else int(np.argmin(tail_refused))
        if m == 0:
            return FrameBatch()
        idx, lengths, refused, eop = idx[:m], lengths[:m], refused[:m], eop[:m]
        data_slots = ~refused
        frame_id = np.cumsum(eop) - eop  # frame each descriptor belongs to
        frames = int(np.count_nonzero(eop))
        frame_len = np.bincount(frame_id[data_slots], weights=lengths[data_slots], minlength=frames)
        bad = np.bincount(frame_id[data_slots], weights=(errors[:m][data_slots] != 0), minlength=frames) > 0
        data = gather(self.pool.memory, self.pool.offsets(idx[data_slots]), lengths[data_slots])
        batch = FrameBatch(data, frame_len.astype(np.int64)[:frames])
        if bool(bad.any()):
            keep = ~bad
            batch = FrameBatch(data[np.repeat(keep, batch.lengths)], batch.lengths[keep])
            self.stats.errors += int(np.count_nonzero(bad))
        self.stats.refused += int(np.count_nonzero(refused))
        self.stats.frames += len(batch)
        self.stats.bytes += batch.nbytes
        fresh = np.zeros(m, dtype=RX_DESC)
        fresh["addr"] = self.pool.bus_addr[idx]
        self.ring[idx] = fresh
        self.next = indices.advance(self.next, m, self.size)
        self.tail = indices.advance(self.tail, m, self.size)
        self.doorbell.write32(self.handle.tail_offset, self.tail)
        return batch
