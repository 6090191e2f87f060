"""``fuzz --ray`` at scale: desc/s with 1 and 2 Ray workers, Ray's cost per worker against ``--jobs``, and the
coordination costs that bound a large cluster.

One local Ray cluster (``fuzz.cluster.connect.cluster``, 2 CPUs) serves
every Ray measurement of the run; as for ``fuzz --ray``, it runs in a
private network namespace holding only ``lo`` when run as root (Ray binds
every interface: fuzz/cluster/netns.py), so ``measure`` starts Ray once and
is called once per process:

* **scaling** -- the same timed campaign (verifier mode, the batch-mode
  classes of bench/fuzz_bench.py, seed 1, in-memory audit) with 1 and 2
  worker actors; desc/s = descriptors over the workers' campaign seconds
  (each runs ``seconds``).  Goal: 2 workers >= 1.7x one worker on 2 cores.
* **Ray against --jobs** -- the same campaign with ``fuzz.jobs.run_jobs``
  (forked processes) at 1 and 2 jobs: the per-worker throughput Ray costs
  (its per-block push to the corpus actor, progress ticks), and the
  start-up an actor adds (wall time less campaign time).
* **coordination** -- round trips to a corpus actor (the one a campaign
  uses) as a worker makes them: a block's push without anything found,
  with one finding (a real one, its claim and its minimised case), and
  with one shared corpus item (a coverage-kept batch, handed to every
  other worker); the pickled sizes of what travels.

``python -m bench.ray_bench [SECONDS]`` prints the figures and the
predictions for 8, 64 and 512 workers (docs/fuzzing.md explains them).
"""

from __future__ import annotations

import pickle
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.fuzz_bench import BATCH_CLASSES
from bench.goals import GoalRow, Sense
from fuzz import case as case_mod
from fuzz.campaign import CampaignResult, run_campaign
from fuzz.cluster.connect import RayMissing, cluster, import_ray
from fuzz.cluster.corpus import Corpus
from fuzz.cluster.driver import run_on
from fuzz.cluster.plan import Plan
from fuzz.jobs import run_jobs
from verifier.modes.protection import Protection

SCALE_GOAL = 1.7
#: Ray's throughput cost per worker against --jobs, at most (a fraction of desc/s)
OVERHEAD_GOAL = 0.10
#: Round trips timed per coordination figure.
ROUNDS = 200
WORKERS = (8, 64, 512)


@dataclass
class Figures:
    ray: dict[int, float]  # workers -> desc/s over campaign time
    jobs: dict[int, float]
    startup: float  # seconds an actor adds before its first batch (wall less campaign time, 2 workers)
    blocks_per_s: float  # blocks one worker finishes per second
    kept_per_s: float  # coverage-kept inputs one worker produces per second (with --coverage)
    push_s: float  # a block's push, nothing found
    finding_s: float  # extra for one finding (claim + its case in the push)
    item_s: float  # extra for one shared corpus item received
    sizes: dict[str, int]


def _rate(result: CampaignResult, busy: list[float]) -> float:
    return result.descriptors / max(busy) if busy else 0.0


def measure(seconds: float) -> Figures:
    classes = list(BATCH_CLASSES)
    jobs = {n: run_jobs("verifier", 1, classes, n, seconds=seconds).rate for n in (1, 2)}
    ray_rates: dict[int, float] = {}
    with cluster("auto", cpus=2) as ray:
        startup = blocks_per_s = 0.0
        for n in (1, 2):
            plan = Plan(Protection.VERIFIER, 1, classes, workers=n, seconds=seconds, minimise=False)
            start = time.monotonic()
            out = run_on(ray, plan)
            wall = time.monotonic() - start
            ray_rates[n] = _rate(out.result, out.busy)
            blocks = out.coordination[1]
            if n == 2:
                startup = wall - max(out.busy)
                blocks_per_s = blocks / sum(out.busy)
        cov_plan = Plan(Protection.VERIFIER, 1, classes, workers=1, seconds=seconds, coverage=True, minimise=False)
        cov = run_on(ray, cov_plan)
        kept_per_s = len(cov.result.kept) / max(cov.busy)
        push_s, finding_s, item_s, sizes = _coordination(ray)
    return Figures(ray_rates, jobs, startup, blocks_per_s, kept_per_s, push_s, finding_s, item_s, sizes)


