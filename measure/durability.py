"""The durability-latency model of group commit: how long a record waits before it is on disk.

A log that fsyncs once per group (``verifier/audit/durability.py``: after N
records or once the oldest has waited T, whichever comes first) makes each
record wait twice: first for its group to close -- for N - 1 more records to
arrive, or for the interval to run out -- and then for the fsync that covers
the group.  As the seed's chapter on asynchronous I/O puts it, the expected
durability latency of a record is

    E[latency] = E[wait for its group to close] + E[fsync time].

Records arrive as a Poisson stream of rate λ (independent refusals, as in
the M/G/1 models of disk queues).  A group opens with a record at time 0;
``A(s)`` = 1 + Poisson(λs) records have arrived by time s; the group closes
at W = min(T, time of the N-th arrival).  Every record waits from its arrival
to W, so the waits of one group add up to ∫₀^W A(s) ds, and by the
renewal-reward theorem the mean wait per record is

    E[wait] = E[Σ waits of a group] / E[records in a group]
    E[Σ]    = ∫₀^T Σ_{k=0}^{N-2} (1+k) P(Poisson(λs) = k) ds
            = (1/λ) Σ_{k=0}^{N-2} (1+k) P(Poisson(λT) ≥ k+1)
    E[size] = E[min(1 + Poisson(λT), N)] = 1 + Σ_{k=0}^{N-2} P(Poisson(λT) ≥ k+1)

using ∫₀^T P(Poisson(λs) = k) ds = P(Gamma(k+1, λ) ≤ T)/λ.  Two limits
check it: with no interval (T → ∞) a record waits (N − 1)/(2λ) on average
(half the time a group takes to fill); with a trickle (λT ≪ 1) every group
is one record and it waits T.

The percentiles (p50, p99) come from the same abstraction simulated
(``simulate``: a seeded Poisson stream cut into groups by the same rule,
each group's fsync drawn from the fsync times measured on this disk), whose
mean agrees with the closed form.  The abstraction leaves out what the
measurement sees: records that arrive while an fsync runs wait for the lock
behind it and then come in a burst, which fills the next group faster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["FsyncTimes", "Prediction", "expected_wait", "predict", "simulate"]

#: Fsync times measured on this disk, in seconds, by group size in records (``measure.durability_disk``).
FsyncTimes = Mapping[int, npt.NDArray[np.float64]]
#: Records the model's simulation follows per setting (for its p50/p99).
SIMULATED_RECORDS = 100_000


def _poisson_sf(mu: float, count: int) -> npt.NDArray[np.float64]:
    """``P(Poisson(mu) >= k + 1)`` for k = 0 .. count - 1, in log space (no underflow for large ``mu``)."""
    if count <= 0:
        return np.zeros(0)
    k = np.arange(count, dtype=np.float64)
    log_fact = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, count, dtype=np.float64)))))
    log_pmf = k * math.log(mu) - mu - log_fact if mu > 0 else np.where(k == 0, 0.0, -np.inf)
    cdf = np.cumsum(np.exp(log_pmf))
    return np.clip(1.0 - cdf, 0.0, 1.0)


def expected_wait(rate: float, records: int, interval_s: float) -> tuple[float, float]:
    """``(mean wait of a record for its group to close, mean records per group)``, in seconds and records.

    ``rate``: records per second (> 0); ``records``: N, the group's size
    limit (>= 1); ``interval_s``: T, the longest the first record of a
    group waits (``math.inf``: no limit).
    """
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError(f"rate must be a positive number of records per second, got {rate}")
    if records < 1:
        raise ValueError(f"records must be at least 1, got {records}")
    if not interval_s > 0:
        raise ValueError(f"interval must be positive, got {interval_s}")
    if math.isinf(interval_s):
        return (records - 1) / (2.0 * rate), float(records)
    sf = _poisson_sf(rate * interval_s, records - 1)
    total = float(np.sum((1.0 + np.arange(records - 1)) * sf)) / rate
    size = 1.0 + float(np.sum(sf))
    return total / size, size


def nearest_size(calibrated: FsyncTimes, group: float) -> int:
    """The calibrated group size closest to ``group`` on a log scale (fsync time grows with the bytes written)."""
    sizes = sorted(calibrated)
    if not sizes:
        raise ValueError("no fsync times measured")
    return min(sizes, key=lambda s: abs(math.log(s) - math.log(max(group, 1.0))))


@dataclass(frozen=True)
class Prediction:
    """What the model says of one setting (seconds): mean from the closed form, percentiles from ``simulate``."""

    rate: float  # records per second offered
    records: int  # N
    interval_s: float  # T
    group: float  # mean records per fsync
    wait_s: float  # mean wait for the group to close
    fsync_s: float  # mean fsync time of a group that size, measured
    mean_s: float  # wait_s + fsync_s
    p50_s: float
    p99_s: float

    @property
    def fsyncs_per_s(self) -> float:
        return self.rate / self.group

    @property
    def load(self) -> float:
        """The disk's utilisation ρ = fsyncs per second × fsync time: at 1 or more it cannot keep up.

        The writer then blocks on fsync and records come in only as fast as
        groups are synced (``group / fsync_s`` per second); the model, which
        assumes the stream is not held up, no longer describes the run.
        """
        return self.fsyncs_per_s * self.fsync_s


def predict(rate: float, records: int, interval_s: float, fsync: FsyncTimes, seed: int = 1) -> Prediction:
    """The model's latency for one setting, with the fsync times measured on this disk."""
    wait, group = expected_wait(rate, records, interval_s)
    fsync_s = float(np.mean(fsync[nearest_size(fsync, group)]))
    latencies = simulate(rate, records, interval_s, fsync, seed=seed)
    p50, p99 = np.percentile(latencies, [50, 99])
    return Prediction(rate, records, interval_s, group, wait, fsync_s, wait + fsync_s, float(p50), float(p99))


def simulate(
    rate: float,
    records: int,
    interval_s: float,
    fsync: FsyncTimes | None,
    count: int = SIMULATED_RECORDS,
    seed: int = 1,
) -> npt.NDArray[np.float64]:
    """Latencies of ``count`` Poisson records cut into groups (N records or T seconds), plus a measured fsync each.

    ``fsync`` None: the wait alone (what ``expected_wait`` gives the mean of).
    Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, count))
    close = np.empty(count)
    sizes: list[int] = []
    start = 0
    while start < count:
        last = min(start + records, count) - 1  # the N-th record of the group, if it comes in time
        deadline = arrivals[start] + interval_s
        if arrivals[last] <= deadline:
            end, shut = last + 1, arrivals[last]
        else:
            end = int(np.searchsorted(arrivals, deadline, side="right"))
            shut = deadline
        close[start:end] = shut
        sizes.append(end - start)
        start = end
    waits = close - arrivals
    if fsync is None:
        return waits
    group_sizes = np.asarray(sizes)
    syncs = np.empty(len(group_sizes))
    for size in np.unique(group_sizes):
        chosen = group_sizes == size
        samples = fsync[nearest_size(fsync, float(size))]
        syncs[chosen] = rng.choice(samples, int(chosen.sum()))
    return waits + np.repeat(syncs, group_sizes)
