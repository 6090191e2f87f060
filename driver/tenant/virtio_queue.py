"""The user-space virtio-net queues: ``tx_burst`` and ``rx_burst`` over split virtqueues (virtio 1.2 §2.7, §5.1.6).

The same burst API as the e1000 queues (driver/tenant/txq.py, rxq.py), as
DPDK's virtio PMD offers ``rte_eth_tx_burst``/``rx_burst`` over the same
rings: one call reaps the used ring, writes a burst of descriptors and
available entries as numpy assignments, and notifies once.  The layout is
Linux's virtio-net with VIRTIO_F_VERSION_1 (any layout): each frame sits in
one pool buffer right behind its 12-byte ``virtio_net_hdr``, one descriptor
per frame, so descriptor ``i`` always names pool buffer ``i`` (a chain is one
descriptor; the kernel and the device walk longer ones, which tests and the
attacker build by hand).  Completions come back through the used ring by
head; ``VIRTQ_USED_LEN_REFUSED`` marks a chain the kernel refused.

The driver talks to ``ring/syscalls.py`` only (``VirtioSyscalls``), like the
e1000 queues.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from driver.tenant.mempool import DEFAULT_BUF_SIZE, Mempool
from driver.tenant.shortfall import Reason, Shortfall
from ring import indices
from ring.frames import FrameBatch, gather, scatter
from ring.syscalls import DEVICE_READ, DEVICE_WRITE, VirtioSyscalls
from ring.virtio import (
    RECEIVEQ,
    TRANSMITQ,
    VIRTIO_NET_HDR_SIZE,
    VIRTQ_DESC,
    VIRTQ_DESC_F_WRITE,
    VIRTQ_USED_LEN_REFUSED,
    VirtqLayout,
    avail_bytes,
    avail_dtype,
    used_bytes,
    used_dtype,
)

I64 = npt.NDArray[np.int64]
DEFAULT_QUEUE_SIZE = 256


@dataclass
class VirtqStats:
    frames: int = 0
    bytes: int = 0
    completed: int = 0  # chains returned through the used ring
    refused: int = 0  # chains the kernel completed with VIRTQ_USED_LEN_REFUSED
    backpressure: int = 0  # TX bursts that could not take every frame


class Virtqueue:
    """One split virtqueue in the tenant's memory: its three areas, a buffer per descriptor, and its notify."""

    def __init__(self, sys: VirtioSyscalls, nic: str, index: int, size: int, buf_size: int, access: int) -> None:
        self.layout = lay = VirtqLayout.of(size)
        self.size = size
        self.region = sys.alloc_dma(lay.nbytes)
        view = self.region.view
        self.desc = view[lay.desc : lay.desc + size * VIRTQ_DESC.itemsize].view(VIRTQ_DESC)
        avail = view[lay.avail : lay.avail + avail_bytes(size)].view(avail_dtype(size))
        used = view[lay.used : lay.used + used_bytes(size)].view(used_dtype(size))
        self.avail_idx, self.avail_ring = avail["idx"], avail["ring"][0]
        self.used_idx, self.used_ring = used["idx"], used["ring"][0]
        self.pool = Mempool(sys, size, buf_size, access)
        self.desc["addr"] = self.pool.bus_addr  # descriptor i names buffer i, for the queue's life
        self.handle = sys.open_virtqueue(nic, index, self.region, size)
        self.doorbell = self.handle.doorbell
        self.index = index
        self.avail = 0  # free-running: the next available entry this driver writes
        self.last_used = 0  # free-running: the next used entry this driver reads
        self.stats = VirtqStats()

    def make_available(self, heads: I64) -> None:
        """Append ``heads`` to the available ring, then move its idx (entries first, §2.7.13), and notify."""
        n = heads.size
        slots = (self.avail + np.arange(n, dtype=np.int64)) & (self.size - 1)
        self.avail_ring[slots] = heads
        self.avail = (self.avail + n) & 0xFFFF
        self.avail_idx[0] = self.avail
        self.doorbell.write32(self.handle.notify_offset, self.index)

    def take_used(self, limit: int | None = None) -> tuple[I64, I64]:
        """The (head, len) the device (or the kernel) returned since the last call, at most ``limit``."""
        ready = indices.distance16(self.last_used, int(self.used_idx[0]))
        n = ready if limit is None else min(ready, limit)
        if n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        slots = (self.last_used + np.arange(n, dtype=np.int64)) & (self.size - 1)
        elems = self.used_ring[slots]
        self.last_used = (self.last_used + n) & 0xFFFF
        heads, lens = elems["id"].astype(np.int64), elems["len"].astype(np.int64)
        self.stats.completed += n
        self.stats.refused += int(np.count_nonzero(lens == VIRTQ_USED_LEN_REFUSED))
        return heads, lens

    def ready(self) -> int:
        """Used entries waiting (the queue's occupancy, as rte_eth_rx_queue_count)."""
        return indices.distance16(self.last_used, int(self.used_idx[0]))


