"""The driver of a Ray campaign: start the actors, stream progress, replace the dead, merge one report.

``run_ray(plan, address)`` starts a local cluster (``auto``) or joins one
(fuzz/cluster/connect.py), places the corpus actor on its own node, and
starts one worker actor per job (``plan.workers``), each holding one CPU.
It then waits on the workers' ``run`` calls with ``ray.wait`` (a short
timeout: between waits it polls ``stop`` -- Ctrl-C, SIGTERM -- and hands
``progress`` the corpus actor's snapshot every ``every`` seconds, and once
more, marked ``final``, when every worker has ended: the counts of the
pushed blocks, which are the merged report's, and each distinct finding
once, as it arrived -- what ``fuzz --ray --serve`` shows).  A
worker whose call ends in a Ray system error (its process or its node
died) is replaced (fuzz/cluster/faults.py): a new actor takes the job's
unfinished blocks, wherever Ray finds a free CPU.  An exception raised by
the campaign itself is a bug, not a fault: it propagates.

The merged result is fuzz/merge.py over every block's part (kept by the
corpus actor) and every worker's tail (its end-of-log check): with the
same seed and iterations, the same as ``--jobs`` (tests/fuzz/cluster/).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fuzz.blocks import block_count
from fuzz.campaign import CampaignResult
from fuzz.cluster.connect import AUTO, cluster
from fuzz.cluster.corpus import Corpus, Progress
from fuzz.cluster.faults import MAX_RETRIES, Retry, describe, unfinished
from fuzz.cluster.plan import Plan
from fuzz.cluster.worker import Worker
from fuzz.merge import merge

#: Longest wait for a worker before the driver looks at ``stop`` again.
POLL_S = 0.2
#: Seconds between progress reports.
PROGRESS_S = 1.0


@dataclass
class Status:
    """One progress report: the corpus actor's counts, the time, the workers running and replaced."""

    progress: Progress
    elapsed: float
    running: int
    retries: int
    #: worker actors of the campaign (``plan.workers``, resolved to the cluster's CPUs when 0)
    workers: int = 0
    #: the last report: every worker has ended, nothing more will be counted
    final: bool = False


@dataclass
class RayResult:
    result: CampaignResult
    #: each distinct finding's case (``Case.as_dict``), minimised on the worker that found it first
    cases: dict[tuple[str, str], dict[str, Any]]
    retries: list[Retry] = field(default_factory=list)
    #: jobs given up after ``MAX_RETRIES`` replacements: their blocks not run
    not_run: dict[int, list[int]] = field(default_factory=dict)
    #: audit log tags written (``PATH.<tag>``), one per worker and replacement
    tags: list[str] = field(default_factory=list)
    #: nodes that ran workers
    nodes: set[str] = field(default_factory=set)
    #: (seconds, calls) the surviving workers spent calling the corpus actor
    coordination: tuple[float, int] = (0.0, 0)
    #: each finished worker's campaign seconds (its blocks, without the actor's start-up)
    busy: list[float] = field(default_factory=list)


@dataclass
class _Slot:
    job: int
    attempt: int
    actor: Any
    node_ref: Any
    node: str = "?"


def run_ray(
    plan: Plan,
    address: str = AUTO,
    stop: Callable[[], bool] | None = None,
    progress: Callable[[Status], None] | None = None,
    cpus: int | None = None,
    every: float = PROGRESS_S,
) -> RayResult:
    """Run ``plan`` on the cluster at ``address`` (``auto``: a local one, ``cpus`` CPUs, shut down after);
    ``progress`` is called every ``every`` seconds."""
    with cluster(address, cpus) as ray:
        return run_on(ray, plan, stop, progress, every)


def run_on(
    ray: Any,
    plan: Plan,
    stop: Callable[[], bool] | None = None,
    progress: Callable[[Status], None] | None = None,
    every: float = PROGRESS_S,
) -> RayResult:
    """``run_ray`` on a Ray already initialised (several campaigns on one cluster: bench/ray_bench.py)."""
    return _Campaign(ray, plan).run(stop, progress, every)


