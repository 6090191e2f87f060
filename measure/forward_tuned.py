"""The forwarder's burst size, tuned online: a :class:`BatchTuner` behind the forward demo's batch policy.

The forward demo (measure/forward.py) asks its batch policy for the
forwarder's burst once per period of virtual time, showing it the period
just run.  One such period is far too short to judge a batch by (a few
frames), so :class:`TunedBatch` gives the tuner a *span* of periods at
each batch it asks for and then feeds it what the span measured at the
consumer, the end of the path:

- throughput: frames the consumer took, in kpps (thousands of frames per
  virtual second);
- latency: the 99th percentile, in virtual µs, of source-send to
  consumer-take over every frame of the span (nearest rank, as
  :mod:`measure.periods` does for the pingpong).

U = throughput − λ·p99 is the same utility as the pingpong's, in the same
units (λ in kpps per µs).  Every number is virtual time: the inline
engine's clock advanced one period at a time; nothing here reads a wall
clock.

Why this knob has a best value: the forwarder does one burst per period,
so its capacity is ``batch / period``.  Below the consumer's rate × period
the forwarder is the bottleneck (throughput = batch / period, and the
frames it cannot take queue in its RX ring, whose latency is that
queue / throughput); above it the consumer is, and the surplus queues
*behind* the forwarder too (its TX ring, held by PAUSE, the consumer's
ring): throughput no longer grows but latency does.  The best batch is the
knee, consumer rate × period, for every λ > 0 (docs/async-io.md §3).

After ``periods`` spans the policy stops tuning and holds the batch it
believes best, so a run that drains its rings at the end does not feed the
tuner a consumer starved by the source having stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from driver.tenant.tuner import BatchTuner
from measure.forward import Period
from measure.periods import PeriodMeter, PeriodResult


@dataclass
class TunedBatch:
    """A :data:`measure.forward.BatchPolicy`: the tuner's batch for ``span`` periods at a time, ``periods`` times."""

    tuner: BatchTuner
    span: int  # forward periods measured per tuner period
    periods: int  # tuner periods to run; then hold the tuner's current batch
    settle: int = 0  # forward periods run at a new batch before its span is measured (the queues settle)
    _seen: int = 0
    _latencies: list[npt.NDArray[np.int64]] = field(default_factory=list)
    _period_ns: int = 0

    def __post_init__(self) -> None:
        if self.span < 1 or self.periods < 1:
            raise ValueError(f"span and periods must be >= 1, got {self.span} and {self.periods}")

    @property
    def done(self) -> bool:
        return len(self.tuner.trajectory) >= self.periods

    def __call__(self, last: Period | None) -> int:
        if last is None or self.done:
            return self.tuner.batch if not self.done else self.tuner.current
        if self._seen == 0:
            self._period_ns = last.t_ns // (last.index + 1)  # periods are equal: the clock advances one at a time
        self._seen += 1
        if self._seen > self.settle:
            self._latencies.append(last.latencies_ns)
        if self._seen == self.settle + self.span:
            result = _result(self._latencies, self.span, self._period_ns)
            self._seen, self._latencies = 0, []
            self.tuner.feed(result.kpps, result.p99_us)
        return self.tuner.batch if not self.done else self.tuner.current


@dataclass
class SweepBatches:
    """A batch policy that runs each of ``batches`` in turn, measured as :class:`TunedBatch` measures: the sweep."""

    batches: list[int]
    span: int
    settle: int = 0
    points: list[tuple[int, PeriodResult]] = field(default_factory=list)
    _seen: int = 0
    _latencies: list[npt.NDArray[np.int64]] = field(default_factory=list)
    _period_ns: int = 0

    @property
    def done(self) -> bool:
        return len(self.points) >= len(self.batches)

    def __call__(self, last: Period | None) -> int:
        if last is not None and not self.done:
            self._period_ns = last.t_ns // (last.index + 1)
            self._seen += 1
            if self._seen > self.settle:
                self._latencies.append(last.latencies_ns)
            if self._seen == self.settle + self.span:
                self.points.append(
                    (self.batches[len(self.points)], _result(self._latencies, self.span, self._period_ns))
                )
                self._seen, self._latencies = 0, []
        return self.batches[min(len(self.points), len(self.batches) - 1)]

    def as_factory(self) -> Callable[[], SweepBatches]:
        """For a runner that builds a policy per run: this sweep, every time."""
        return lambda: self

    def best(self, lam: float) -> tuple[int, PeriodResult]:
        return max(self.points, key=lambda p: utility(p[1], lam))


def utility(r: PeriodResult, lam: float) -> float:
    return r.kpps - lam * r.p99_us


def _result(latencies: list[npt.NDArray[np.int64]], span: int, period_ns: int) -> PeriodResult:
    """The span's throughput at the consumer (frames it took) and p99 of their latencies."""
    meter = PeriodMeter(0)
    for lat in latencies:
        meter.completed(lat)
    return meter.result(span * period_ns)
