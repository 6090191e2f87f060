"""A fuzzing campaign: attack classes against one protection mode, judged by the oracle, counted per class.

The schedule is a sequence of *blocks*.  Block ``b`` runs one attack class
(round robin over the selected classes) for up to ``arena_every``
iterations on the machine as built, with its own generator
``numpy.random.default_rng([seed, b])``.  An iteration is one batch posted
with one doorbell (RX classes: eve then sends as many frames as buffers were
posted, so every posted buffer is used).  Blocks are independent, so the
same seed gives the same batches whatever the time limit (with a time limit
the first block of each class is cut to ``FIRST_ROUND`` iterations, so a
short campaign reaches every class), and ``--jobs N``
(fuzz/jobs.py) hands worker ``j`` the blocks ``j, j+N, j+2N, ...`` and
merges: with ``--iterations`` the merged counts equal a one-process run's.
The campaign builds one arena and *resets* it (world/reset.py: in place,
about 1 ms instead of a 14 ms build) before every block and every attack
that needs the machine as built (``Attack.fresh``): a reset machine behaves
exactly as a fresh one (tests/world/test_reset.py), so the results are
those of a fresh arena each time.

With a ``Coverage`` (fuzz/coverage.py) every batch runs traced over
``verifier/``; a batch that reaches new lines is kept (``result.kept``), and
each later batch of a class with kept batches is, with probability
``MUTATE_CHANCE``, a mutation of one of them instead of a fresh one.  Attackes
passed in ``corpus`` (from ``--corpus DIR``) start the kept set.

Budgets (fuzz/budget.py): a time-bounded campaign stops generating while
its end check (the audit log's verification) still fits in ``seconds``; one
machine is reset again and again, so memory stays flat however long it runs.
``stop`` (a callable, checked between batches: Ctrl-C or SIGTERM in the
command line) ends it early; ``result.interrupted`` says so, everything
found until then is kept, and the end check is left out (the log is
complete up to the last batch: ``nic-sandbox audit verify`` checks it).

Per class the campaign counts descriptors *generated*, *rejected* (the
audit sink's record count delta over the batch), *accepted-and-safe* (the
rest of a batch in which the oracle found nothing) and *escapes* (oracle
findings).  Each distinct escape -- class and oracle kind -- is kept with
the exact batch that produced it, for a reproducer (fuzz/case.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fuzz.arena import MAX_BATCH, Arena
from fuzz.blocks import owned, per_block
from fuzz.budget import ArenaReaper, EndCheck, frozen_heap
from fuzz.classes import AttackClass, select
from fuzz.coverage import MAX_KEPT, MUTATE_CHANCE, Coverage
from fuzz.log_follow import LogFollower
from fuzz.oracle.audit import AuditWatch, audit_complete, audit_count
from fuzz.oracle.escape import Escape
from fuzz.oracle.liveness import Budget, alarm_scope, bounded_step
from fuzz.steps import Attack, Step
from fuzz.virtio_arena import MODES as VIRTIO_MODES
from verifier.audit import read as audit_read
from verifier.audit.memory import MemoryAudit
from verifier.audit.rejections import AuditSink
from verifier.modes.protection import Protection

DEFAULT_BATCH = 128
ARENA_EVERY = 128
#: With a time limit, each class's first block is this short, so a short campaign reaches every class early
#: (23 classes of 128-batch blocks need about 15 s on the 2-core test machine; a first round of 16 needs 2 s).
FIRST_ROUND = 16
#: Escape records kept per DMA batch or wire burst; the rest are counted (a leaking batch costs no more than a safe one)
DETAIL_LIMIT = 4


@dataclass
class ClassStats:
    generated: int = 0
    rejected: int = 0
    accepted_safe: int = 0
    escapes: int = 0
    batches: int = 0

    def add(self, other: ClassStats) -> None:
        """Count ``other``'s numbers in too (merging workers' counts)."""
        self.generated += other.generated
        self.rejected += other.rejected
        self.accepted_safe += other.accepted_safe
        self.escapes += other.escapes
        self.batches += other.batches

    def as_dict(self) -> dict[str, int]:
        return {
            "generated": self.generated,
            "rejected": self.rejected,
            "accepted_and_safe": self.accepted_safe,
            "escapes": self.escapes,
            "batches": self.batches,
        }


@dataclass
class Finding:
    """The first escape of one (class, oracle kind), with the batch that produced it."""

    cls: str
    kind: str
    escape: Escape
    batch: Attack
    block: int
    iteration: int
    #: seconds since the campaign started when it was found (how fast the fuzzer bites: fuzz/mutants)
    seconds: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return self.cls, self.kind


@dataclass
class Kept:
    """A batch kept by coverage feedback: it reached ``new_lines`` lines of verifier/ no earlier batch had."""

    cls: str
    batch: Attack
    new_lines: int
    block: int
    iteration: int


@dataclass
class ProgressInfo:
    """A campaign's running totals, handed to ``progress`` about ten times a second (a terminal's bar, the web view
    of ``fuzz --serve``).  Cheap to build: copies of a few counters per class and the list of findings so far."""

    iterations: int
    total: int | None  # iterations planned, or None when time-bounded
    elapsed: float
    seconds: float | None
    descriptors: int
    escapes: int
    rejected: int
    per_class: dict[str, tuple[int, int]] = field(default_factory=dict)  # class -> (generated, escapes)
    #: every selected class's counts so far (copies: the campaign goes on counting in its own)
    stats: dict[str, ClassStats] = field(default_factory=dict)
    #: lines of verifier/ reached so far, or None when coverage is off
    coverage: int | None = None
    #: the distinct escapes found so far, each with the batch that produced it (a reproducer can be written at once)
    findings: list[Finding] = field(default_factory=list)


@dataclass
class CampaignResult:
    protection: Protection
    seed: int
    classes: list[str]
    batch: int
    iterations: int = 0
    seconds: float = 0.0
    stats: dict[str, ClassStats] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    #: end-of-campaign audit completeness problems (counters against records, the chain); each is an escape
    audit_problems: list[Escape] = field(default_factory=list)
    #: verifier lines reached (``file:line``), or None when coverage was off
    coverage: set[str] | None = None
    kept: list[Kept] = field(default_factory=list)
    jobs: int = 1
    #: ended early by ``stop`` (Ctrl-C, SIGTERM): the counts are what was done; no end check ran
    interrupted: bool = False
    #: whether the end-of-campaign audit check ran (not when interrupted)
    audit_checked: bool = True

    @property
    def not_run(self) -> list[str]:
        """Classes that got no batch in the budget (a short time limit reaches only the first few)."""
        return [name for name in self.classes if not self.stats[name].batches]

    @property
    def descriptors(self) -> int:
        return sum(s.generated for s in self.stats.values())

    @property
    def escapes(self) -> int:
        return sum(s.escapes for s in self.stats.values()) + len(self.audit_problems)

    @property
    def rate(self) -> float:
        """Malicious descriptors tried per second."""
        return self.descriptors / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The deterministic part (no timings): same seed, same dict."""
        return {
            "protection": self.protection.value,
            "seed": self.seed,
            "batch": self.batch,
            "iterations": self.iterations,
            "classes": {name: self.stats[name].as_dict() for name in self.classes},
            "findings": [
                {"class": f.cls, "kind": f.kind, "what": f.escape.what, "block": f.block, "iteration": f.iteration}
                for f in self.findings
            ],
            "audit_problems": [e.what for e in self.audit_problems],
            **({} if self.coverage is None else {"coverage": {"lines": len(self.coverage), "kept": len(self.kept)}}),
        }


