"""The corpus actor: what the workers found, kept and finished, in one place on the driver's node.

Every worker reports each finished block to it in one call (``push``):
the block's counts, its new findings (already minimised by the worker),
the inputs coverage kept, and the verifier lines it reached.  The reply
carries back what the *other* workers shared since this worker last asked
(their findings' reproducers and kept inputs), which the worker adds to
its mutation pool -- a finding on one worker seeds the others.  Because a
block counts as done only once its ``push`` returned, the driver knows
exactly which blocks a dead worker left unfinished (fuzz/cluster/faults.py),
and everything already pushed survives the worker (nothing found is lost).

Findings are deduplicated by (class, oracle kind) keeping the earliest
(block, iteration), as fuzz/merge.py does; ``claim`` lets a worker ask
before minimising, so a finding another worker already holds (earlier) is
not minimised twice.  The actor lives on the driver's node (a dead worker
node takes no found work with it) and uses no CPU slot.

A block is counted once: blocks are numbered campaign-wide (fuzz/blocks.py),
and a second push of a block already held -- a worker the driver took for
dead whose last push still arrived, then the replacement that reran it --
is recorded as done but not counted again.  What the actor counts is what
the merged report counts, so the live view of ``fuzz --ray --serve``
(``snapshot``: per-class counts, the union of verifier lines, each distinct
finding as it arrives with its case) ends equal to the report.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fuzz.campaign import CampaignResult, ClassStats
from fuzz.cluster.worker import ignore_interrupts
from fuzz.steps import Attack


@dataclass
class Found:
    """A distinct finding (class, oracle kind) as it reached the corpus actor, or a newer case of one already
    announced (a rerun, an earlier finding, or the case of the worker that claimed it arriving later)."""

    cls: str
    kind: str
    what: str
    seconds: float  # since its worker's campaign started
    case: dict[str, Any] | None  # ``Case.as_dict`` (minimised on the worker), None until its claimer pushed it


@dataclass
class Progress:
    """What the driver prints and serves while the campaign runs (a small snapshot, polled every second or so).

    ``blocks`` to ``findings``, ``stats`` and ``coverage`` count pushed blocks only: exactly what the merged report
    will count.  ``found`` is the findings' events from the index the driver asked for; ``events`` how many so far.
    """

    blocks: int = 0
    iterations: int = 0
    descriptors: int = 0
    escapes: int = 0
    findings: int = 0
    shared: int = 0
    by_worker: dict[int, int] = field(default_factory=dict)  # job -> blocks done
    #: counted so far by the running workers, unfinished blocks included (``tick``): for the progress line only
    live_iterations: int = 0
    live_descriptors: int = 0
    #: per class, the pushed blocks' counts summed (as fuzz/merge.py sums them)
    stats: dict[str, ClassStats] = field(default_factory=dict)
    #: lines of verifier/ reached by the pushed blocks (their union), None without coverage feedback
    coverage: int | None = None
    found: list[Found] = field(default_factory=list)
    events: int = 0


class Corpus:
    """The campaign's shared store (a Ray actor; see the module docstring)."""

    def __init__(self) -> None:
        ignore_interrupts()  # what it holds is the campaign's: a Ctrl-C must not take it down
        self.parts: list[CampaignResult] = []
        self.done: dict[int, set[int]] = {}  # job -> blocks finished (pushed)
        self.claims: dict[tuple[str, str], tuple[int, int]] = {}
        self.cases: dict[tuple[str, str], tuple[tuple[int, int], dict[str, Any]]] = {}
        self.items: list[tuple[int, str, Attack]] = []  # (job that shared it, class, batch)
        self.cursor: dict[tuple[int, int], int] = {}  # (job, attempt) -> items already handed out
        self.progress = Progress()
        self.live: dict[tuple[int, int], tuple[int, int]] = {}  # (job, attempt) -> (iterations, descriptors)
        self.blocks: set[int] = set()  # every block counted (pushed once)
        self.lines: set[str] | None = None
        self.found: list[Found] = []
        self.announced: set[tuple[str, str]] = set()

    def claim(self, key: tuple[str, str], where: tuple[int, int]) -> bool:
        """Whether a finding of ``key`` at (block, iteration) ``where`` is the earliest so far (then minimise it)."""
        held = self.claims.get(key)
        if held is not None and held < where:  # equal: the same block rerun by a replacement
            return False
        self.claims[key] = where
        return True

    def push(
        self,
        job: int,
        attempt: int,
        block: int,
        part: CampaignResult,
        cases: dict[tuple[str, str], dict[str, Any]],
        shared: list[tuple[str, Attack]],
    ) -> list[tuple[str, Attack]]:
        """Record one finished block; return what other workers shared since this worker last asked."""
        self.done.setdefault(job, set()).add(block)
        if block not in self.blocks:
            self.blocks.add(block)
            self._count(part, cases)
            self.items += [(job, name, b) for name, b in shared]
        p = self.progress
        p.shared = len(self.items)
        p.by_worker[job] = p.by_worker.get(job, 0) + 1
        start = self.cursor.get((job, attempt), 0)
        self.cursor[(job, attempt)] = len(self.items)
        return [(name, b) for origin, name, b in self.items[start:] if origin != job]

    def _count(self, part: CampaignResult, cases: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.parts.append(part)
        for f in part.findings:
            held = self.cases.get(f.key)
            where = (f.block, f.iteration)
            newer = f.key in cases and (held is None or where < held[0])
            if newer:
                self.cases[f.key] = (where, cases[f.key])
            if f.key not in self.announced or newer:
                self.announced.add(f.key)
                case = self.cases.get(f.key)
                self.found.append(Found(f.cls, f.kind, f.escape.what, f.seconds, None if case is None else case[1]))
        p = self.progress
        p.blocks += 1
        p.iterations += part.iterations
        p.descriptors += part.descriptors
        p.escapes += part.escapes
        p.findings = len(self.announced)
        for name, s in part.stats.items():
            p.stats.setdefault(name, ClassStats()).add(s)
        if part.coverage is not None:
            self.lines = (self.lines or set()) | part.coverage
            p.coverage = len(self.lines)

    def tick(self, job: int, attempt: int, iterations: int, descriptors: int) -> None:
        """A worker's running totals (about once a second; a fire-and-forget call): the live progress line."""
        self.live[(job, attempt)] = (iterations, descriptors)
        self.progress.live_iterations = sum(i for i, _ in self.live.values())
        self.progress.live_descriptors = sum(d for _, d in self.live.values())

    def done_blocks(self, job: int) -> set[int]:
        return set(self.done.get(job, set()))

    def snapshot(self, since: int = 0) -> Progress:
        """The counts, and the findings' events from index ``since`` on (each travels once)."""
        p = self.progress
        stats = {name: dataclasses.replace(s) for name, s in p.stats.items()}
        return dataclasses.replace(p, stats=stats, by_worker=dict(p.by_worker), found=self.found[since:],
                                   events=len(self.found))  # fmt: skip

    def results(self) -> tuple[list[CampaignResult], dict[tuple[str, str], dict[str, Any]]]:
        """Every block's part and the minimised case of each distinct finding (as ``Case.as_dict``)."""
        return self.parts, {key: case for key, (_, case) in self.cases.items()}