def _coordination(ray: Any) -> tuple[float, float, float, dict[str, int]]:
    """Round trips to a corpus actor: an empty block's push, one with a finding, one that receives an item."""
    found = run_campaign("none", 1, classes="kernel-tx", iterations=2, batch=128)
    kept = run_campaign("verifier", 1, classes="straddle", iterations=4, batch=128, coverage=True).kept
    finding = found.findings[0]
    case = case_mod.minimise(case_mod.Case.from_finding(finding, 1, Protection.NONE)).as_dict()
    empty = CampaignResult(found.protection, 1, list(found.classes), found.batch)
    empty.stats = {name: type(s)() for name, s in found.stats.items()}
    with_finding = CampaignResult(found.protection, 1, list(found.classes), found.batch)
    with_finding.stats, with_finding.findings = empty.stats, [finding]
    item = (kept[0].cls, kept[0].batch)
    corpus = ray.remote(Corpus).options(num_cpus=0).remote()

    def timed(call: Any) -> float:
        ray.get(call(0))  # warm
        start = time.perf_counter()
        for i in range(ROUNDS):
            ray.get(call(i + 1))
        return (time.perf_counter() - start) / ROUNDS

    push = timed(lambda i: corpus.push.remote(0, 0, i, empty, {}, []))
    claim = timed(lambda i: corpus.claim.remote(finding.key, (10**6 - i, 0)))
    pushed_finding = timed(lambda i: corpus.push.remote(0, 0, i, with_finding, {finding.key: case}, []))
    # worker 1 shares one item per push; worker 0 receives it on its next push: the receiving side's extra cost
    timed(lambda i: corpus.push.remote(1, 0, i, empty, {}, [item]))
    start = time.perf_counter()
    for i in range(ROUNDS):
        ray.get(corpus.push.remote(1, 0, 10**6 + i, empty, {}, [item]))
    shared = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(ROUNDS):
        ray.get(corpus.push.remote(1, 0, 2 * 10**6 + i, empty, {}, [item]))
        ray.get(corpus.push.remote(0, 0, 2 * 10**6 + i, empty, {}, []))
    both = time.perf_counter() - start
    item_s = max(0.0, (both - shared) / ROUNDS - push)
    ray.kill(corpus)
    sizes = {
        "block part, nothing found": len(pickle.dumps(empty)),
        "block part with one finding": len(pickle.dumps(with_finding)),
        "minimised case (JSON dict)": len(pickle.dumps(case)),
        "shared corpus item (kept batch)": len(pickle.dumps(item)),
    }
    return push, claim + (pushed_finding - push), item_s, sizes


def predict(f: Figures, workers: int, coverage: bool = False) -> tuple[float, float]:
    """desc/s for ``workers`` workers and the corpus actor's load (1.0 = saturated).

    Each worker loses, per second of fuzzing, its pushes (``blocks_per_s`` x ``push_s``) and, with --coverage,
    the corpus items it receives from all the others (``kept_per_s`` x (workers-1) x ``item_s``); findings are
    few (one per class and kind) and cost ``finding_s`` once each.  The corpus actor serves every call in turn:
    its load is workers x that per second; above 1 the workers wait for it and the rate is divided by the load.
    """
    per_worker = f.ray[1]
    lost = f.blocks_per_s * f.push_s + (f.kept_per_s * (workers - 1) * f.item_s if coverage else 0.0)
    load = workers * lost
    rate = workers * per_worker * max(0.0, 1 - lost)
    if load > 1:
        rate /= load
    return rate, load


def goal_rows(seconds: float) -> list[GoalRow]:
    """Scaling of Ray workers (1 -> 2 on 2 cores) and Ray's per-worker cost against --jobs (none without Ray)."""
    try:
        import_ray()
    except RayMissing as err:
        print(f"bench.ray_bench: skipped: {err}", file=sys.stderr)
        return []
    return _rows(measure(seconds))


def _rows(f: Figures) -> list[GoalRow]:
    scale = f.ray[2] / f.ray[1] if f.ray[1] else 0.0
    overhead = 1 - (f.ray[2] / 2) / (f.jobs[2] / 2) if f.jobs[2] else 1.0
    return [
        GoalRow(
            "fuzz --ray: 2 worker actors against 1 (local cluster, 2 cores)",
            f"{f.ray[2]:,.0f} desc/s",
            f"{f.ray[1]:,.0f} desc/s with 1",
            scale,
            SCALE_GOAL,
        ),
        GoalRow(
            "fuzz --ray: throughput lost per worker against --jobs 2 (same seed and seconds)",
            f"{f.ray[2] / 2:,.0f} desc/s/worker, +{f.startup:.1f} s actor start-up",
            f"{f.jobs[2] / 2:,.0f} desc/s/worker with --jobs",
            overhead,
            OVERHEAD_GOAL,
            Sense.AT_MOST,
            unit="%",
        ),
    ]


def main(argv: list[str]) -> int:
    seconds = float(argv[0]) if argv else 10.0
    f = measure(seconds)
    print(f"ray workers: 1 -> {f.ray[1]:,.0f} desc/s, 2 -> {f.ray[2]:,.0f} desc/s ({f.ray[2] / f.ray[1]:.2f}x)")
    print(f"--jobs:      1 -> {f.jobs[1]:,.0f} desc/s, 2 -> {f.jobs[2]:,.0f} desc/s ({f.jobs[2] / f.jobs[1]:.2f}x)")
    print(
        f"actor start-up: {f.startup:.2f} s; blocks/s per worker: {f.blocks_per_s:.2f}; "
        f"coverage-kept inputs/s per worker: {f.kept_per_s:.2f}"
    )
    print(
        f"coordination: push {f.push_s * 1e3:.2f} ms/block, +{f.finding_s * 1e3:.2f} ms/finding, "
        f"+{f.item_s * 1e3:.3f} ms/corpus item received"
    )
    for what, size in f.sizes.items():
        print(f"  {what}: {size:,} bytes pickled")
    for n in WORKERS:
        rate, load = predict(f, n)
        crate, cload = predict(f, n, coverage=True)
        print(
            f"predicted {n:4d} workers: {rate:,.0f} desc/s (corpus actor load {load:.2f}); "
            f"with --coverage {crate:,.0f} desc/s (load {cload:.2f})"
        )
    for row in _rows(f):
        print(f"{row.what}: {row.value:.3f} (goal {row.sense.value} {row.goal})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
