"""Attack class ``held``: TX packets left open across doorbells, held by the kernel at the exact edge of its bound.

A packet still open at the end of a doorbell waits in the kernel for its
EOP, at most ``max_held_doorbells`` (8) doorbells (docs/verifier.md,
``PKT_UNTERMINATED``); every other class rings its packets whole, or leaves
one open and then overruns the fragment limit, so the bound itself is never
met.  Here each doorbell brings one or two fragments of valid descriptors
(mallory's read-pinned runs, short lengths: 18 fragments and 9014 bytes stay
far away), so only the held-packet rules can refuse anything:

* an earlier packet held for 0..8 doorbells, then closed -- by a doorbell of
  its EOP alone (a batch every descriptor of which is valid with EOP, the
  kind the compiled fast path takes whole: it must not while a packet is
  held), or by one that also opens the next packet;
* that next packet held open for bound - 1, bound, bound + 1 or bound + 2
  doorbells (the ninth that leaves it open must refuse it whole);
* then its EOP alone, or a clean batch of whole packets.

The oracle's held-packet account (fuzz/oracle/held.py) judges each doorbell
from the tenant's ring.  Each attack runs in a machine as built, so no
packet left open by another class joins it.
"""

from __future__ import annotations

import numpy as np

from fuzz.arena import MemoryMap
from fuzz.edges import READ, valid_ranges
from fuzz.oracle.rules import DEFAULT_RULES
from fuzz.steps import Attack, Step, Tx, tx_batch
from fuzz.steps.tx import GOOD
from ring.descriptors import TXD_CMD_IFCS, TXD_CMD_RS

MORE = TXD_CMD_IFCS | TXD_CMD_RS  # a fragment that is not its packet's last
#: The documented bound the doorbell counts are aimed at (the oracle's rule book states it with its source).
BOUND = DEFAULT_RULES.max_held_doorbells


def _doorbell(rng: np.random.Generator, m: MemoryMap, eop: list[bool]) -> Tx:
    """One doorbell of valid fragments (short, inside read-pinned runs), EOP as given per descriptor."""
    length = rng.integers(14, 400, len(eop)).astype(np.int64)
    cmd = np.where(np.array(eop), GOOD, MORE).astype(np.int64)
    return Tx(tx_batch(valid_ranges(rng, m, READ, length), length, cmd))


def held(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    """An earlier packet held 0..bound doorbells, then the next one held bound - 1 .. bound + 2 (see the module)."""
    steps: list[Step] = []
    earlier = int(rng.integers(0, BOUND + 1))
    steps += [_doorbell(rng, m, [False] * int(rng.integers(1, 3)) if i == 0 else [False]) for i in range(earlier)]
    together = earlier > 0 and rng.random() < 0.5
    if earlier and not together:
        steps.append(_doorbell(rng, m, [True]))  # its EOP alone: a batch the compiled path would take whole
    waits = int(rng.choice([BOUND - 1, BOUND, BOUND + 1, BOUND + 2]))
    steps.append(_doorbell(rng, m, [True, False] if together else [False]))
    steps += [_doorbell(rng, m, [False]) for _ in range(waits - 1)]
    if rng.random() < 0.5:
        steps.append(_doorbell(rng, m, [True]))
    else:
        steps.append(_doorbell(rng, m, [True] * int(rng.integers(2, max(3, min(n, 32))))))
    return Attack(tuple(steps), fresh=True)
