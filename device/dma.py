"""The device's one DMA engine: the only door between the NIC and memory.

Invariant 1 of the design: every byte the device reads or writes passes
through ``DmaEngine.read``/``write``, and every access batch is shown to the
observers (the fuzzer's oracle hangs here) *before* it happens, with the
verdict of the bus: an address beyond physical memory is a master abort
(nothing moves), and under an IOMMU an untranslated or read-only page is a
fault.  Accesses come in batches, one per burst, never one call per byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from device import fastdev
from ring.memory import PhysicalMemory

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

READ = "read"
WRITE = "write"


@dataclass(frozen=True)
class DmaBatch:
    """One batch of device accesses as the observers see it.

    ``addrs`` are what the device put on the bus (physical, or IO virtual
    under an IOMMU); ``phys`` are the physical addresses after translation;
    ``allowed[i]`` is False where access i was blocked and moved no byte.
    """

    device: str
    queue: int
    direction: str  # READ or WRITE
    purpose: str  # "tx-desc", "tx-data", "tx-wb", "rx-desc", "rx-data", "rx-wb"
    addrs: U64
    lengths: I64
    phys: U64
    allowed: Mask


DmaObserver = Callable[[DmaBatch], None]


class TranslationCache(Protocol):
    """An IOMMU's translation cache (IOTLB) as the compiled burst path reads it (device/fastdev.h, iotlb_view).

    Per set: the IOVA page cached there if its entry grants read
    (``read_tags``) or write (``write_tags``), and its frame as a base address.
    """

    @property
    def read_tags(self) -> U64: ...
    @property
    def write_tags(self) -> U64: ...
    @property
    def bases(self) -> U64: ...
    @property
    def sets(self) -> int: ...


class Translator(Protocol):
    """An IOMMU: maps bus addresses to physical ones, per access, or faults."""

    def translate(self, device: str, addrs: U64, lengths: I64, write: bool) -> tuple[U64, Mask]: ...

    def cache(self, device: str) -> TranslationCache | None:
        """The device's IOTLB, or None (nothing mapped yet): then every burst takes the numpy engine."""
        ...

    def count_hits(self, accesses: int) -> None:
        """The compiled burst path translated ``accesses`` accesses from the cache (the IOTLB's hit counter)."""
        ...


def in_memory(addrs: U64, lengths: I64, size: int) -> Mask:
    """``[addr, addr + len)`` inside ``[0, size)``, computed without 64-bit wrap."""
    a = np.asarray(addrs, dtype=np.uint64)
    n = np.asarray(lengths, dtype=np.uint64)
    top = np.uint64(size)
    room = np.where(a <= top, top - np.minimum(a, top), np.uint64(0))
    return (a <= top) & (n <= room)


def all_in_memory(addrs: U64, lengths: I64, size: int) -> bool:
    """Fast test that every range is inside memory (lengths below 2**32, as every device access is)."""
    if addrs.size == 1:  # one burst of descriptors: plain integers are cheaper than two reductions
        return int(addrs[0]) + int(lengths[0]) <= size
    if addrs.size == 0:
        return True
    # With addr < size <= 2**62 and len < 2**32 the sum cannot wrap, so two maxima decide.
    return int(addrs.max()) < size and int((addrs + lengths.astype(np.uint64)).max()) <= size


_U64_MAX = np.uint64(2**64 - 1)
_ALL_ALLOWED = np.ones(1 << 16, dtype=bool)
_ALL_ALLOWED.flags.writeable = False


def all_allowed(n: int) -> Mask:
    """A read-only mask of ``n`` Trues (shared: the common answer costs no allocation)."""
    return _ALL_ALLOWED[:n] if n <= _ALL_ALLOWED.size else np.ones(n, dtype=bool)


def contiguous_runs(slots: I64) -> I64:
    """``(first_index, count)`` rows for each run of consecutive slot numbers."""
    if slots.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if int(slots[-1]) - int(slots[0]) == slots.size - 1:
        return np.array([[0, slots.size]], dtype=np.int64)
    breaks = np.flatnonzero(np.diff(slots) != 1) + 1
    starts = np.concatenate(([0], breaks))
    counts = np.diff(np.concatenate((starts, [slots.size])))
    return np.stack((starts, counts), axis=1).astype(np.int64)


