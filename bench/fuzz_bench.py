"""Fuzzer throughput: malicious descriptors tried per second on one core, batch mode and one at a time.

Judged by the oracle, rejections counted by an in-memory audit sink
(``MemoryAudit``: the campaign default).  Issue 4's goal is 200,000
descriptors per second per core in batch mode against the modes that have
something to fire at (``verifier``, ``iommu``): the classes whose attack is
one doorbell's batch of descriptors (``BATCH_CLASSES``), every one of them
visited in the measurement.  Against ``none`` nearly every descriptor
escapes, so the device assembles and sends each frame and the oracle scans
it: that figure is the emulated device's cost, printed without a verdict.
The line "every class" adds the classes whose attack is a sequence of
operations (register writes, unpin/free/reuse, interleavings, races): each
sequence builds a fresh machine, so they are measured in sequences per
second, not against the batch goal.

Sequence mode (``measure_sequence``): only the classes whose batches are
operation sequences or ring-state attacks (``SEQUENCE_CLASSES``:
use-after-unpin, race, ring-index), reported as descriptors and as attack
batches (sequences) per second.
"""

from __future__ import annotations

from dataclasses import dataclass

from fuzz.campaign import run_campaign

GOAL = 200_000
SEQUENCE_CLASSES = ("use-after-unpin", "race", "ring-index")
#: One doorbell's worth of descriptors per attack (fuzz/classes.py): the batch-mode classes.
BATCH_CLASSES = (
    "kernel-tx",
    "kernel-rx",
    "other-tenant",
    "own-unpinned",
    "straddle",
    "wrap",
    "beyond-memory",
    "bad-length",
    "fragments",
    "bad-cmd",
    "access-mismatch",
    "ring-index",
)


@dataclass(frozen=True)
class FuzzRate:
    protection: str
    batch: int
    descriptors: int
    seconds: float
    escapes: int
    batches: int = 0
    classes: str = "all"
    visited: int = 0  # classes that ran at least one batch in the time given

    @property
    def rate(self) -> float:
        return self.descriptors / self.seconds if self.seconds > 0 else 0.0

    @property
    def batch_rate(self) -> float:
        """Attack batches (single doorbells or whole operation sequences) per second."""
        return self.batches / self.seconds if self.seconds > 0 else 0.0


def measure(
    protection: str,
    batch: int,
    seconds: float = 1.5,
    seed: int = 1,
    classes: str | list[str] | None = None,
    arena_every: int = 128,
    iterations: int | None = None,
) -> FuzzRate:
    """One time-bounded campaign over every class (or ``classes``); a fresh arena every ``arena_every`` batches.

    ``iterations`` bounds it by batches instead (the figure's shape, independent of how busy the machine is).
    """
    budget = {"iterations": iterations} if iterations is not None else {"seconds": seconds}
    result = run_campaign(protection, seed, classes, batch=batch, arena_every=arena_every, **budget)
    batches = sum(s.batches for s in result.stats.values())
    label = "all" if classes is None else ",".join(result.classes)
    visited = sum(1 for s in result.stats.values() if s.batches)
    return FuzzRate(protection, batch, result.descriptors, result.seconds, result.escapes, batches, label, visited)


def measure_sequence(
    protection: str,
    batch: int = 128,
    seconds: float = 1.5,
    seed: int = 1,
    classes: tuple[str, ...] = SEQUENCE_CLASSES,
    iterations: int | None = None,
) -> FuzzRate:
    """Sequence mode: the sequence and ring-state classes only (default use-after-unpin, race, ring-index).

    Blocks of 8 batches, so a short measurement rotates over every class (a use-after-unpin sequence builds
    an arena of its own: its blocks are the slow ones).
    """
    return measure(protection, batch, seconds, seed, list(classes), arena_every=8, iterations=iterations)


def main() -> None:  # python -m bench.fuzz_bench
    for protection in ("none", "verifier", "iommu"):
        for batch in (1, 255):
            # Blocks of 128 batches, each on a fresh machine, as a campaign runs: 3 s visit every batch class.
            r = measure(protection, batch, seconds=3.0, classes=list(BATCH_CLASSES))
            print(
                f"{protection:8} batch {batch:3}, {r.visited}/{len(BATCH_CLASSES)} batch classes: "
                f"{r.rate:10,.0f} desc/s "
                f"({r.escapes:,} escapes){_goal(r) if batch > 1 and protection != 'none' else ''}"
            )
        every = measure(protection, 255, seconds=3.0, arena_every=8)
        print(
            f"{protection:8} batch 255, every class (sequences too): {every.rate:10,.0f} desc/s, "
            f"{every.batch_rate:7,.0f} attacks/s ({every.escapes:,} escapes)"
        )
        for classes in (SEQUENCE_CLASSES, *((c,) for c in SEQUENCE_CLASSES)):
            s = measure_sequence(protection, classes=classes)
            print(
                f"{protection:8} sequence mode, {s.classes:32}: {s.rate:10,.0f} desc/s, "
                f"{s.batch_rate:7,.0f} batches/s ({s.escapes:,} escapes)"
            )


def _goal(r: FuzzRate) -> str:
    return f"  x{r.rate / GOAL:.2f} the {GOAL:,}/s goal"


if __name__ == "__main__":
    main()
