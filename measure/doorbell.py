"""What a doorbell costs, per protection mode: many timed doorbells per batch size, and the line through them.

A *sweep* builds one machine per protection mode (measure/doorbell_rig.py)
and times the tail write for every batch size, ``repeats`` times each.  The
order is interleaved so that a neighbour's burst of load on a shared machine
lands on every mode and every size alike: each round visits every mode, and
within a mode the batch sizes in a fresh random order.  Before the first
round each rig does one untimed warm-up pass over every size (the first
calls fill caches and numpy's allocator, and would be an outlier), and
every timed doorbell follows an untimed one of the same size, as in a
stream of batches of ``n``: what the last size's batch left in the caches
(4096 frames gathered evict a lot) does not land on this size.  The
garbage collector is off while the clock runs (a collection is the
interpreter's, not the doorbell's), and each point is the *median* of its
repeats, which an occasional preemption on a shared core does not move.

The sweep stops early, keeping what it has, when its time budget (counted
from the start, machines built included) runs out after the first round,
which always completes so every point has a sample, or at once when
``should_stop`` says so (Ctrl-C, SIGTERM): the fit then uses the batch sizes
measured at least once.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from measure.doorbell_rig import DoorbellRig
from measure.linear_fit import FitError, LinearFit, fit_cost
from verifier.modes.protection import Protection

DEFAULT_MAX_BATCH = 4096
DEFAULT_REPEATS = 31


@dataclass
class ModeSamples:
    """Every timed doorbell of one protection mode, in ns, by batch size."""

    protection: Protection
    samples: dict[int, list[int]] = field(default_factory=dict)

    def batches(self) -> list[int]:
        """The batch sizes measured at least once, smallest first."""
        return sorted(n for n, s in self.samples.items() if s)

    def median(self, n: int) -> float:
        return float(np.median(self.samples[n]))

    def quartiles(self, n: int) -> tuple[float, float]:
        q1, q3 = np.percentile(self.samples[n], [25, 75])
        return float(q1), float(q3)

    def fit(self) -> LinearFit | None:
        """``cost(n) = a + b·n`` through the medians (None: fewer than two batch sizes measured)."""
        batches = self.batches()
        try:
            return fit_cost(batches, [self.median(n) for n in batches])
        except FitError:
            return None


@dataclass
class Sweep:
    """A sweep's settings and what it measured; ``stopped`` says why it ended early (None: it finished)."""

    sizes: list[int]
    repeats: int
    with_device: bool
    compiled: bool
    modes: dict[Protection, ModeSamples]
    rounds: int = 0  # complete rounds
    seconds: float = 0.0
    stopped: str | None = None

    @property
    def doorbells(self) -> int:
        return sum(len(s) for m in self.modes.values() for s in m.samples.values())


def sweep(
    modes: Sequence[Protection],
    sizes: Sequence[int],
    repeats: int = DEFAULT_REPEATS,
    *,
    with_device: bool = False,
    budget_s: float | None = None,
    should_stop: Callable[[], str | None] = lambda: None,
    seed: int = 1,
) -> Sweep:
    """Time ``repeats`` doorbells per mode and batch size (see the module's docstring); stop early on demand."""
    if not modes or not sizes or repeats < 1:
        raise ValueError("a sweep needs a mode, a batch size and a repeat at least")
    order = random.Random(seed)
    start = time.perf_counter()
    rigs: dict[Protection, DoorbellRig] = {}
    result: Sweep | None = None
    try:
        for mode in modes:
            rigs[mode] = DoorbellRig(mode, max(sizes), with_device=with_device)
        first = next(iter(rigs.values()))
        result = Sweep(list(sizes), repeats, with_device, first.compiled, {m: ModeSamples(m) for m in modes})
        for rig in rigs.values():  # warm-up, untimed
            for n in sizes:
                rig.time_one(n)
        collecting = gc.isenabled()
        gc.collect()
        gc.disable()
        try:
            result.stopped = _rounds(result, rigs, order, start, budget_s, should_stop)
        finally:
            if collecting:
                gc.enable()
    except KeyboardInterrupt:  # a second Ctrl-C: keep what was measured, say so
        if result is None:
            raise
        result.stopped = "interrupted"
    finally:
        for rig in rigs.values():
            rig.close()
    result.seconds = time.perf_counter() - start
    return result


def _rounds(
    result: Sweep,
    rigs: dict[Protection, DoorbellRig],
    order: random.Random,
    start: float,
    budget_s: float | None,
    should_stop: Callable[[], str | None],
) -> str | None:
    """Run the rounds into ``result``; why they stopped early, or None."""
    for _ in range(result.repeats):
        for mode, rig in rigs.items():
            samples = result.modes[mode].samples
            shuffled = list(result.sizes)
            order.shuffle(shuffled)
            for n in shuffled:
                reason = should_stop()
                late = budget_s is not None and result.rounds > 0 and time.perf_counter() - start > budget_s
                if reason is None and late:
                    reason = "time budget"
                if reason is not None:
                    return reason
                rig.time_one(n)  # untimed: the one before, as in a stream of batches of n
                samples.setdefault(n, []).append(rig.time_one(n))
        result.rounds += 1
    return None
