"""A pool of fixed-size packet buffers in one DMA region (DPDK's mempool, ixy's mempool).

Buffer ``i`` starts at byte ``i * buf_size`` of the region.  Free buffers
sit on a numpy stack, so a burst takes or returns many ids in one slice.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

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
        ids = np.arange(count, dtype=np.int64)
        self.bus_addr: npt.NDArray[np.uint64] = (self.region.bus + ids * buf_size).astype(np.uint64)
        self._stack = ids[::-1].copy()
        self._top = count

    @property
    def available(self) -> int:
        return self._top

    def alloc(self, n: int) -> npt.NDArray[np.int64]:
        if n > self._top:
            raise PoolExhausted(f"asked for {n} buffers, {self._top} free")
        self._top -= n
        return self._stack[self._top : self._top + n][::-1].copy()

    def free(self, ids: npt.NDArray[np.int64]) -> None:
        n = int(ids.size)
        if self._top + n > self.count:
            raise ValueError("more buffers freed than the pool holds (double free)")
        self._stack[self._top : self._top + n] = ids[::-1]
        self._top += n

    def offsets(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Byte offset of each buffer inside the pool's own mapping."""
        return ids * self.buf_size