class DmaEngine:
    """Moves bytes between physical memory and one device, watched by observers."""

    def __init__(self, memory: PhysicalMemory, device: str) -> None:
        self.memory = memory
        self.device = device
        self.observers: list[DmaObserver] = []
        self.iommu: Translator | None = None
        self.blocked = 0  # accesses refused by the bus or the IOMMU
        self.fast = fastdev.enabled()
        self._view: tuple[TranslationCache, Any] | None = None  # the IOTLB and its struct iotlb_view, made once
        self._rows: dict[int, npt.NDArray[np.uint8]] = {}

    def rows(self, length: int) -> npt.NDArray[np.uint8]:
        """Every ``length``-byte window of memory as a row: a strided view, no copy (ring/frames.py ``rows_at``).

        Indexing it with start addresses moves whole frames at once: the numpy
        engines' plain bursts gather and scatter same-length frames with it, as
        bench/numpy_limit.py does.  Those bursts run only when no observer
        must see the batch (``read``/``write`` show it); the caller has checked
        every range against memory.  A few lengths are kept (a burst has one).
        """
        view = self._rows.get(length)
        if view is None:
            data = self.memory.data
            view = np.ndarray((data.size - length + 1, length), dtype=np.uint8, buffer=data, strides=(1, 1))
            if len(self._rows) < 64:
                self._rows[length] = view
        return view

    def burst_view(self) -> Any:
        """What the compiled burst path translates through: NULL without an IOMMU, the IOTLB's view, or None
        (the burst path may not run: an observer must see each batch, or the IOMMU has no cache for us yet)."""
        fast = self.fast
        if fast is None or self.observers:
            return None
        if self.iommu is None:
            return fast.ffi.NULL
        cache = self.iommu.cache(self.device)
        if cache is None:
            return None
        if self._view is None or self._view[0] is not cache:
            view = fast.ffi.new("struct iotlb_view *")
            view.tags_read = fast.ffi.cast("uint64_t *", cache.read_tags.ctypes.data)
            view.tags_write = fast.ffi.cast("uint64_t *", cache.write_tags.ctypes.data)
            view.bases = fast.ffi.cast("uint64_t *", cache.bases.ctypes.data)
            view.index_mask = cache.sets - 1
            self._view = (cache, view)
        return self._view[1]

    def _route(self, queue: int, direction: str, purpose: str, addrs: U64, lengths: I64) -> tuple[U64, Mask | None]:
        """Translate and bounds-check a batch; ``None`` for the mask means every access is allowed."""
        if self.iommu is not None:
            phys, mask = self.iommu.translate(self.device, addrs, lengths, direction == WRITE)
            inside = all_in_memory(phys, lengths, self.memory.size)  # the common answer, without a mask
            allowed: Mask | None = mask if inside else mask & in_memory(phys, lengths, self.memory.size)
        else:
            phys = addrs
            allowed = (
                None if all_in_memory(addrs, lengths, self.memory.size) else in_memory(addrs, lengths, self.memory.size)
            )
        if allowed is not None and bool(allowed.all()):
            allowed = None
        if allowed is not None:
            self.blocked += int(allowed.size - np.count_nonzero(allowed))
        if self.observers:
            seen = all_allowed(addrs.size) if allowed is None else allowed
            batch = DmaBatch(self.device, queue, direction, purpose, addrs, lengths, phys, seen)
            for observe in self.observers:
                observe(batch)
        return phys, allowed

    def read(self, queue: int, purpose: str, addrs: U64, lengths: I64) -> tuple[npt.NDArray[np.uint8], Mask]:
        """Read each range; return the allowed ranges' bytes back to back, and the mask."""
        addrs = np.asarray(addrs, dtype=np.uint64)
        lengths = np.asarray(lengths, dtype=np.int64)
        phys, allowed = self._route(queue, READ, purpose, addrs, lengths)
        if allowed is None:
            if phys.size == 1:
                start = int(phys[0])
                return self.memory.data[start : start + int(lengths[0])].copy(), all_allowed(1)
            return fastdev.gather(self.memory.data, phys.astype(np.int64), lengths), all_allowed(phys.size)
        return fastdev.gather(self.memory.data, phys[allowed].astype(np.int64), lengths[allowed]), allowed

    def write(self, queue: int, purpose: str, addrs: U64, lengths: I64, data: npt.NDArray[np.uint8]) -> Mask:
        """Write ``data`` (all ranges back to back) to the ranges; blocked ranges are skipped."""
        addrs = np.asarray(addrs, dtype=np.uint64)
        lengths = np.asarray(lengths, dtype=np.int64)
        phys, allowed = self._route(queue, WRITE, purpose, addrs, lengths)
        if allowed is None:
            if phys.size == 1:
                start = int(phys[0])
                self.memory.data[start : start + int(lengths[0])] = data
            else:
                fastdev.scatter(self.memory.data, phys.astype(np.int64), lengths, data)
            return all_allowed(phys.size)
        keep = np.repeat(allowed, lengths)
        fastdev.scatter(self.memory.data, phys[allowed].astype(np.int64), lengths[allowed], data[keep])
        return allowed

    # -- descriptor rings --------------------------------------------------
    def read_descriptors(
        self, queue: int, purpose: str, base: int, slots: I64, dtype: np.dtype[np.void]
    ) -> tuple[npt.NDArray[np.void], Mask]:
        """Fetch descriptors ``slots`` of the ring at ``base``; unreadable ones come back zeroed.

        A run of consecutive slots is fetched as one burst (one range), as a
        NIC's descriptor prefetch does; a run that wraps takes two.
        """
        size = dtype.itemsize
        runs = contiguous_runs(slots)
        addrs = np.uint64(base) + slots[runs[:, 0]].astype(np.uint64) * np.uint64(size)
        addrs[addrs < np.uint64(base)] = _U64_MAX  # a ring wrapping 2**64 is beyond memory, not at 0
        raw, allowed = self.read(queue, purpose, addrs, runs[:, 1] * size)
        if raw.size == slots.size * size:
            return raw.view(dtype), all_allowed(slots.size)
        ok = np.repeat(allowed, runs[:, 1])
        out = np.zeros(slots.size, dtype=dtype)
        out[ok] = raw.view(dtype)
        return out, ok

    def write_descriptors(self, queue: int, purpose: str, base: int, slots: I64, descs: npt.NDArray[np.void]) -> Mask:
        """Write descriptors back into the ring at ``base`` (status write-back), run by run."""
        size = descs.dtype.itemsize
        runs = contiguous_runs(slots)
        addrs = np.uint64(base) + slots[runs[:, 0]].astype(np.uint64) * np.uint64(size)
        addrs[addrs < np.uint64(base)] = _U64_MAX  # a ring wrapping 2**64 is beyond memory, not at 0
        allowed = self.write(queue, purpose, addrs, runs[:, 1] * size, np.ascontiguousarray(descs).view(np.uint8))
        return np.repeat(allowed, runs[:, 1])