class VirtioTxQueue(Virtqueue):
    """transmitq1: each frame one descriptor, its buffer a zeroed header then the frame."""

    def __init__(self, sys: VirtioSyscalls, nic: str, size: int = DEFAULT_QUEUE_SIZE,
                 buf_size: int = DEFAULT_BUF_SIZE) -> None:  # fmt: skip
        super().__init__(sys, nic, TRANSMITQ, size, buf_size, DEVICE_READ)
        self.free = np.arange(size, dtype=np.int64)[::-1].copy()  # heads not in flight (a stack)
        self.top = size
        self.last_shortfall: Shortfall | None = None

    def reap(self) -> int:
        heads, _lens = self.take_used()
        n = heads.size
        if n:
            self.free[self.top : self.top + n] = heads[::-1]
            self.top += n
        return n

    def tx_burst(self, batch: FrameBatch) -> int:
        """Send what fits of ``batch``; the count sent (fewer: ``last_shortfall`` says why)."""
        self.reap()
        lengths = batch.lengths
        room = self.pool.buf_size - VIRTIO_NET_HDR_SIZE
        if lengths.size and int(lengths.max()) > room:
            raise ValueError(f"a frame longer than {room} bytes does not fit one buffer behind its header")
        n = min(len(batch), self.top)
        self.last_shortfall = None if n == len(batch) else Shortfall(len(batch), n, Reason.RING_FULL)
        if n < len(batch):
            self.stats.backpressure += 1
        if n == 0:
            return 0
        heads = self.free[self.top - n : self.top][::-1].copy()
        self.top -= n
        chunk = lengths[:n]
        nbytes = int(chunk.sum())
        scatter(self.pool.memory, self.pool.offsets(heads) + VIRTIO_NET_HDR_SIZE, chunk, batch.data[:nbytes])
        self.desc["len"][heads] = chunk + VIRTIO_NET_HDR_SIZE
        self.desc["flags"][heads] = 0
        self.desc["addr"][heads] = self.pool.bus_addr[heads]
        self.make_available(heads)
        self.stats.frames += n
        self.stats.bytes += nbytes
        return n


class VirtioRxQueue(Virtqueue):
    """receiveq1: every descriptor one device-writable buffer, all posted; a burst takes what came back."""

    def __init__(self, sys: VirtioSyscalls, nic: str, size: int = DEFAULT_QUEUE_SIZE,
                 buf_size: int = DEFAULT_BUF_SIZE) -> None:  # fmt: skip
        super().__init__(sys, nic, RECEIVEQ, size, buf_size, DEVICE_WRITE)
        self.desc["len"] = buf_size
        self.desc["flags"] = VIRTQ_DESC_F_WRITE
        self.last_shortfall: Shortfall | None = None
        self.make_available(np.arange(size, dtype=np.int64))

    def rx_burst(self, max_frames: int = 1 << 30) -> FrameBatch:
        """Up to ``max_frames`` frames (headers stripped); their buffers are posted again at once."""
        heads, lens = self.take_used(max_frames)
        got = heads.size
        more = self.ready() > 0
        if got < max_frames:
            self.last_shortfall = Shortfall(max_frames, got, Reason.MORE_READY if more else Reason.RING_EMPTY)
        else:
            self.last_shortfall = None
        if got == 0:
            return FrameBatch()
        good = (lens != VIRTQ_USED_LEN_REFUSED) & (lens > VIRTIO_NET_HDR_SIZE) & (lens <= self.pool.buf_size)
        frame_lens = lens[good] - VIRTIO_NET_HDR_SIZE
        data = gather(self.pool.memory, self.pool.offsets(heads[good]) + VIRTIO_NET_HDR_SIZE, frame_lens)
        batch = FrameBatch(data, frame_lens)
        self.make_available(heads)
        self.stats.frames += len(batch)
        self.stats.bytes += batch.nbytes
        return batch
