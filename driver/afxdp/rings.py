"""One AF_XDP ring as the kernel maps it: producer, consumer, flags word and descriptor array.

The layout is not fixed by the ABI: the kernel reports where each field of each
ring lives through ``getsockopt(XDP_MMAP_OFFSETS)`` (net/xdp/xsk.c
``xsk_getsockopt``; the rings are ``struct xdp_rxtx_ring``/``xdp_umem_ring`` in
net/xdp/xsk_queue.c), and user space maps the ring at a fixed page offset
(``XDP_PGOFF_*``) with the length ``desc + entries * sizeof(entry)``.

Producer and consumer are free-running u32 counters; slot = counter & (size - 1).
User space produces on the fill and TX rings and consumes the RX and completion
rings.  Writes go through numpy views of the shared mapping.  On x86 (TSO) plain
stores are seen in program order, which is the ordering the kernel's
``smp_load_acquire``/``smp_store_release`` pairs expect (xsk_queue.h,
"producer/consumer" comment); the descriptor is written before the producer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from driver.afxdp.abi import MAP_SHARED, ffi, libc, mmap_populated

U32 = (1 << 32) - 1


@dataclass
class XskRing:
    """A mapped ring.  ``entries`` is a numpy view of the descriptor array (XDP_DESC or u64)."""

    name: str
    size: int
    producer_view: np.ndarray
    consumer_view: np.ndarray
    flags_view: np.ndarray
    entries: np.ndarray
    _base: Any
    _length: int

    @classmethod
    def map(cls, name: str, fd: int, pgoff: int, offsets: Any, size: int, dtype: np.dtype) -> XskRing:
        """mmap the ring of ``size`` entries at page offset ``pgoff`` using ``struct xdp_ring_offset``."""
        length = int(offsets.desc) + size * dtype.itemsize
        base = mmap_populated(length, MAP_SHARED, fd, pgoff, f"mmap {name} ring")
        raw = np.frombuffer(ffi.buffer(base, length), dtype=np.uint8)

        def u32_at(off: int) -> np.ndarray:
            return raw[off : off + 4].view(np.uint32)

        entries = raw[int(offsets.desc) : int(offsets.desc) + size * dtype.itemsize].view(dtype)
        return cls(
            name,
            size,
            u32_at(int(offsets.producer)),
            u32_at(int(offsets.consumer)),
            u32_at(int(offsets.flags)),
            entries,
            base,
            length,
        )

    # -- counters -------------------------------------------------------------
    @property
    def producer(self) -> int:
        return int(self.producer_view[0])

    @producer.setter
    def producer(self, value: int) -> None:
        self.producer_view[0] = value & U32

    @property
    def consumer(self) -> int:
        return int(self.consumer_view[0])

    @consumer.setter
    def consumer(self, value: int) -> None:
        self.consumer_view[0] = value & U32

    @property
    def flags(self) -> int:
        return int(self.flags_view[0])

    def used(self) -> int:
        """Entries produced and not yet consumed."""
        return (self.producer - self.consumer) & U32

    def free(self) -> int:
        return self.size - self.used()

    # -- user as producer (fill, TX) ------------------------------------------
    def produce(self, items: np.ndarray) -> int:
        """Write as many of ``items`` as fit after the producer, then publish them; returns how many."""
        prod = self.producer
        n = min(len(items), self.free())
        if n:
            slots = (prod + np.arange(n)) & (self.size - 1)
            self.entries[slots] = items[:n]
            self.producer = prod + n
        return n

    # -- user as consumer (RX, completion) ------------------------------------
    def consume(self, limit: int | None = None) -> np.ndarray:
        """Copy out the entries between consumer and producer (at most ``limit``) and release them."""
        cons = self.consumer
        n = self.used() if limit is None else min(limit, self.used())
        if n == 0:
            return self.entries[:0].copy()
        slots = (cons + np.arange(n)) & (self.size - 1)
        out = self.entries[slots].copy()
        self.consumer = cons + n
        return out

    def unmap(self) -> None:
        if self._base is not None:
            # Drop the numpy views first: nothing may touch the mapping after munmap.
            self.producer_view = self.consumer_view = self.flags_view = np.zeros(1, np.uint32)
            self.entries = self.entries[:0].copy()
            libc.munmap(self._base, self._length)
            self._base = None
