"""The forwarder's burst tunes itself (issue 14 §3, forward): against an exhaustive sweep, in virtual time.

Deterministic: the forward demo runs on the inline engine's virtual clock,
so the same run gives the same numbers and no assertion is about wall time.
"""

from __future__ import annotations

import statistics

import pytest

from driver.tenant.tuner import BatchTuner, Role, TunerConfig
from measure.forward import Policy
from measure.forward_tuned import SweepBatches, TunedBatch, utility
from sandbox.commands.forward_tuned import MAX_STEP, PROBE, SETTLE, SPAN
from sandbox.demos import forward
from world import scenario

RATE, CONSUMER, SLOWER, PERIOD_NS, LAM = 1_000_000.0, 400_000.0, 250_000.0, 100_000, 1.0


@pytest.fixture(scope="module")
def scen() -> scenario.Scenario:
    return scenario.load(None, embedded="forward")


def frames(spans: int) -> int:
    return int(RATE * spans * (SETTLE + SPAN) * PERIOD_NS / 1e9)


def sweep(scen: scenario.Scenario, consumer: float, batches: list[int]) -> SweepBatches:
    s = SweepBatches(batches, SPAN, SETTLE)
    forward.run(
        scen, [Policy.BACKPRESSURE], frames(len(batches)), 64, RATE, consumer, s.as_factory(), period_ns=PERIOD_NS
    )
    assert s.done
    return s


def tune(scen: scenario.Scenario, periods: int, slow_at: int | None = None) -> TunedBatch:
    config = TunerConfig(lam=LAM, low=1, high=255, start=32, probe=PROBE, max_step=MAX_STEP)
    tuned = TunedBatch(BatchTuner(config), SPAN, periods, SETTLE)
    slow = None if slow_at is None else (slow_at * (SETTLE + SPAN), SLOWER)
    forward.run(
        scen, [Policy.BACKPRESSURE], frames(periods), 64, RATE, CONSUMER, lambda: tuned,
        period_ns=PERIOD_NS, slow_down=slow,
    )  # fmt: skip
    assert tuned.done
    return tuned


def held(tuned: TunedBatch, first: int, last: int) -> list[int]:
    return [s.batch for s in tuned.tuner.trajectory[first:last] if s.role is Role.HOLD]


def test_the_optimum_is_the_knee_and_the_tuner_finds_it(scen: scenario.Scenario) -> None:
    # exhaustive enough: every batch from 1 to twice the knee (above it the rings fill and U only falls)
    best, result = sweep(scen, CONSUMER, list(range(1, 81))).best(LAM)
    assert best == pytest.approx(CONSUMER * PERIOD_NS / 1e9, rel=0.1)  # the knee: consumer rate x period = 40
    assert result.kpps == pytest.approx(CONSUMER / 1e3, rel=0.1)
    tuned = tune(scen, 36)
    late = held(tuned, 24, 36)
    assert late and all(abs(b - best) <= 0.1 * best for b in late), (late, best)


def test_a_slower_consumer_moves_the_optimum_and_the_tuner_follows(scen: scenario.Scenario) -> None:
    before = sweep(scen, CONSUMER, list(range(30, 46))).best(LAM)[0]
    after = sweep(scen, SLOWER, list(range(18, 34))).best(LAM)[0]
    assert after < before * 0.75  # the knee moved from 40 to 25
    tuned = tune(scen, 66, slow_at=30)
    assert abs(statistics.median(held(tuned, 20, 30)) - before) <= 0.1 * before
    late = held(tuned, 54, 66)
    assert late and all(abs(b - after) <= 0.1 * after for b in late), (late, after)


def test_a_sweep_point_is_the_same_measurement_as_a_tuner_period(scen: scenario.Scenario) -> None:
    s = sweep(scen, CONSUMER, [20, 40])
    (b20, r20), (b40, r40) = s.points
    assert (b20, b40) == (20, 40)
    assert r20.kpps == pytest.approx(200.0) and r40.kpps == pytest.approx(400.0)  # below the knee: batch / period
    assert r20.p99_us > r40.p99_us > 0  # the forwarder's queue drains slower with the smaller burst
    assert utility(r40, LAM) > utility(r20, LAM)
