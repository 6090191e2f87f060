"""The batch tuner as a controller alone: it climbs to an interior optimum, stays in bounds, refuses nonsense."""

from __future__ import annotations

import math

import pytest

from driver.tenant.tuner import BatchTuner, Role, TunerConfig


def serial_round(batch: int, fixed: float = 8.0, per_frame: float = 1.4) -> tuple[float, float]:
    """Throughput (frames per µs x 1000) and latency (µs) of rounds costing ``fixed + batch * per_frame`` µs."""
    t = fixed + batch * per_frame
    return batch / t * 1000, t


def drive(tuner: BatchTuner, periods: int, model=serial_round) -> None:  # type: ignore[no-untyped-def]
    for _ in range(periods):
        tuner.feed(*model(tuner.batch))


def best_fixed(lam: float, high: int, model=serial_round) -> int:  # type: ignore[no-untyped-def]
    return max(range(1, high + 1), key=lambda b: model(b)[0] - lam * model(b)[1])


@pytest.mark.parametrize("start", [1, 32, 500])
def test_climbs_to_the_interior_optimum_from_either_side(start: int) -> None:
    tuner = BatchTuner(TunerConfig(lam=1.0, high=511, start=start))
    drive(tuner, 90)
    best = best_fixed(1.0, 511)
    assert 1 < best < 511  # the utility's optimum is interior here
    assert abs(tuner.current - best) <= 0.1 * best


def test_a_cycle_is_hold_then_a_probe_above_and_one_below() -> None:
    tuner = BatchTuner(TunerConfig(lam=1.0, start=20, hold=2))
    drive(tuner, 8)
    roles = [s.role for s in tuner.trajectory]
    assert roles[:4] == [Role.HOLD, Role.HOLD, Role.UP, Role.DOWN]
    up, down = tuner.trajectory[2], tuner.trajectory[3]
    assert down.batch < tuner.trajectory[0].batch < up.batch
    assert up.utility == pytest.approx(up.throughput - up.p99)


def test_lambda_zero_climbs_to_the_upper_bound_and_stays_within_it() -> None:
    tuner = BatchTuner(TunerConfig(lam=0.0, high=64, start=2))
    drive(tuner, 60)
    assert tuner.current == 64
    assert all(1 <= s.batch <= 64 for s in tuner.trajectory)


def test_a_large_lambda_goes_down_to_one() -> None:
    tuner = BatchTuner(TunerConfig(lam=1000.0, high=511, start=100))
    drive(tuner, 60)
    assert tuner.current == 1
    assert all(s.batch >= 1 for s in tuner.trajectory)


def test_the_minimum_step_keeps_it_moving_on_a_flat_gradient() -> None:
    """A utility whose slope is tiny still moves the batch by at least min_step per cycle."""
    tuner = BatchTuner(TunerConfig(lam=0.0, start=100, min_step=0.1, high=4096))
    drive(tuner, 3, model=lambda b: (1e6 + b * 1e-9, 0.0))
    assert math.log(tuner.current / 100) == pytest.approx(0.1, abs=0.01)


def test_it_follows_a_moving_optimum() -> None:
    tuner = BatchTuner(TunerConfig(lam=1.0, high=511, start=32))
    drive(tuner, 60)
    slow = lambda b: serial_round(b, per_frame=4.0)  # noqa: E731
    drive(tuner, 60, model=slow)
    best = best_fixed(1.0, 511, model=slow)
    assert best < best_fixed(1.0, 511) / 2
    assert abs(tuner.current - best) <= 0.1 * best


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lam": -1.0},
        {"lam": math.nan},
        {"lam": 1.0, "low": 0},
        {"lam": 1.0, "low": 10, "high": 5},
        {"lam": 1.0, "start": 5000},
        {"lam": 1.0, "probe": 0.0},
        {"lam": 1.0, "min_step": 2.0, "max_step": 1.0},
        {"lam": 1.0, "hold": -1},
    ],
)
def test_nonsense_configuration_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TunerConfig(**kwargs)  # type: ignore[arg-type]


def test_a_non_finite_measurement_is_refused() -> None:
    tuner = BatchTuner(TunerConfig(lam=1.0))
    with pytest.raises(ValueError):
        tuner.feed(math.inf, 1.0)


def test_one_possible_batch_is_held() -> None:
    tuner = BatchTuner(TunerConfig(lam=1.0, low=7, high=7, start=7))
    drive(tuner, 9)
    assert {s.batch for s in tuner.trajectory} == {7}


def test_a_flat_utility_steps_down_by_the_minimum() -> None:
    tuner = BatchTuner(TunerConfig(lam=1.0, start=100, hold=0))
    for _ in range(10):
        tuner.feed(400.0, 1900.0)  # a plateau: every batch measures the same U
    assert tuner.current == round(100 * math.exp(-0.05 * 5))  # five probe pairs, five minimum steps down
