"""cost(n) = a + b·n by least squares on relative error: exact lines, noisy lines, refusals, the batch sizes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from measure.linear_fit import FitError, fit_cost, log_spaced


def test_an_exact_line_is_found_with_zero_residuals() -> None:
    n = np.array([1, 2, 4, 64, 4096])
    fit = fit_cost(n, 9000 + 8.5 * n)
    assert fit.a == pytest.approx(9000)
    assert fit.b == pytest.approx(8.5)
    assert np.allclose(fit.residual, 0, atol=1e-6)
    assert fit.relative_rms == pytest.approx(0, abs=1e-12)
    assert fit.crossover == pytest.approx(9000 / 8.5)
    assert fit.per_descriptor(np.array([1.0, 9000 / 8.5])) == pytest.approx([9008.5, 17.0])


def test_relative_weighting_keeps_the_small_batches_in_the_fit() -> None:
    """A 10% miss at the largest batch moves a little; an ordinary fit would let it decide a alone."""
    n = np.array(log_spaced(4096), dtype=float)
    cost = 5000 + 2.0 * n
    cost[-1] *= 1.10
    fit = fit_cost(n, cost)
    assert fit.a == pytest.approx(5000, rel=0.02)
    ordinary = np.linalg.lstsq(np.column_stack((np.ones_like(n), n)), cost, rcond=None)[0]
    assert abs(fit.a - 5000) < abs(ordinary[0] - 5000)
    assert fit.relative_residual[-1] > 0.05  # the outlier shows in its residual
    assert 0 < fit.relative_rms < 0.05


def test_no_crossover_without_a_positive_cost_per_descriptor() -> None:
    fit = fit_cost([1, 10, 100], [100.0, 100.0, 100.0])
    assert fit.b == pytest.approx(0, abs=1e-9)
    assert fit.crossover is None
    assert fit_cost([1, 10, 100], [300.0, 200.0, 100.0]).crossover is None  # falling: b < 0


@pytest.mark.parametrize(
    ("batch", "cost"),
    [([1, 1, 1], [1.0, 2.0, 3.0]), ([1, 2], [1.0, 0.0]), ([1, 2], [1.0, math.nan]), ([1, 2, 3], [1.0, 2.0]), ([], [])],
)
def test_points_that_cannot_make_a_line_are_refused(batch: list[int], cost: list[float]) -> None:
    with pytest.raises(FitError):
        fit_cost(batch, cost)


def test_log_spaced_sizes() -> None:
    sizes = log_spaced(4096)
    assert sizes[0] == 1 and sizes[-1] == 4096
    assert sizes == sorted(set(sizes))
    assert 2 * 12 <= len(sizes) <= 2 * 12 + 1  # two per doubling
    assert all(b / a <= 2.0 for a, b in itertools.pairwise(sizes))
    assert log_spaced(2) == [1, 2] and log_spaced(1) == [1]
    assert log_spaced(100)[-1] == 100
    with pytest.raises(ValueError):
        log_spaced(0)
