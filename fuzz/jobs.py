"""``--jobs N``: a campaign split over N worker processes, merged into one ``CampaignResult``.

Worker ``j`` runs the campaign's blocks ``j, j+N, j+2N, ...`` (each block
draws from ``default_rng([seed, block])``, so the workers' batches are
disjoint and each is the batch a one-process campaign would have drawn).
With ``iterations`` every block keeps its share, so the merged counts are
the same for any N, and the same seed and N reproduce them exactly; with
``seconds`` each worker runs that long (not reproducible, like any timed
campaign).  Merge: per-class counts summed, findings deduplicated by
(class, kind) keeping the earliest (block, iteration), audit problems
concatenated (each worker checks its own sink), coverage lines united,
kept batches concatenated in block order (fuzz/merge.py, shared with the
Ray workers of fuzz/cluster/).

Progress (``progress``, as ``run_campaign`` takes it): each worker puts its
``ProgressInfo`` on a queue (only its findings not sent before); the parent
drains it while it waits (and once more at the end: every put is in the pipe
before the worker returns) and hands ``progress`` one merged view -- counts
summed per class, findings deduplicated by (class, kind) in the order they
arrived, coverage the largest worker's line count (the union of the lines is
known only at the end, from the results).

Workers are forked where the platform allows it (else spawned); each opens
its own audit sink through ``audit_factory(job)`` (picklable: a module-level
function or a ``functools.partial``), default an in-memory one.

Stopping: ``stop`` (Ctrl-C, SIGTERM) is polled by the parent, which then
sets an event every worker's campaign checks between batches; the workers
return what they did and the merge is as usual (``interrupted`` set).
Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process
group: the parent decides); a SIGTERM of their own stops their campaign the
same way (a service manager may signal the whole group), and ends an idle
worker as usual (``Pool.terminate``).  They die with the parent (Linux
``PR_SET_PDEATHSIG``), so a SIGKILLed campaign leaves no worker.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fuzz.campaign import CampaignResult, ClassStats, Finding, ProgressInfo, run_campaign
from fuzz.merge import merge
from fuzz.steps import Attack
from verifier.audit.rejections import AuditSink
from verifier.modes.protection import Protection

MAX_JOBS = 64
#: How often the parent looks at ``stop`` while the workers run.
POLL_S = 0.1
#: include/uapi/linux/prctl.h
PR_SET_PDEATHSIG = 1

#: In a worker: the parent's stop event and progress queue (set by ``_init_worker``).
_stop_event: Any = None
_progress_queue: Any = None

Key = tuple[str, str]


def _init_worker(event: Any, progress: Any = None) -> None:
    """A worker stops when the parent says so, not on a terminal's Ctrl-C; it dies with the parent."""
    global _stop_event, _progress_queue
    _stop_event = event
    _progress_queue = progress
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, inherited by fork
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _worker(args: dict[str, Any]) -> CampaignResult:
    factory: Callable[[int], AuditSink] | None = args.pop("audit_factory")
    audit = factory(args["job"]) if factory is not None else None
    event = _stop_event
    termed: list[int] = []
    if _progress_queue is not None:
        args["progress"] = _Sender(_progress_queue, args["job"])

    def stop() -> bool:
        return bool(termed) or (event is not None and event.is_set())

    old = signal.signal(signal.SIGTERM, lambda signum, _frame: termed.append(signum))
    try:
        return run_campaign(audit=audit, stop=stop, **args)
    finally:
        signal.signal(signal.SIGTERM, old)
        if audit is not None:
            audit.close()


class _Sender:
    """A worker's ``progress``: its info on the parent's queue, each finding sent once (the batch is the bulk)."""

    def __init__(self, queue: Any, job: int) -> None:
        self.queue = queue
        self.job = job
        self.sent = 0

    def __call__(self, info: ProgressInfo) -> None:
        new = info.findings[self.sent :]
        self.sent = len(info.findings)
        self.queue.put((self.job, replace(info, findings=new)))


class _Merger:
    """The parent's side: the latest info of each worker and every finding, merged into one ``ProgressInfo``."""

    def __init__(self, jobs: int, total: int | None, seconds: float | None) -> None:
        self.latest: dict[int, ProgressInfo] = {}
        self.findings: dict[Key, Finding] = {}
        self.total = total
        self.seconds = seconds

    def drain(self, queue: Any) -> bool:
        """Take what the workers sent; True if anything was."""
        took = False
        while not queue.empty():
            job, info = queue.get()
            took = True
            self.latest[job] = info
            for f in info.findings:
                self.findings.setdefault(f.key, f)
        return took

    def merged(self, elapsed: float) -> ProgressInfo:
        parts = list(self.latest.values())
        stats: dict[str, ClassStats] = {}
        for part in parts:
            for name, s in part.stats.items():
                stats.setdefault(name, ClassStats()).add(s)
        covered = [p.coverage for p in parts if p.coverage is not None]
        return ProgressInfo(
            sum(p.iterations for p in parts),
            self.total,
            elapsed,
            self.seconds,
            sum(p.descriptors for p in parts),
            sum(p.escapes for p in parts),
            sum(p.rejected for p in parts),
            {name: (s.generated, s.escapes) for name, s in stats.items() if s.generated},
            stats=stats,
            coverage=max(covered) if covered else None,
            findings=list(self.findings.values()),
        )


def run_jobs(
    protection: Protection | str,
    seed: int,
    classes: str | list[str] | None,
    jobs: int,
    iterations: int | None = None,
    seconds: float | None = None,
    audit_factory: Callable[[int], AuditSink] | None = None,
    coverage: bool = False,
    corpus: list[tuple[str, Attack]] | None = None,
    stop: Callable[[], bool] | None = None,
    progress: Callable[[ProgressInfo], None] | None = None,
    **kwargs: Any,
) -> CampaignResult:
    """Run the campaign in ``jobs`` processes and merge (``jobs`` 1: in this process); ``stop``, ``progress``: see
    above."""
    if not 1 <= jobs <= MAX_JOBS:
        raise ValueError(f"jobs must be 1..{MAX_JOBS}, got {jobs}")
    common: dict[str, Any] = {
        "protection": Protection(protection),
        "seed": seed,
        "classes": classes,
        "iterations": iterations,
        "seconds": seconds,
        "coverage": coverage,
        "corpus": corpus,
        "jobs": jobs,
        "audit_factory": audit_factory,
        **kwargs,
    }
    start = time.perf_counter()
    work = [{**common, "job": j} for j in range(jobs)]
    if jobs == 1:
        factory = work[0].pop("audit_factory")
        audit = factory(0) if factory is not None else None
        try:
            parts = [run_campaign(audit=audit, stop=stop, progress=progress, **work[0])]
        finally:
            if audit is not None:
                audit.close()
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        event = context.Event()
        told = None if progress is None else context.SimpleQueue()  # no feeder thread: a put is sent when it returns
        merger = _Merger(jobs, iterations, seconds)
        with context.Pool(jobs, initializer=_init_worker, initargs=(event, told)) as pool:
            running = pool.map_async(_worker, work)
            while not running.ready():
                running.wait(POLL_S)
                if stop is not None and stop():
                    event.set()
                if told is not None and progress is not None and merger.drain(told):
                    progress(merger.merged(time.perf_counter() - start))
            parts = running.get()
        if told is not None and progress is not None:
            merger.drain(told)
            progress(merger.merged(time.perf_counter() - start))
            told.close()
    merged = merge(parts)
    merged.seconds = time.perf_counter() - start
    return merged
