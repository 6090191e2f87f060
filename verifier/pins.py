"""Pinning: which frames a tenant has promised the device may touch, and how.

``pin`` mirrors ibv_reg_mr and VFIO_IOMMU_MAP_DMA: the tenant names a range
of its own virtual memory and an access (device-read for TX buffers,
device-write for RX buffers); the kernel pins the frames behind it.  The
granule is the 4 KiB frame, as the IOMMU's is.  A frame can be pinned once
per tenant (VFIO refuses overlapping maps with -EEXIST).

The table is built for vectorised checks: per-frame access bits and a
prefix sum per access kind, rebuilt on every pin and unpin, so "is every
frame of [first, last] pinned for reading" is two lookups per descriptor
for a whole batch at once, never a Python scan.

Invariant 5, pins outlive DMA: a frame referenced by an in-flight
descriptor keeps its pin.  The queues register as *sources* of in-flight
frame ranges; they are asked only when a pin is released, so the data
path pays nothing for this bookkeeping.  ``unpin`` of such a pin is *deferred*: its
access is revoked at once (no new descriptor may use it) but its frames
stay pinned until the device completes the last descriptor; only then is
the pin released.  We chose deferral over refusal because the tenant
cannot hurry the device, and RDMA's ibv_dereg_mr likewise waits for the
hardware to let go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntFlag

import numpy as np
import numpy.typing as npt

from ring.frames import range_index
from ring.syscalls import DEVICE_READ, DEVICE_WRITE

I64 = npt.NDArray[np.int64]


class Access(IntFlag):
    """Device access a pin grants (IOMMU_READ / IOMMU_WRITE in VFIO terms)."""

    READ = DEVICE_READ  # the device may read: TX buffers
    WRITE = DEVICE_WRITE  # the device may write: RX buffers
    READ_WRITE = DEVICE_READ | DEVICE_WRITE


class PinError(Exception):
    """A pin or unpin request the kernel refuses."""


ACTIVE, RELEASING, RELEASED = "active", "releasing", "released"


@dataclass
class Pin:
    handle: int
    tenant: int
    vaddr: int
    length: int
    access: Access
    frames: I64  # physical frame numbers, in virtual order
    state: str = ACTIVE


class PinTable:
    """All pins of one tenant, as per-frame arrays over physical memory."""

    def __init__(self, tenant: int, frames: int) -> None:
        self.tenant = tenant
        self.frames = frames
        self.pins: dict[int, Pin] = {}
        self.access = np.zeros(frames, dtype=np.uint8)  # access of *active* pins
        self.held = np.zeros(frames, dtype=bool)  # pinned by an active or releasing pin
        self.released = np.zeros(frames, dtype=bool)  # was pinned once, now released
        #: callables returning (first frame, frame count) of every in-flight descriptor of a queue
        self.sources: list[Callable[[], tuple[I64, I64]]] = []
        self._prefix: dict[int, I64] = {}
        #: per access kind, per frame: pinned with that access (a buffer of at most one page
        #: touches at most two frames, so checking its first and last frame is exact)
        #: (the arrays are updated in place, so a compiled fast path may hold pointers to them)
        self.frame_ok: dict[int, npt.NDArray[np.bool_]] = {
            int(kind): np.zeros(frames + 1, dtype=bool) for kind in (Access.READ, Access.WRITE)
        }
        self.sentinel = np.uint64(frames)  # index of frame_ok's final False entry
        #: pins whose unpin waits for in-flight DMA (a count, read as "any?" by every interrupt: a plain
        #: attribute, not a property, since the reap asks it once per completion batch)
        self.releasing = 0
        self._rebuild()

    # -- lookups (vectorised) ------------------------------------------------------
    def _rebuild(self) -> None:
        for kind in (Access.READ, Access.WRITE):
            ok = (self.access & kind) != 0
            # one extra False entry: frame numbers beyond memory are clipped onto it
            self.frame_ok[int(kind)][:-1] = ok
            self._prefix[kind] = np.concatenate(([0], np.cumsum(ok, dtype=np.int64)))

    def covers(self, first: I64, last: I64, kind: Access) -> npt.NDArray[np.bool_]:
        """True where every frame of ``[first[i], last[i]]`` is pinned with ``kind`` access.

        Frame numbers must already be inside physical memory.
        """
        prefix = self._prefix[kind]
        return (prefix[last + 1] - prefix[first]) == (last - first + 1)

    # -- pin and unpin -------------------------------------------------------------
    def add(self, pin: Pin) -> None:
        if bool(self.held[pin.frames].any()):
            raise PinError("part of this range is pinned already (overlapping pins are refused, as VFIO does)")
        self.pins[pin.handle] = pin
        self.access[pin.frames] = pin.access
        self.held[pin.frames] = True
        self.released[pin.frames] = False
        self._rebuild()

    def release(self, handle: int) -> str:
        """Unpin: ``"released"`` at once, or ``"deferred"`` while DMA is in flight."""
        pin = self.pins.get(handle)
        if pin is None or pin.state != ACTIVE:
            raise PinError(f"no active pin with handle {handle}")
        self.access[pin.frames] = 0
        self._rebuild()
        if self.references(pin.frames):
            pin.state = RELEASING
            self.releasing += 1
            return "deferred"
        self._finish(pin)
        return "released"

    def references(self, frames: I64) -> int:
        """How many in-flight descriptors reference any of ``frames`` (counted per frame touched)."""
        total = 0
        for source in self.sources:
            first, count = source()
            if first.size:
                total += int(np.count_nonzero(np.isin(range_index(first, count), frames)))
        return total

    def _finish(self, pin: Pin) -> None:
        if pin.state == RELEASING:
            self.releasing -= 1
        pin.state = RELEASED
        self.held[pin.frames] = False
        self.released[pin.frames] = True
        del self.pins[pin.handle]

    def settle(self) -> list[Pin]:
        """Finish deferred unpins whose frames no longer have DMA in flight (cheap when none wait)."""
        if not self.releasing:
            return []
        done = [p for p in self.pins.values() if p.state == RELEASING and not self.references(p.frames)]
        for pin in done:
            self._finish(pin)
        return done
