"""One measurement period: frames completed, their latencies, and the throughput and p99 they make.

A period is what the batch tuner judges a batch by.  Throughput is frames
completed per second of the period's clock; latency is per frame, from the
doorbell that posted it to its completion, and a period's latency figure is
its 99th percentile (nearest rank: a latency some frame really had), the
tail a user of a service notices rather than the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class PeriodResult:
    """What one period measured; throughput in thousands of frames per second, latency in microseconds."""

    frames: int
    elapsed_ns: int
    p99_us: float

    @property
    def kpps(self) -> float:
        return self.frames / self.elapsed_ns * 1e6 if self.elapsed_ns else 0.0


@dataclass
class PeriodMeter:
    """Collects one period's completions; :meth:`result` closes it at a time on the same clock."""

    start_ns: int
    _latencies: list[npt.NDArray[np.int64]] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(int(a.size) for a in self._latencies)

    def completed(self, latencies_ns: npt.NDArray[np.int64]) -> None:
        """Frames completed, each with its doorbell-to-completion latency in ns."""
        if latencies_ns.size:
            self._latencies.append(np.asarray(latencies_ns, dtype=np.int64))

    def result(self, now_ns: int) -> PeriodResult:
        lat = np.concatenate(self._latencies) if self._latencies else np.zeros(0, dtype=np.int64)
        p99 = float(np.percentile(lat, 99, method="inverted_cdf")) / 1e3 if lat.size else 0.0
        return PeriodResult(int(lat.size), now_ns - self.start_ns, p99)
