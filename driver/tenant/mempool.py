"""A pool of fixed-size packet buffers in one DMA region (DPDK's mempool, ixy's mempool).

Buffer ``i`` starts at byte ``i * buf_size`` of the region.  Free buffers
sit on a numpy stack, so a burst takes or returns many ids in one slice.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ring.frames import chunk_rows
from ring.syscalls import DEVICE_READ, DmaRegion, Syscalls

DEFAULT_BUF_SIZE = 2048  # one e1000 RX buffer at RCTL.BSIZE=00, and DPDK's mbuf data room


class PoolExhausted(Exception):
    """More buffers were asked for than the pool has free."""


class Mempool:
    """``count`` buffers of ``buf_size`` bytes, each with a known bus address."""

    def __init__(self, sys: Syscalls, count: int, buf_size: int = DEFAULT_BUF_SIZE, access: int = DEVICE_READ) -> None:
        if count <= 0 or buf_size <= 0:
            raise ValueError("a mempool needs at least one buffer of at least one byte")
        self.count = count
        self.buf_size = buf_size
        self.region: DmaRegion = sys.alloc_dma(count * buf_size)
        #: the pool is pinned for its whole life, as DPDK and ixy pin their hugepages
        self.pin = sys.pin(self.region.vaddr, self.region.size, access)
        self.memory = self.region.view
        #: the buffers as rows of a ``(count, buf_size)`` view: a burst's bytes move as one row gather/scatter
        self.rows = chunk_rows(self.memory, buf_size)
        ids = np.arange(count, dtype=np.int64)
        self.bus_addr: npt.NDArray[np.uint64] = (self.region.bus + ids * buf_size).astype(np.uint64)
        #: ``stack[:top]`` are the free buffer ids; ``top`` is a one-cell array so the compiled
        #: burst path (driver/tenant/pmd.c) pops and pushes the same stack in place
        self.stack = ids[::-1].copy()
        self.top = np.array([count], dtype=np.int64)

    @property
    def available(self) -> int:
        return int(self.top[0])

    def alloc(self, n: int) -> npt.NDArray[np.int64]:
        top = int(self.top[0])
        if n > top:
            raise PoolExhausted(f"asked for {n} buffers, {top} free")
        top -= n
        self.top[0] = top
        return self.stack[top : top + n][::-1].copy()

    def take(self, n: int) -> npt.NDArray[np.int64]:
        """``alloc`` without the copy: the ids are a view of the stack, valid until the next ``free``.

        For a burst that writes its buffers' ids into the ring at once (tx_burst), as DPDK's bulk dequeue.
        """
        top = int(self.top[0])
        if n > top:
            raise PoolExhausted(f"asked for {n} buffers, {top} free")
        self.top[0] = top - n
        return self.stack[top - n : top][::-1]

    def free(self, ids: npt.NDArray[np.int64]) -> None:
        n = int(ids.size)
        top = int(self.top[0])
        if top + n > self.count:
            raise ValueError("more buffers freed than the pool holds (double free)")
        self.stack[top : top + n] = ids[::-1]
        self.top[0] = top + n

    def offsets(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Byte offset of each buffer inside the pool's own mapping."""
        return ids * self.buf_size
