"""The corpus actor's live view (what ``fuzz --ray --serve`` shows) is the merged report's, block for block.

The ``Corpus`` class is driven here without Ray, by real campaigns: each
"worker" runs its blocks (fuzz/blocks.py) with an ``on_block`` hook that
pushes what ``Worker._delta`` cuts from its result, as a Ray worker does
(without the ``ray.get`` around each call).  A replaced worker reruns a
block its predecessor had pushed (the predecessor's last push arrived after
the driver took it for dead): that block must be counted once, in the live
view and in the parts the report is merged from.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from fuzz import case as case_mod
from fuzz.blocks import block_count, owned
from fuzz.campaign import CampaignResult, run_campaign
from fuzz.cluster.corpus import Corpus
from fuzz.cluster.plan import Plan
from fuzz.cluster.worker import Worker
from fuzz.merge import merge
from fuzz.steps import Attack
from verifier.modes.protection import Protection

CLASSES = ["kernel-tx", "straddle", "wrap"]


@pytest.fixture(autouse=True)
def _ctrl_c_kept() -> Iterator[None]:
    """``Corpus`` and ``Worker`` ignore SIGINT, as a Ray actor must (fuzz/cluster/worker.py ``ignore_interrupts``);
    built here in pytest's own main thread, they would leave it ignored for every later test, and a subprocess
    started after that (a Ctrl-C test) would inherit the ignored signal and never stop."""
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


SEED, ITERATIONS, ARENA_EVERY, BATCH = 4, 96, 8, 16


def _work(corpus: Corpus, plan: Plan, job: int, attempt: int, skip: set[int], stop_after: int | None = None) -> None:
    """Job ``job``'s blocks less ``skip``, each pushed to ``corpus`` as fuzz/cluster/worker.py pushes it; with
    ``stop_after``, the worker stops after that many blocks (it "dies": the rest is a replacement's)."""
    worker = Worker(plan, corpus, job, attempt)
    pushed: list[int] = []

    def on_block(block: int, result: CampaignResult) -> list[tuple[str, Attack]]:
        part = worker._delta(result)
        cases: dict[tuple[str, str], dict[str, Any]] = {}
        for f in part.findings:
            if corpus.claim(f.key, (f.block, f.iteration)):
                cases[f.key] = case_mod.Case.from_finding(f, plan.seed, plan.protection).as_dict()
        pushed.append(block)
        return corpus.push(job, attempt, block, part, cases, [])

    total = block_count(plan.iterations, len(plan.classes), plan.arena_every)
    run_campaign(plan.protection, plan.seed, plan.classes, iterations=plan.iterations, batch=plan.batch,
                 arena_every=plan.arena_every, job=job, jobs=plan.workers,
                 coverage=worker._cov if worker._cov is not None else False,
                 stop=lambda: stop_after is not None and len(pushed) >= stop_after,
                 blocks=owned(job, plan.workers, total, skip), on_block=on_block)  # fmt: skip


def test_live_counts_equal_the_merge_and_a_rerun_block_counts_once() -> None:
    plan = Plan(Protection.NONE, SEED, CLASSES, workers=2, iterations=ITERATIONS, batch=BATCH,
                arena_every=ARENA_EVERY, coverage=True)  # fmt: skip
    corpus = Corpus()
    _work(corpus, plan, 0, 0, set())
    _work(corpus, plan, 1, 0, set(), stop_after=2)  # job 1 pushed blocks 1 and 3, then "died"
    assert corpus.done_blocks(1) == {1, 3}
    before = corpus.snapshot()
    _work(corpus, plan, 1, 1, {1})  # its replacement was told only block 1 was done: it reruns block 3
    total = block_count(ITERATIONS, len(CLASSES), ARENA_EVERY)
    assert total is not None and corpus.done_blocks(1) == set(range(1, total, 2))
    live = corpus.snapshot()
    parts, cases = corpus.results()
    assert len(parts) == live.blocks == total  # block 3 pushed twice, counted once
    merged = merge(parts)
    assert live.iterations == merged.iterations == ITERATIONS
    assert live.stats == merged.stats and live.descriptors == merged.descriptors and live.escapes == merged.escapes
    assert merged.coverage and live.coverage == len(merged.coverage)
    # each distinct finding announced with its case, and again only when an earlier one replaced the case (job 0
    # ran first here, so job 1's earlier blocks did): the last case announced is the one the report writes
    keys = [(f.cls, f.kind) for f in live.found]
    assert sorted(set(keys)) == sorted(f.key for f in merged.findings)
    assert all(f.case is not None and case_mod.Case.from_dict(f.case).cls == f.cls for f in live.found)
    assert {(f.cls, f.kind): f.case for f in live.found} == cases
    # the events travel once: asking from where the driver stopped gives only the new ones
    assert live.events == len(live.found) and corpus.snapshot(live.events).found == []
    assert [(f.cls, f.kind) for f in corpus.snapshot(before.events).found] == keys[before.events :]


def test_live_counts_without_coverage_are_a_one_process_campaigns() -> None:
    plan = Plan(Protection.VERIFIER, SEED, CLASSES, workers=2, iterations=ITERATIONS, batch=BATCH,
                arena_every=ARENA_EVERY)  # fmt: skip
    corpus = Corpus()
    for job in range(2):
        _work(corpus, plan, job, 0, set())
    one = run_campaign(Protection.VERIFIER, SEED, CLASSES, iterations=ITERATIONS, batch=BATCH, arena_every=ARENA_EVERY)
    live = corpus.snapshot()
    assert live.stats == one.stats and live.iterations == one.iterations and live.coverage is None
    assert sorted((f.cls, f.kind) for f in live.found) == sorted(f.key for f in one.findings)