def guarded_step(arena: Arena, batch: Attack | Step) -> list[Escape]:
    """Run an attack (or one step) and return the oracle's verdict; an exception from the kernel or the device is
    a liveness finding.  Campaigns and reproducers run the same ``run``."""
    try:
        # bounded work, no crash, and (with an AuditWatch) one audit record per refusal mark
        bounded_step(arena.oracle, lambda: batch.run(arena), Budget(ring=arena.map.ring_size))
    except Exception as err:  # a backstop: bounded_step already turns exceptions into `crash` findings
        found = arena.settle()
        return [*found, Escape("crash", f"{type(err).__name__}: {err}")]
    return arena.settle()


def traced_step(cov: Coverage, arena: Arena, batch: Attack) -> tuple[list[Escape], int]:
    """``guarded_step`` under coverage: the oracle's verdict and how many new verifier lines it reached."""
    out: list[list[Escape]] = []
    new = cov.run(lambda: out.append(guarded_step(arena, batch)))
    return out[0], new


def run_campaign(
    protection: Protection | str,
    seed: int,
    classes: str | list[str] | list[AttackClass] | None = None,
    iterations: int | None = None,
    seconds: float | None = None,
    audit: AuditSink | None = None,
    progress: Callable[[ProgressInfo], None] | None = None,
    batch: int = DEFAULT_BATCH,
    arena_every: int = ARENA_EVERY,
    job: int = 0,
    jobs: int = 1,
    coverage: Coverage | bool = False,
    corpus: list[tuple[str, Attack]] | None = None,
    stop: Callable[[], bool] | None = None,
    blocks: Iterable[int] | None = None,
    on_block: Callable[[int, CampaignResult], list[tuple[str, Attack]]] | None = None,
    until_first: bool = False,
) -> CampaignResult:
    """Run a campaign for ``iterations`` batches or ``seconds`` (one of them; both: whichever ends first).

    ``job``/``jobs``: run only blocks ``job, job+jobs, ...`` (with ``iterations``: those blocks' share of
    the iterations), for fuzz/jobs.py.  ``coverage``: True or a ``Coverage`` turns on coverage feedback.
    ``corpus``: (class name, batch) pairs to mutate from the start.  ``stop``: checked before every
    batch; once true the campaign ends with what it has (``result.interrupted``).  ``blocks``: run these
    blocks, in this order, instead of ``job, job+jobs, ...`` (fuzz/blocks.py; a Ray worker's replacement
    skips the blocks already done).  ``on_block(block, result so far)``, called after each block (also one cut
    short), returns (class name, batch) pairs to add to the mutation pool: the corpus other workers shared.
    ``until_first``: end after the batch that gave the first finding (what a mutation run or a regression check
    wants: the time to the first finding is the answer, the rest of the budget is not needed).
    """
    if iterations is None and seconds is None:
        raise ValueError("give iterations or seconds")
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"batch must be 1..{MAX_BATCH}, got {batch}")
    if not 0 <= job < jobs:
        raise ValueError(f"job must be 0..{jobs - 1}, got {job}")
    protection = Protection(protection)
    if isinstance(classes, list) and all(isinstance(c, AttackClass) for c in classes) and classes:
        chosen = [c for c in classes if isinstance(c, AttackClass)]
    else:
        chosen = select(
            [c if isinstance(c, str) else c.name for c in classes] if isinstance(classes, list) else classes
        )
    virtio = [c.name for c in chosen if c.machine == "virtio"]
    if virtio and protection not in VIRTIO_MODES:
        raise ValueError(
            f"class{'es' if len(virtio) > 1 else ''} {', '.join(virtio)} run on virtio NICs, which support protection "
            f"{' and '.join(p.value for p in VIRTIO_MODES)}, not {protection.value}"
        )
    cov = Coverage() if coverage is True else coverage if isinstance(coverage, Coverage) else None
    pool: dict[str, list[Attack]] = {c.name: [] for c in chosen}
    for name, b in corpus or []:
        if name in pool:
            pool[name].append(b)
    sink: AuditSink = audit if audit is not None else MemoryAudit(keep=1000)
    watch = AuditWatch(sink, verify=audit_read.verify)
    follower = None
    if sink.capacity == 0 and sink.path is not None:  # a file-backed log: judged after every step too
        sink.commit()
        follower = LogFollower(sink.path)
        watch.follow = follower.items  # runs of descriptor records as columns (fuzz/log_follow.py)
        watch.holds = follower.holds  # the end check then verifies the chain, not every record again
        watch.pruned = follower.pruned_through  # records the disk budget deleted before they were followed
    end_check = EndCheck(sink, audit_read.verify, followed=follower is not None)
    result = CampaignResult(protection, seed, [c.name for c in chosen], batch, jobs=jobs)
    result.stats = {c.name: ClassStats() for c in chosen}
    size = per_block(iterations, len(chosen), arena_every)
    seen: set[tuple[str, str]] = set()
    start = time.perf_counter()
    deadline = None if seconds is None else start + seconds
    last_report = 0.0
    done = 0
    schedule = owned(job, jobs) if blocks is None else iter(blocks)

    def out_of_time() -> bool:
        if until_first and result.findings:
            return True
        if stop is not None and stop():
            result.interrupted = True
            return True
        return deadline is not None and time.perf_counter() + end_check.reserve() >= deadline

    def record(cls: AttackClass, found: list[Escape], b: Attack, it: int) -> None:
        result.stats[cls.name].escapes += len(found)
        for esc in found:
            if (cls.name, esc.kind) not in seen:
                seen.add((cls.name, esc.kind))
                result.findings.append(Finding(cls.name, esc.kind, esc, b, block, it, time.perf_counter() - start))

    reaper = ArenaReaper()
    arenas: dict[str, Arena] = {}

    def machine(name: str) -> Arena:
        """The machine ``name`` as built: built once, reset (world/reset.py) for every block and every fresh attack."""
        arena = arenas.get(name)
        if arena is None:
            arena = arenas[name] = Arena.build(
                protection, seed, sink, detail_limit=DETAIL_LIMIT, resettable=True, machine=name
            )
            reaper.retired()
        else:
            arena.reset()
        watch.watch(arena)
        return arena

    with frozen_heap(), alarm_scope():  # the step alarm's handler installed once, not per step
        for block in schedule:
            if (iterations is not None and block * size >= iterations) or out_of_time():
                break
            cls = chosen[block % len(chosen)]
            rng = np.random.default_rng([seed, block])
            name = block_machine(cls, block // len(chosen), protection)
            arena = machine(name)
            stats = result.stats[cls.name]
            kept = pool[cls.name]
            last: Attack | None = None
            todo = size if iterations is None else min(size, iterations - block * size)
            if iterations is None and block < len(chosen):
                todo = min(todo, FIRST_ROUND)
            for it in range(todo):
                if out_of_time():
                    break
                if kept and rng.random() < MUTATE_CHANCE:
                    b = kept[int(rng.integers(0, len(kept)))].mutate(rng)
                else:
                    b = cls.generate(rng, arena.map, batch)
                if b.machine != name:  # the block's machine, so that a reproducer replays there
                    b = replace(b, machine=name)
                if b.fresh and last is not None:  # a sequence that needs the memory map as built: the machine reset
                    record(cls, arena.close(), last, it - 1)
                    stats.escapes += arena.take_suppressed()
                    arena = machine(name)
                before = audit_count(sink)
                if cov is None:
                    found = guarded_step(arena, b)
                else:
                    found, new = traced_step(cov, arena, b)
                    if new and len(result.kept) < MAX_KEPT:
                        kept.append(b)
                        result.kept.append(Kept(cls.name, b, new, block, it))
                extra = arena.take_suppressed()
                rejected = audit_count(sink) - before
                stats.generated += b.size
                stats.rejected += rejected
                stats.batches += 1
                if not found:
                    stats.accepted_safe += max(0, b.size - rejected)
                record(cls, found, b, it)
                stats.escapes += extra
                last = b
                done += 1
                if progress is not None:
                    now = time.perf_counter()
                    if now - last_report >= 0.1:
                        last_report = now
                        progress(_info(result, done, iterations, now - start, seconds, cov))
            if last is not None:
                record(cls, arena.close(), last, size - 1)
                stats.escapes += arena.take_suppressed()
            if on_block is not None:
                for name, shared in on_block(block, result):
                    if name in pool:
                        pool[name].append(shared)
    if follower is not None:
        follower.close()
    if result.interrupted:
        result.audit_checked = False
    else:
        result.audit_problems = audit_complete(watch)
    result.iterations = done
    result.seconds = time.perf_counter() - start
    if cov is not None:
        result.coverage = set(cov.relative())
    if progress is not None:
        progress(_info(result, done, iterations, result.seconds, seconds, cov))
    return result


def block_machine(cls: AttackClass, round_: int, protection: Protection) -> str:
    """The machine (fuzz/arena.py ``MACHINES``) a block runs on: the class's own if it names one; else, under
    ``verifier``, every other round of blocks (the second, the fourth ...) on the kernel without its compiled fast
    path.  The numpy checks are the semantics and the C only an accelerator (verifier/rules/fastpath.py): the
    same classes against both, as Linux's BPF tests run each program under the JIT and the interpreter, find a
    rule that holds on one path only.  The first round stays on the compiled path, which takes clean batches."""
    if cls.machine:
        return cls.machine
    return "numpy" if protection is Protection.VERIFIER and round_ % 2 == 1 else ""


def _info(
    result: CampaignResult,
    done: int,
    total: int | None,
    elapsed: float,
    seconds: float | None,
    cov: Coverage | None,
) -> ProgressInfo:
    rejected = sum(s.rejected for s in result.stats.values())
    per_class = {name: (s.generated, s.escapes) for name, s in result.stats.items() if s.generated}
    return ProgressInfo(
        done,
        total,
        elapsed,
        seconds,
        result.descriptors,
        result.escapes,
        rejected,
        per_class,
        stats={name: replace(s) for name, s in result.stats.items()},
        coverage=None if cov is None else len(cov.lines),
        findings=list(result.findings),
    )