class _Campaign:
    def __init__(self, ray: Any, plan: Plan) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray = ray
        if plan.workers < 1:  # one worker per CPU of the cluster
            plan = dataclasses.replace(plan, workers=max(1, int(ray.cluster_resources().get("CPU", 1))))
        self.plan = plan
        self.total = block_count(plan.iterations, len(plan.classes), plan.arena_every)
        here = ray.get_runtime_context().get_node_id()
        pinned = NodeAffinitySchedulingStrategy(node_id=here, soft=False)
        self.corpus = ray.remote(Corpus).options(num_cpus=0, scheduling_strategy=pinned).remote()
        self.worker_class = ray.remote(Worker)
        self.running: dict[Any, _Slot] = {}
        self.out = RayResult(CampaignResult(plan.protection, plan.seed, list(plan.classes), plan.batch), {})
        self.tails: list[CampaignResult] = []
        self.actors: list[Any] = []
        self.start = time.monotonic()
        self.events = 0  # the corpus actor's findings events already handed to ``progress``
        self.deadline = None if plan.seconds is None else self.start + plan.seconds
        self.system_errors: tuple[type[BaseException], ...] = (
            ray.exceptions.RayActorError,
            ray.exceptions.WorkerCrashedError,
        )
        for name in ("NodeDiedError", "ObjectLostError", "OwnerDiedError", "ActorUnavailableError"):
            if hasattr(ray.exceptions, name):
                self.system_errors += (getattr(ray.exceptions, name),)

    def launch(self, job: int, attempt: int, skip: set[int]) -> None:
        seconds = None
        if self.deadline is not None:
            seconds = self.deadline - time.monotonic()
            if seconds <= 0.05:
                return
        actor = self.worker_class.options(num_cpus=1, max_concurrency=2).remote(self.plan, self.corpus, job, attempt)
        self.actors.append(actor)
        ref = actor.run.remote(skip, seconds)
        self.running[ref] = _Slot(job, attempt, actor, actor.node.remote())
        self.out.tags.append(f"job{job}" + (f"-retry{attempt}" if attempt else ""))

    def run(
        self, stop: Callable[[], bool] | None, progress: Callable[[Status], None] | None, every: float
    ) -> RayResult:
        ray = self.ray
        try:
            for job in range(self.plan.workers):
                self.launch(job, 0, set())
            stopped = False
            shown = self.start
            while self.running:
                ready, _ = ray.wait(list(self.running), num_returns=1, timeout=min(POLL_S, every))
                self._learn_nodes()
                for ref in ready:
                    self._finished(ref, stopped)
                if stop is not None and not stopped and stop():
                    stopped = True
                    for slot in self.running.values():
                        slot.actor.stop.remote()
                now = time.monotonic()
                if progress is not None and now - shown >= every:
                    shown = now
                    self._report(progress, final=False)
            if progress is not None:
                self._report(progress, final=True)
            parts, self.out.cases = ray.get(self.corpus.results.remote())
            merged = merge([*parts, *self.tails]) if parts or self.tails else self.out.result
            merged.jobs = self.plan.workers
            merged.seconds = time.monotonic() - self.start
            merged.interrupted = merged.interrupted or stopped
            if stopped:
                merged.audit_checked = False
            if self.plan.coverage and merged.coverage is None:
                merged.coverage = set()
            self.out.result = merged
            return self.out
        finally:
            for actor in [*self.actors, self.corpus]:
                with contextlib.suppress(Exception):  # already dead, or the cluster is gone: nothing left to stop
                    ray.kill(actor)

    def _report(self, progress: Callable[[Status], None], final: bool) -> None:
        """Hand ``progress`` the corpus actor's snapshot (the findings' events not handed over before)."""
        snap: Progress = self.ray.get(self.corpus.snapshot.remote(self.events))
        self.events = snap.events
        elapsed = time.monotonic() - self.start
        progress(Status(snap, elapsed, len(self.running), len(self.out.retries), self.plan.workers, final))

    def _learn_nodes(self) -> None:
        for slot in self.running.values():
            if slot.node == "?":
                ready, _ = self.ray.wait([slot.node_ref], timeout=0)
                if ready:
                    try:
                        slot.node = str(self.ray.get(ready[0]))
                        self.out.nodes.add(slot.node)
                    except self.system_errors:
                        pass

    def _finished(self, ref: Any, stopped: bool) -> None:
        ray = self.ray
        slot = self.running.pop(ref)
        try:
            tail = ray.get(ref)
            self.tails.append(tail)
            self.out.busy.append(tail.seconds)
        except self.system_errors as err:
            if stopped:
                return
            done = ray.get(self.corpus.done_blocks.remote(slot.job))
            rerun = unfinished(slot.job, self.plan.workers, self.total, done)
            if self.total is not None and not rerun:
                return  # it died after its last push: nothing left to do
            if slot.attempt >= MAX_RETRIES:
                self.out.not_run[slot.job] = rerun
                return
            self.out.retries.append(Retry(slot.job, slot.attempt + 1, slot.node, describe(err), rerun))
            self.launch(slot.job, slot.attempt + 1, done)
            return
        cost = ray.get(slot.actor.coordination_cost.remote())
        self.out.coordination = (self.out.coordination[0] + cost[0], self.out.coordination[1] + cost[1])
        ray.kill(slot.actor)  # an actor holds its CPU until it ends: free it for a replacement waiting for one
