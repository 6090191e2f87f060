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

Workers are forked where the platform allows it (else spawned), one process
per job, each sending its result on a pipe of its own; each opens
its own audit sink through ``audit_factory(job)`` (picklable: a module-level
function or a ``functools.partial``), default an in-memory one.

Stopping: ``stop`` (Ctrl-C, SIGTERM) is polled by the parent, which then
sets an event every worker's campaign checks between batches; the workers
return what they did and the merge is as usual (``interrupted`` set).
Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process
group: the parent decides); a SIGTERM of their own stops their campaign the
same way (a service manager may signal the whole group).  They die with
the parent (Linux ``PR_SET_PDEATHSIG``), so a SIGKILLed campaign leaves no
worker.  A worker that dies (SIGKILL, the OOM killer, a crash in compiled
code) stops the others the same way and is raised as ``WorkerDied`` with
what they found: ``multiprocessing.Pool``, used before, waited forever.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing import connection
from multiprocessing.connection import Connection
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
#: Seconds a worker gets to end after the campaign (or an error) before it is terminated, then killed.
STOP_S = 5.0

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
        parts = _run_workers(work, stop, progress, _Merger(jobs, iterations, seconds), start)
    merged = merge(parts)
    merged.seconds = time.perf_counter() - start
    return merged


class WorkerDied(RuntimeError):
    """A worker process ended without its result: SIGKILLed, the kernel's OOM killer, a crash in compiled code.

    ``multiprocessing.Pool`` waits forever for the task of a worker that
    died (it starts a fresh worker and forgets the task), so a campaign
    with one dead worker never ended.  The parent now watches each worker's
    exit: on a death it stops the others (between batches, as Ctrl-C does)
    and ``partial`` is their merged result, ``interrupted`` set (None when
    no worker returned one).
    """

    def __init__(self, job: int, exitcode: int | None, partial: CampaignResult | None) -> None:
        self.job = job
        self.exitcode = exitcode
        self.partial = partial
        super().__init__(f"--jobs worker {job} died ({how_it_ended(exitcode)}) before returning its result")


def how_it_ended(exitcode: int | None) -> str:
    """A process's end in words: ``killed by SIGKILL``, ``exit code 1``."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _run_workers(
    work: list[dict[str, Any]],
    stop: Callable[[], bool] | None,
    progress: Callable[[ProgressInfo], None] | None,
    merger: _Merger,
    start: float,
) -> list[CampaignResult]:
    """One process per job, each returning its result on a pipe of its own; the parent waits on the pipes and on
    the processes' exits together, so a worker that dies is seen (``WorkerDied``), not waited for forever."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context: Any = multiprocessing.get_context(method)  # typeshed's BaseContext lacks Process
    event = context.Event()
    told = None if progress is None else context.SimpleQueue()  # no feeder thread: a put is sent when it returns
    procs: list[Any] = []
    readers: list[Connection] = []
    results: dict[int, CampaignResult] = {}
    error: BaseException | None = None
    died: tuple[int, int | None] | None = None
    try:
        for job_args in work:
            reader, writer = context.Pipe(duplex=False)
            proc = context.Process(
                target=_process, args=(event, told, writer, job_args), name=f"fuzz-job{job_args['job']}", daemon=True
            )
            proc.start()
            writer.close()  # the worker's copy is the only one: its death reads as EOF here
            procs.append(proc)
            readers.append(reader)
        pending = set(range(len(work)))
        while pending:
            waiting = [readers[j] for j in pending] + [procs[j].sentinel for j in pending]
            ready = set(connection.wait(waiting, timeout=POLL_S))
            for j in sorted(pending):
                if readers[j] not in ready and procs[j].sentinel not in ready:
                    continue
                outcome = _take(readers[j], procs[j])
                if outcome is None:
                    continue
                pending.discard(j)
                if isinstance(outcome, CampaignResult):
                    results[j] = outcome
                elif isinstance(outcome, BaseException):
                    error = error or outcome
                else:
                    died = died or (j, procs[j].exitcode)
                if error is not None or died is not None:
                    event.set()  # the others stop between batches and return what they did
            if error is not None:
                break
            if stop is not None and stop():
                event.set()
            if told is not None and progress is not None and merger.drain(told):
                progress(merger.merged(time.perf_counter() - start))
        if told is not None and progress is not None and error is None:
            merger.drain(told)
            progress(merger.merged(time.perf_counter() - start))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # only after an error (or an exception here): a result was taken from the others
            proc.join(STOP_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for reader in readers:
            reader.close()
        if told is not None:
            told.close()
    if error is not None:
        raise error
    parts = [results[j] for j in sorted(results)]
    if died is not None:
        partial = None
        if parts:
            partial = merge(parts)
            partial.interrupted = True
            partial.audit_checked = False
            partial.seconds = time.perf_counter() - start
        raise WorkerDied(died[0], died[1], partial)
    return parts


def _process(event: Any, told: Any, conn: Connection, args: dict[str, Any]) -> None:
    """A worker process: its campaign's result (or the exception that ended it) on ``conn``."""
    _init_worker(event, told)
    outcome: Any
    try:
        outcome = _worker(args)
    except BaseException as e:  # the parent raises it
        outcome = e
    try:
        conn.send(outcome)
    except Exception as e:  # an exception that does not pickle: its words do
        conn.send(RuntimeError(f"--jobs worker {args['job']}: {type(outcome).__name__}: {outcome} ({e})"))
    conn.close()


def _take(reader: Connection, proc: Any) -> CampaignResult | BaseException | bool | None:
    """What a worker sent (its result or its exception), False when it died without sending, None when it has
    neither sent nor ended."""
    if reader.poll():
        try:
            return reader.recv()
        except (EOFError, OSError):  # ended mid-message, or without one
            proc.join()
            return False
    if proc.exitcode is None:
        return None
    return False
