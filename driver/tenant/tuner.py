"""A batch size that tunes itself: gradient ascent on a utility, by probing either side of the current value.

A user-space driver chooses how many frames it hands the NIC per doorbell.
A larger burst spreads the doorbell's fixed cost (the trap into the kernel,
the verifier's snapshot and check) over more frames, so throughput rises,
with diminishing returns; but each frame now waits for a longer burst, so
latency rises too, about linearly.  Which burst is best depends on the
workload (frame size, how fast the consumer is) and on how much a
microsecond of latency is worth against a thousand frames a second.  The
seed's answer (../shared/design/CONTEXT.md, "Self-tuning") is the one
feedback controllers such as TCP's or io_uring users' adaptive batching
take: do not model the system, measure it.  Every few periods run one
period slightly above the current batch and one slightly below, estimate
the gradient of the utility

    U = throughput - lambda * latency_p99

by the finite difference of the two, and step up the gradient.  Steps are
taken on ``ln(batch)``: doubling from 2 to 4 and from 200 to 400 are the
same move, so one step size serves small and large batches alike.  The
gradient is divided by the size of U, making it dimensionless (a relative
gain in U per unit of ``ln(batch)``), so the same ``gain`` works whatever
the units of U; a step is at least ``min_step`` (the controller keeps
probing and can follow a workload that changes) and at most ``max_step``
(one noisy period cannot throw it across the range), and the batch stays
within ``[low, high]``.

This module only decides: it knows nothing of rings, clocks or NICs.  A
loop asks :attr:`BatchTuner.batch`, runs one period with it, and hands the
period's throughput and p99 latency to :meth:`BatchTuner.feed`, which
returns the batch for the next period.  The units of throughput and
latency are the caller's; ``lam`` is in throughput units per latency unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum


class Role(Enum):
    """What a period was for: running at the current batch, or probing above or below it."""

    HOLD = "hold"
    UP = "probe+"
    DOWN = "probe-"


@dataclass(frozen=True)
class TunerConfig:
    """The controller's knobs; every one has a sane default but ``lam``."""

    lam: float  # weight of latency in U: throughput units per latency unit
    low: int = 1  # smallest batch
    high: int = 4096  # largest batch
    start: int = 32  # first batch
    probe: float = 0.2  # probes at batch * e^(+-probe): about 22% above and 18% below
    gain: float = 2.0  # step in ln(batch) per unit of normalised gradient
    min_step: float = 0.05  # smallest step in ln(batch) (5%)
    max_step: float = 0.7  # largest step in ln(batch) (x2)
    hold: int = 1  # periods at the current batch between two probe pairs

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"lambda must be a finite number >= 0, got {self.lam}")
        if not 1 <= self.low <= self.high:
            raise ValueError(f"batch bounds must satisfy 1 <= low <= high, got {self.low}..{self.high}")
        if not self.low <= self.start <= self.high:
            raise ValueError(f"first batch {self.start} is outside {self.low}..{self.high}")
        for name in ("probe", "gain", "min_step", "max_step"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if self.min_step > self.max_step:
            raise ValueError(f"min_step {self.min_step} exceeds max_step {self.max_step}")
        if self.hold < 0:
            raise ValueError(f"hold must be >= 0, got {self.hold}")


@dataclass(frozen=True)
class Sample:
    """One period of the trajectory: which batch ran, why, and what it measured."""

    period: int
    role: Role
    batch: int
    throughput: float
    p99: float
    utility: float


@dataclass
class BatchTuner:
    """Online gradient ascent of ``U = throughput - lam * p99`` over the batch size (see the module's docstring)."""

    config: TunerConfig
    trajectory: list[Sample] = field(default_factory=list)
    _x: float = field(init=False)  # ln of the current batch: kept continuous, so small steps add up
    _plan: list[Role] = field(init=False)
    _probes: dict[Role, Sample] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._x = math.log(self.config.start)
        self._plan = self._cycle()

    # -- the interface a loop uses ----------------------------------------------------------------
    @property
    def batch(self) -> int:
        """The batch to run the next period with."""
        return self._batch_for(self._plan[0])

    @property
    def current(self) -> int:
        """The batch the controller currently believes best (the one it holds between probes)."""
        return self._clamp(round(math.exp(self._x)))

    def utility(self, throughput: float, p99: float) -> float:
        return throughput - self.config.lam * p99

    def feed(self, throughput: float, p99: float) -> int:
        """Record the period just run at :attr:`batch`; return the batch for the next one."""
        if not (math.isfinite(throughput) and math.isfinite(p99)):
            raise ValueError(f"a period's measurements must be finite, got throughput {throughput}, p99 {p99}")
        role = self._plan.pop(0)
        sample = Sample(
            len(self.trajectory), role, self._batch_for(role), throughput, p99, self.utility(throughput, p99)
        )
        self.trajectory.append(sample)
        if role is not Role.HOLD:
            self._probes[role] = sample
        if not self._plan:
            self._step()
            self._plan = self._cycle()
        return self.batch

    # -- the method -------------------------------------------------------------------------------
    def _cycle(self) -> list[Role]:
        return [Role.HOLD] * self.config.hold + [Role.UP, Role.DOWN]

    def _clamp(self, batch: int) -> int:
        return max(self.config.low, min(self.config.high, batch))

    def _batch_for(self, role: Role) -> int:
        """The current batch, or a probe: at least one away from it, so the difference is never 0/0."""
        now, probe = self.current, self.config.probe
        if role is Role.UP:
            return self._clamp(max(now + 1, round(math.exp(self._x + probe))))
        if role is Role.DOWN:
            return self._clamp(min(now - 1, round(math.exp(self._x - probe))))
        return now

    def _step(self) -> None:
        """One gradient step on ln(batch) from the last two probes (none if both ran at the same batch)."""
        up, down = self._probes.pop(Role.UP), self._probes.pop(Role.DOWN)
        if up.batch == down.batch:  # low == high: nothing to tune
            return
        slope = (up.utility - down.utility) / (math.log(up.batch) - math.log(down.batch))
        scale = max(abs(up.utility), abs(down.utility))
        # U flat: a bigger batch buys nothing here (a plateau, where a queue behind a slower stage is full
        # whatever the batch), and the smaller one is no worse: step down by the minimum
        step = self.config.gain * slope / scale if slope != 0 and scale != 0 else -self.config.min_step
        size = min(self.config.max_step, max(self.config.min_step, abs(step)))
        lo, hi = math.log(self.config.low), math.log(self.config.high)
        self._x = min(hi, max(lo, self._x + math.copysign(size, step)))
