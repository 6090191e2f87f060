"""The tuner's clock and periods: virtual time that only declared costs and the 1 Gb/s wire move."""

from __future__ import annotations

import numpy as np
import pytest

from device.clock import WIRE_OVERHEAD_BYTES
from measure.cost_clock import CostClock
from measure.periods import PeriodMeter


def test_costs_add_up_in_virtual_nanoseconds() -> None:
    clock = CostClock(doorbell_ns=2000, consumer_ns=300)
    clock.doorbell()
    clock.send(np.array([60, 60], dtype=np.int64))  # two 64-byte frames (FCS excluded) on a 1 Gb/s wire
    clock.consume(2)
    wire = 2 * (60 + WIRE_OVERHEAD_BYTES) * 8
    assert clock.now_ns == 2000 + wire + 600
    assert clock.doorbells == 1


def test_negative_costs_are_refused() -> None:
    with pytest.raises(ValueError):
        CostClock(doorbell_ns=-1)


def test_a_period_reports_throughput_and_nearest_rank_p99() -> None:
    meter = PeriodMeter(start_ns=1000)
    meter.completed(np.arange(1, 101, dtype=np.int64) * 1000)  # latencies 1..100 µs
    meter.completed(np.zeros(0, dtype=np.int64))
    r = meter.result(now_ns=1000 + 1_000_000)  # 100 frames in 1 ms
    assert r.frames == 100
    assert r.kpps == pytest.approx(100.0)
    assert r.p99_us == 99.0


def test_an_empty_period_is_zero_not_nan() -> None:
    r = PeriodMeter(start_ns=0).result(now_ns=0)
    assert (r.frames, r.kpps, r.p99_us) == (0, 0.0, 0.0)
