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
from typing import Any

from fuzz.campaign import CampaignResult, run_campaign
from fuzz.merge import merge
from fuzz.steps import Attack
from verifier.audit.rejections import AuditSink
from verifier.modes.protection import Protection

MAX_JOBS = 64
#: How often the parent looks at ``stop`` while the workers run.
POLL_S = 0.1
#: include/uapi/linux/prctl.h
PR_SET_PDEATHSIG = 1

#: In a worker: the parent's stop event (set by ``_init_worker``).
_stop_event: Any = None


def _init_worker(event: Any) -> None:
    """A worker stops when the parent says so, not on a terminal's Ctrl-C; it dies with the parent."""
    global _stop_event
    _stop_event = event
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, inherited by fork
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _worker(args: dict[str, Any]) -> CampaignResult:
    factory: Callable[[int], AuditSink] | None = args.pop("audit_factory")
    audit = factory(args["job"]) if factory is not None else None
    event = _stop_event
    termed: list[int] = []

    def stop() -> bool:
        return bool(termed) or (event is not None and event.is_set())

    old = signal.signal(signal.SIGTERM, lambda signum, _frame: termed.append(signum))
    try:
        return run_campaign(audit=audit, stop=stop, **args)
    finally:
        signal.signal(signal.SIGTERM, old)
        if audit is not None:
            audit.close()


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
    **kwargs: Any,
) -> CampaignResult:
    """Run the campaign in ``jobs`` processes and merge (``jobs`` 1: in this process); ``stop``: see above."""
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
            parts = [run_campaign(audit=audit, stop=stop, **work[0])]
        finally:
            if audit is not None:
                audit.close()
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        event = context.Event()
        with context.Pool(jobs, initializer=_init_worker, initargs=(event,)) as pool:
            running = pool.map_async(_worker, work)
            while not running.ready():
                running.wait(POLL_S)
                if stop is not None and stop():
                    event.set()
            parts = running.get()
    merged = merge(parts)
    merged.seconds = time.perf_counter() - start
    return merged
