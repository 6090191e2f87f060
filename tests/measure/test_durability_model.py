"""The group-commit latency model on inputs whose answer is known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from measure.durability import expected_wait, nearest_size, predict, simulate


def test_one_record_per_group_never_waits() -> None:
    assert expected_wait(1000.0, 1, 0.01) == (0.0, 1.0)


def test_without_an_interval_a_record_waits_half_the_fill_time() -> None:
    wait, group = expected_wait(500.0, 101, math.inf)
    assert wait == pytest.approx(100 / (2 * 500.0)) and group == 101


def test_two_record_groups_match_the_hand_derivation() -> None:
    # first record at 0, second after X ~ Exp(λ): the group's waits add up to min(X, T); it holds 2 records if X < T
    rate, t = 200.0, 0.004
    p = 1 - math.exp(-rate * t)
    wait, group = expected_wait(rate, 2, t)
    assert group == pytest.approx(1 + p)
    assert wait == pytest.approx((p / rate) / (1 + p))


def test_a_trickle_waits_the_whole_interval() -> None:
    wait, group = expected_wait(0.01, 64, 0.02)
    assert wait == pytest.approx(0.02, rel=1e-3) and group == pytest.approx(1.0, abs=1e-3)


def test_a_flood_fills_the_group_long_before_the_interval() -> None:
    wait, group = expected_wait(1e6, 16, 1.0)
    assert group == pytest.approx(16.0) and wait == pytest.approx(15 / 2e6)


@pytest.mark.parametrize(("rate", "records", "interval"), [(1000.0, 16, 0.02), (10000.0, 256, 0.02), (50.0, 8, 0.005)])
def test_the_simulation_agrees_with_the_closed_form(rate: float, records: int, interval: float) -> None:
    wait, _ = expected_wait(rate, records, interval)
    assert float(np.mean(simulate(rate, records, interval, None, count=50_000))) == pytest.approx(wait, rel=0.05)


def test_prediction_adds_the_measured_fsync_and_says_the_load() -> None:
    fsync = {1: np.full(10, 0.004), 16: np.full(10, 0.006)}
    p = predict(1000.0, 16, math.inf, fsync)
    assert p.wait_s == pytest.approx(15 / 2000) and p.fsync_s == pytest.approx(0.006)
    assert p.mean_s == pytest.approx(15 / 2000 + 0.006)
    assert p.load == pytest.approx(1000 / 16 * 0.006)
    assert p.p50_s < p.p99_s and p.p99_s > 0.006 + 15 / 1000  # the first of a group waits Gamma(15, λ): mean 15 ms
    assert nearest_size(fsync, 3.0) == 1 and nearest_size(fsync, 5.0) == 16


def test_bad_inputs_are_refused() -> None:
    for args in ((0.0, 4, 0.01), (math.nan, 4, 0.01), (10.0, 0, 0.01), (10.0, 4, 0.0)):
        with pytest.raises(ValueError):
            expected_wait(*args)
