"""Time stamps for frames on a wire.

The inline engine uses a virtual clock that advances by each frame's time
on a 1 Gb/s wire (preamble, FCS and inter-frame gap included), so two runs
with the same seed write byte-identical pcaps (invariant 7).  A cable uses
the virtual clock unless given another; the sandbox gives the threaded
engine's cables the wall clock.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np
import numpy.typing as npt

#: 802.3 per-frame overhead on the wire: 8 preamble+SFD, 4 FCS, 12 inter-frame gap.
WIRE_OVERHEAD_BYTES = 8 + 4 + 12
LINK_BPS = 1_000_000_000
EPOCH_NS = 1_700_000_000 * 1_000_000_000  # a fixed, readable start for virtual time


class Clock(Protocol):
    def stamp(self, lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Nanosecond time stamps for frames of these lengths sent back to back now."""
        ...


class VirtualClock:
    """Deterministic time: only frames make it move."""

    def __init__(self, start_ns: int = EPOCH_NS) -> None:
        self.now_ns = start_ns

    def stamp(self, lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        wire_ns = (lengths + WIRE_OVERHEAD_BYTES) * 8 * 1_000_000_000 // LINK_BPS
        ends = self.now_ns + np.cumsum(wire_ns)
        if ends.size:
            self.now_ns = int(ends[-1])
        return (ends - wire_ns).astype(np.int64)

    def advance(self, ns: int) -> int:
        """Let ``ns`` of virtual time pass with no frame (a paced loop's period); return the new time."""
        if ns < 0:
            raise ValueError("virtual time does not run backwards")
        self.now_ns += ns
        return self.now_ns


class WallClock:
    """Real time, for the threaded engine and real back ends."""

    def stamp(self, lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return np.full(lengths.size, time.time_ns(), dtype=np.int64)
