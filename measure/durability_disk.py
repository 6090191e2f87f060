"""Durability latency measured on this disk: fsync times, and each record's wait until it is on disk.

Three measurements, all through the real ``AuditLog`` writing real files in
a directory the caller picks (the disk the audit log lives on):

* ``fsync_times`` -- how long the write + fsync of a group of k records
  takes, sampled for each k: the model's second term
  (``measure.durability``), measured rather than assumed;
* ``run_setting`` -- a Poisson stream of refusals at a given rate into a log
  with group commit (N records or T ms), one ``record()`` per refusal as the
  verifier makes them.  A record's latency runs from its own time stamp
  (``mono_ns``, read by the log as it makes the record: the write is
  acknowledged then) to the return of the fsync that covers it
  (``AuditLog.on_durable``);
* ``writer_rate`` -- the writer flat out (issue 12's "writer alone":
  ``record_batch`` of a doorbell's rejections, then ``commit``) under the same
  group commit: what a bigger group buys in throughput.

Every loop checks ``stop`` (Ctrl-C, SIGTERM) and keeps what it measured.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from measure.refusals import doorbell_batch, refusal
from verifier.audit.durability import GroupCommit
from verifier.audit.log import AuditLog, system_clock

__all__ = ["Measured", "Setting", "fsync_times", "run_setting", "writer_rate"]

Stop = Callable[[], bool]
#: Sleep (rather than spin) when the next arrival is further away than this; the sleep ends a little early.
SPIN_S = 0.0005
#: Check ``stop`` every this many records.
STOP_EVERY = 256


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Setting:
    """One point of the sweep: records per second offered, and the group commit they are written with."""

    rate: float
    group: GroupCommit

    @property
    def label(self) -> str:
        return f"{self.rate:g}/s, N={self.group.records}, T={self.group.interval_ms:g} ms"


@dataclass(frozen=True)
class Measured:
    """What one setting measured: every record's latency, and the fsyncs that made them durable."""

    setting: Setting
    latencies_s: npt.NDArray[np.float64]  # per record: durable (fsync returned) - written (its time stamp)
    fsyncs_s: npt.NDArray[np.float64]  # per group: write + fsync
    seconds: float  # from the first record to the last
    stopped: bool  # cut short by ``stop``

    @property
    def records(self) -> int:
        return int(self.latencies_s.size)

    @property
    def achieved_rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    @property
    def group(self) -> float:
        """Mean records per fsync."""
        return self.records / self.fsyncs_s.size if self.fsyncs_s.size else 0.0


class _Syncs:
    """``on_durable`` collector: which seq each fsync covered, when it returned, and how long it took."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.ends: list[int] = []
        self.took: list[int] = []

    def __call__(self, seq: int, start_ns: int, end_ns: int) -> None:
        self.seqs.append(seq)
        self.ends.append(end_ns)
        self.took.append(end_ns - start_ns)


def fsync_times(
    directory: Path, sizes: list[int], samples: int, seconds: float, stop: Stop = _never
) -> dict[int, npt.NDArray[np.float64]]:
    """Seconds of write + fsync of a group of k records, ``samples`` times per k (within ``seconds`` in all).

    Sizes take turns, so a disk that slows down over the run slows every
    size alike.  A size that got no sample (a stop before its turn) is left out.
    """
    record = refusal()
    found: dict[int, list[float]] = {k: [] for k in sizes}
    syncs = _Syncs()
    deadline = time.monotonic() + seconds
    with AuditLog(
        directory / "fsync.jsonl", "verifier", fsync="batch", max_bytes=None, rotate_bytes=None, on_durable=syncs
    ) as log:
        for _ in range(samples):
            for k in sizes:
                if stop() or (time.monotonic() > deadline and all(found.values())):
                    return _arrays(found)
                for _ in range(k):
                    log.record(record)
                log.commit()
                found[k].append(syncs.took[-1] / 1e9)
    return _arrays(found)


def _arrays(found: dict[int, list[float]]) -> dict[int, npt.NDArray[np.float64]]:
    return {k: np.asarray(v) for k, v in found.items() if v}


def run_setting(directory: Path, setting: Setting, seconds: float, seed: int = 1, stop: Stop = _never) -> Measured:
    """Write a Poisson stream of ``setting.rate`` refusals/s for ``seconds`` with its group commit; each latency.

    Arrivals follow a schedule drawn in advance (open loop): a writer held up
    by an fsync does not slow the stream down, the records it missed come
    right after.  A run whose writer falls behind (a saturated disk) ends at
    ``seconds`` all the same, with fewer records.  After the last record the
    run waits out the interval, so the last group is closed by its timer, as
    every other one was.
    """
    rng = np.random.default_rng(seed)
    count = max(1, int(setting.rate * seconds))
    arrivals = np.cumsum(rng.exponential(1.0 / setting.rate, count)).tolist()
    stamps: list[int] = []

    def clock() -> tuple[int, int]:
        wall, mono = system_clock()
        stamps.append(mono)
        return wall, mono

    syncs = _Syncs()
    record = refusal()
    stopped = False
    path = directory / f"setting-{seed}.jsonl"
    with AuditLog(
        path,
        "verifier",
        fsync="batch",
        max_bytes=None,
        rotate_bytes=None,
        clock=clock,
        group=setting.group,
        on_durable=syncs,
    ) as log:
        start = time.perf_counter()
        for i, due in enumerate(arrivals):
            if i % STOP_EVERY == 0 and stop():
                stopped = True
                break
            now = time.perf_counter() - start
            if now > seconds:  # behind schedule past the budget: the disk cannot keep up
                break
            ahead = due - now
            if ahead > SPIN_S:
                time.sleep(ahead - SPIN_S / 2)
            while time.perf_counter() - start < due:
                time.sleep(0)  # spin, but let go of the GIL: the log's timer thread must wake on time
            log.record(record)
        took = time.perf_counter() - start
        if not stopped:
            time.sleep(setting.group.interval_s + 0.005)  # the timer closes the last group
    path.unlink(missing_ok=True)
    written = np.asarray(stamps, dtype=np.int64)
    covered = np.asarray(syncs.seqs, dtype=np.int64)
    ends = np.asarray(syncs.ends, dtype=np.int64)
    which = np.searchsorted(covered, np.arange(written.size), side="left")  # the first fsync covering each seq
    latencies = (ends[which] - written) / 1e9
    return Measured(setting, latencies, np.asarray(syncs.took) / 1e9, took, stopped)


def writer_rate(directory: Path, group: GroupCommit | None, seconds: float, stop: Stop = _never) -> float:
    """Records per second written flat out: ``record_batch`` of one doorbell's rejections, ``commit`` after each."""
    rows = doorbell_batch()
    path = directory / "writer.jsonl"
    with AuditLog(path, "verifier", fsync="batch", max_bytes=None, rotate_bytes=None, group=group) as log:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds and not stop():
            log.record_batch(rows)
            log.commit()
        elapsed = time.perf_counter() - start
        rate = log.next_seq / elapsed if elapsed > 0 else math.nan
    path.unlink(missing_ok=True)
    return rate
