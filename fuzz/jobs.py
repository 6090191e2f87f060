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
kept batches concatenated in block order.

Workers are forked where the platform allows it (else spawned); each opens
its own audit sink through ``audit_factory(job)`` (picklable: a module-level
function or a ``functools.partial``), default an in-memory one.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from typing import Any

from fuzz.campaign import CampaignResult, ClassStats, run_campaign
from fuzz.steps import Attack
from verifier.audit.rejections import AuditSink
from verifier.modes.protection import Protection

MAX_JOBS = 64


def _worker(args: dict[str, Any]) -> CampaignResult:
    factory: Callable[[int], AuditSink] | None = args.pop("audit_factory")
    audit = factory(args["job"]) if factory is not None else None
    try:
        return run_campaign(audit=audit, **args)
    finally:
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
    **kwargs: Any,
) -> CampaignResult:
    """Run the campaign in ``jobs`` processes and merge (``jobs`` 1: in this process)."""
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
        parts = [_worker(work[0])]
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(jobs) as pool:
            parts = pool.map(_worker, work)
    merged = merge(parts)
    merged.seconds = time.perf_counter() - start
    return merged


def merge(parts: list[CampaignResult]) -> CampaignResult:
    """One result from the workers' results (see the module docstring)."""
    first = parts[0]
    out = CampaignResult(first.protection, first.seed, list(first.classes), first.batch, jobs=len(parts))
    out.stats = {name: ClassStats() for name in first.classes}
    for part in parts:
        out.iterations += part.iterations
        out.seconds = max(out.seconds, part.seconds)
        for name, s in part.stats.items():
            total = out.stats[name]
            total.generated += s.generated
            total.rejected += s.rejected
            total.accepted_safe += s.accepted_safe
            total.escapes += s.escapes
            total.batches += s.batches
        out.audit_problems += part.audit_problems
        if part.coverage is not None:
            out.coverage = (out.coverage or set()) | part.coverage
        out.kept += part.kept
    seen: set[tuple[str, str]] = set()
    for f in sorted((f for p in parts for f in p.findings), key=lambda f: (f.block, f.iteration)):
        if f.key not in seen:
            seen.add(f.key)
            out.findings.append(f)
    out.kept.sort(key=lambda k: (k.block, k.iteration))
    return out
