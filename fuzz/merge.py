"""One ``CampaignResult`` from the parts of a parallel campaign (``--jobs`` processes or ``--ray`` actors).

Per-class counts summed, findings deduplicated by (class, oracle kind)
keeping the earliest (block, iteration) -- so the merged findings do not
depend on which worker ran a block or when -- audit problems concatenated
(each worker checks its own sink), coverage lines united, kept batches
concatenated in block order.  A part may be a whole worker's result or a
single block's (fuzz/cluster/ streams one part per block).
"""

from __future__ import annotations

from fuzz.campaign import CampaignResult, ClassStats


def merge(parts: list[CampaignResult]) -> CampaignResult:
    """One result from the workers' results (see the module docstring); ``jobs`` is the number of parts."""
    first = parts[0]
    out = CampaignResult(first.protection, first.seed, list(first.classes), first.batch, jobs=len(parts))
    out.stats = {name: ClassStats() for name in first.classes}
    for part in parts:
        out.iterations += part.iterations
        out.seconds = max(out.seconds, part.seconds)
        for name, s in part.stats.items():
            out.stats[name].add(s)
        out.audit_problems += part.audit_problems
        if part.coverage is not None:
            out.coverage = (out.coverage or set()) | part.coverage
        out.kept += part.kept
        out.interrupted = out.interrupted or part.interrupted
        out.audit_checked = out.audit_checked and part.audit_checked
    seen: set[tuple[str, str]] = set()
    for f in sorted((f for p in parts for f in p.findings), key=lambda f: (f.block, f.iteration)):
        if f.key not in seen:
            seen.add(f.key)
            out.findings.append(f)
    out.kept.sort(key=lambda k: (k.block, k.iteration))
    return out
