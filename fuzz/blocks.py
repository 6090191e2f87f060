"""The block scheme every parallel campaign shares: which blocks exist and which a worker owns.

A campaign is a sequence of blocks (fuzz/campaign.py): block ``b`` runs one
attack class with its own generator ``default_rng([seed, b])`` on a freshly
reset machine, so a block's batches depend only on the seed and ``b`` --
not on the process, the machine or what ran before it.  Worker ``j`` of
``n`` owns the blocks ``j, j+n, j+2n, ...`` (``--jobs`` with processes,
fuzz/jobs.py; ``--ray`` with actors, fuzz/cluster/).  Because blocks are
independent, a block can be rerun anywhere (a Ray worker that died: its
unfinished block is run again by its replacement) and give the same
batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator


def per_block(iterations: int | None, classes: int, arena_every: int) -> int:
    """Iterations in one block: ``arena_every``, or each class's share of ``iterations`` when that is smaller."""
    if iterations is None:
        return arena_every
    return max(1, min(arena_every, iterations // classes))


def block_count(iterations: int | None, classes: int, arena_every: int) -> int | None:
    """How many blocks an ``iterations`` campaign has (None: a timed campaign's blocks never run out)."""
    if iterations is None:
        return None
    size = per_block(iterations, classes, arena_every)
    return -(-iterations // size)


def owned(job: int, jobs: int, total: int | None = None, skip: Collection[int] = ()) -> Iterator[int]:
    """Worker ``job``'s blocks ``job, job+jobs, ...`` below ``total`` (all, when None), less those in ``skip``."""
    numbers = itertools.count(job, jobs) if total is None else iter(range(job, total, jobs))
    return (b for b in numbers if b not in skip)
