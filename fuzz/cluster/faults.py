"""Faults: a worker (or its whole node) that dies mid-campaign, what it left unfinished, and the record of it.

A worker's blocks are ``job, job+n, ...`` (fuzz/blocks.py).  The corpus
actor knows which of them were pushed (finished and recorded); the rest
are handed, unchanged, to a replacement actor, which Ray places on any
node with a free CPU.  The first of them is the block the dead worker was
in the middle of: it is rerun from its start (its generator depends only
on the seed and the block number, so the rerun draws the same batches),
and what the dead worker did of it was never counted, so nothing is
counted twice.  A job is retried at most ``MAX_RETRIES`` times; after that
its remaining blocks are reported as not run.
"""

from __future__ import annotations

from dataclasses import dataclass

from fuzz.blocks import owned

MAX_RETRIES = 3
#: Blocks named one by one in a report (a timed campaign's block sequence never ends).
SHOWN = 8


@dataclass
class Retry:
    """One replaced worker: which job, on which node it died, why, and the blocks its replacement took over."""

    job: int
    attempt: int  # the replacement's attempt number (1 for the first replacement)
    node: str
    error: str
    rerun: list[int]  # the blocks handed to the replacement (for a timed campaign: the first few)

    def as_dict(self) -> dict[str, object]:
        return {"job": self.job, "attempt": self.attempt, "node": self.node, "error": self.error, "rerun": self.rerun}


def unfinished(job: int, jobs: int, total: int | None, done: set[int]) -> list[int]:
    """The blocks of ``job`` not yet pushed (for a timed campaign, the next ``SHOWN`` of an endless sequence)."""
    left = owned(job, jobs, total, done)
    if total is not None:
        return list(left)
    return [next(left) for _ in range(SHOWN)]


def describe(error: BaseException) -> str:
    """One line for the report: the exception's type and its first line."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]
