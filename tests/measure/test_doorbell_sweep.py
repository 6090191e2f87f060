"""A sweep: every mode and batch size repeated, interleaved; stopping early keeps what was measured."""

from __future__ import annotations

import itertools

import pytest

from measure.doorbell import sweep
from verifier.modes.protection import Protection


def test_every_mode_and_size_is_measured_repeats_times_and_fitted() -> None:
    result = sweep(list(Protection), [1, 4, 32], repeats=3)
    assert result.stopped is None and result.rounds == 3
    assert result.doorbells == 4 * 3 * 3
    for samples in result.modes.values():
        assert samples.batches() == [1, 4, 32]
        assert all(len(s) == 3 and min(s) > 0 for s in samples.samples.values())
        fit = samples.fit()
        assert fit is not None and fit.a > 0 and fit.relative_rms >= 0


def test_a_stop_request_ends_the_sweep_and_keeps_what_was_measured() -> None:
    asked = itertools.count()
    result = sweep([Protection.NONE, Protection.VERIFIER], [1, 2, 8], repeats=50,
                   should_stop=lambda: "SIGINT" if next(asked) >= 7 else None)  # fmt: skip
    assert result.stopped == "SIGINT"
    assert result.doorbells == 7
    assert result.rounds == 1  # one round is 2 modes x 3 sizes = 6 doorbells
    assert result.modes[Protection.NONE].fit() is not None


def test_a_time_budget_ends_the_sweep() -> None:
    result = sweep([Protection.NONE], [1, 2], repeats=10**6, budget_s=0.2)
    assert result.stopped == "time budget"
    assert result.rounds >= 1  # the first round always completes: every point has a sample
    assert 2 <= result.doorbells < 10**6


def test_nothing_to_measure_is_refused() -> None:
    with pytest.raises(ValueError):
        sweep([], [1, 2])
    with pytest.raises(ValueError):
        sweep([Protection.NONE], [1, 2], repeats=0)
