"""The worker actor: one arena, one audit log and a disjoint sequence of blocks, reporting block by block.

It runs the ordinary campaign (fuzz/campaign.py ``run_campaign``) over
its blocks (fuzz/blocks.py ``owned``, less those already done by a
predecessor that died) with an ``on_block`` hook: after every block it
sends that block's counts, its new findings (each minimised here first,
on the worker, if it is the earliest of its kind -- ``Corpus.claim``),
its coverage-kept inputs and its new verifier lines to the corpus actor in
one call, and takes back what the other workers shared (fuzz/cluster/corpus.py).
What it returns at the end is only the tail the blocks could not carry:
the end-of-campaign audit check of its own log and whether it was stopped.

The actor is threaded (two calls at once) so the driver's ``stop`` reaches
a worker in the middle of ``run``; the campaign checks it between batches.
It ignores SIGINT (a terminal's Ctrl-C reaches the whole process group,
the workers of a local cluster too): the driver decides.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from typing import Any

from fuzz import case as case_mod
from fuzz.blocks import block_count, owned
from fuzz.campaign import CampaignResult, ClassStats, ProgressInfo, run_campaign
from fuzz.cluster.plan import Plan
from fuzz.coverage import Coverage
from fuzz.steps import Attack

#: Seconds between a worker's running totals sent to the corpus actor (for the progress line).
TICK_S = 1.0


def ignore_interrupts() -> None:
    """A terminal's Ctrl-C reaches every process of its group, the local cluster's workers too: the driver decides
    (it tells the workers to stop between batches, and keeps what they pushed), as fuzz/jobs.py's workers do."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class Worker:
    """Job ``job`` of a Ray campaign (attempt 0, or a replacement of a worker that died)."""

    def __init__(self, plan: Plan, corpus: Any, job: int, attempt: int) -> None:
        self.plan = plan
        self.corpus = corpus
        self.job = job
        self.attempt = attempt
        self._stop = threading.Event()
        ignore_interrupts()
        self._sent: dict[str, ClassStats] = {}
        self._findings = 0
        self._kept = 0
        self._lines: set[str] = set()
        self._cov: Coverage | None = Coverage() if plan.coverage else None
        #: seconds spent in calls to the corpus actor, and how many (the coordination cost)
        self.coordination = [0.0, 0]
        self._ticked = 0.0

    @property
    def tag(self) -> str:
        """The audit log's suffix: ``job3``, or ``job3-retry1`` for a replacement."""
        return f"job{self.job}" + (f"-retry{self.attempt}" if self.attempt else "")

    def node(self) -> str:
        import ray  # the actor runs under Ray: it is there

        return str(ray.get_runtime_context().get_node_id())

    def stop(self) -> None:
        self._stop.set()

    def run(self, skip: set[int], seconds: float | None) -> CampaignResult:
        """Run this job's blocks less ``skip`` for ``seconds`` (or its iterations); return the tail."""
        plan = self.plan
        total = block_count(plan.iterations, len(plan.classes), plan.arena_every)
        audit = plan.audit_factory(self.tag) if plan.audit_factory is not None else None
        try:
            result = run_campaign(
                plan.protection,
                plan.seed,
                plan.classes,
                iterations=plan.iterations,
                seconds=seconds,
                audit=audit,
                batch=plan.batch,
                arena_every=plan.arena_every,
                job=self.job,
                jobs=plan.workers,
                coverage=self._cov if self._cov is not None else False,
                corpus=plan.corpus,
                until_first=plan.until_first,
                stop=self._stop.is_set,
                blocks=owned(self.job, plan.workers, total, skip),
                on_block=self._push,
                progress=self._tick,
            )
        finally:
            if audit is not None:
                audit.close()
        tail = CampaignResult(result.protection, result.seed, list(result.classes), result.batch)
        tail.stats = {name: ClassStats() for name in result.classes}
        tail.seconds = result.seconds
        tail.audit_problems = result.audit_problems
        tail.interrupted = result.interrupted
        tail.audit_checked = result.audit_checked
        return tail

    def _tick(self, info: ProgressInfo) -> None:
        now = time.monotonic()
        if now - self._ticked >= TICK_S:
            self._ticked = now
            self.corpus.tick.remote(self.job, self.attempt, info.iterations, info.descriptors)

    def coordination_cost(self) -> tuple[float, int]:
        return self.coordination[0], int(self.coordination[1])

    def _push(self, block: int, result: CampaignResult) -> list[tuple[str, Attack]]:
        """The ``on_block`` hook: send the block's part (findings minimised) and take what others shared."""
        import ray

        part = self._delta(result)
        cases: dict[tuple[str, str], dict[str, Any]] = {}
        shared: list[tuple[str, Attack]] = [(k.cls, k.batch) for k in part.kept] if self.plan.share else []
        for f in part.findings:
            start = time.perf_counter()
            first = ray.get(self.corpus.claim.remote(f.key, (f.block, f.iteration)))
            self._count(start)
            if not first:
                continue
            found = case_mod.Case.from_finding(f, self.plan.seed, self.plan.protection)
            small = case_mod.minimise(found) if self.plan.minimise and not self._stop.is_set() else found
            cases[f.key] = small.as_dict()
            if self.plan.share:
                shared.append((f.cls, Attack(small.steps, fresh=True)))
        start = time.perf_counter()
        got: list[tuple[str, Attack]] = ray.get(
            self.corpus.push.remote(self.job, self.attempt, block, part, cases, shared)
        )
        self._count(start)
        return got if self.plan.share else []

    def _count(self, start: float) -> None:
        self.coordination[0] += time.perf_counter() - start
        self.coordination[1] += 1

    def _delta(self, result: CampaignResult) -> CampaignResult:
        """What ``result`` gained since the last push: one block's counts, findings, kept inputs and lines."""
        part = CampaignResult(result.protection, result.seed, list(result.classes), result.batch)
        for name, s in result.stats.items():
            before = self._sent.get(name, ClassStats())
            part.stats[name] = ClassStats(
                *(getattr(s, f.name) - getattr(before, f.name) for f in dataclasses.fields(ClassStats))
            )
            self._sent[name] = dataclasses.replace(s)
        part.iterations = sum(s.batches for s in part.stats.values())
        part.findings = result.findings[self._findings :]
        self._findings = len(result.findings)
        part.kept = result.kept[self._kept :]
        self._kept = len(result.kept)
        if self._cov is not None:
            lines = set(self._cov.relative())
            part.coverage = lines - self._lines
            self._lines = lines
        return part
