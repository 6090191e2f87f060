"""The mutation component: perturbations of addresses and descriptors around a target, from one generator.

``mutate`` moves a share of addresses by +-1 or +-page or flips a low bit
(the generators use it on their own targets; coverage feedback on kept
batches); ``mutate_descs`` also nudges lengths by +-1 or +-page and flips a
command bit.  Every draw comes from the caller's generator, in a fixed
order, so a campaign stays deterministic for a seed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ring.memory import PAGE_SIZE

U64 = npt.NDArray[np.uint64]


def mutate(rng: np.random.Generator, addrs: U64, share: float = 0.25) -> U64:
    """The mutation component: +-1, +-page and low-bit flips on a share of the addresses."""
    n = addrs.size
    hit = rng.random(n) < share
    steps = np.array([1, -1, PAGE_SIZE, -PAGE_SIZE], dtype=np.int64)
    delta = np.where(rng.random(n) < 0.5, steps[rng.integers(0, 4, n)], 0).astype(np.int64)
    flip = np.where(delta == 0, np.left_shift(1, rng.integers(0, 12, n)), 0).astype(np.int64)
    moved = (addrs.astype(np.int64) + delta) ^ flip
    return np.where(hit, moved.astype(np.uint64), addrs)


def mutate_descs(rng: np.random.Generator, descs: npt.NDArray[np.void], share: float) -> npt.NDArray[np.void]:
    """A mutated copy of TX descriptors: ``addr`` as ``mutate``, ``length`` +-1 or +-page, a flipped ``cmd`` bit."""
    descs = descs.copy()
    n = descs.size
    descs["addr"] = mutate(rng, descs["addr"].astype(np.uint64), share)
    step = np.array([1, -1, PAGE_SIZE, -PAGE_SIZE], dtype=np.int64)[rng.integers(0, 4, n)]
    hit = rng.random(n) < share / 2
    descs["length"] = np.where(hit, (descs["length"].astype(np.int64) + step) & 0xFFFF, descs["length"])
    flip = np.left_shift(1, rng.integers(0, 8, n)).astype(np.int64)
    hit = rng.random(n) < share / 4
    descs["cmd"] = np.where(hit, descs["cmd"].astype(np.int64) ^ flip, descs["cmd"])
    return descs
