"""Attack class ``ring-order``: RX slots handed back out of order, then a tail at the full-lap edge.

The kernel hands a refused RX slot back to the tenant at once (marked, in
her ring) and a valid one only when the device is done with it, so the slots
come back out of order whenever refusals sit among buffers in flight.  Its
``done`` (the oldest slot not yet handed back) must step over the refused
slots exactly when the valid slots before them come back -- never past a
slot the device still holds, never lagging behind one it gave back: the
tenant may fill every free slot and no other (docs/verifier.md, "Ring
indices": she owns ``[tail, done - 1)``).  The other classes refuse whole
batches, or post valid ones, so ``done`` only ever moves in order.

Each attack, from a machine as built:

* RX buffers rung, some refused (one byte past a write-pinned run) among
  valid ones, in three shapes: refusals at the consumer with a one-slot gap
  (``R (R) V R V ...``: ``done`` may leap the valid slot), valid slots then a
  refusal (``V .. V R V ...``: ``done`` may stop short of it once they come
  back), or refusals scattered at random;
* eve's frames for the valid slots up to just before a refused one (0 to
  all of them);
* the rest of the ring written, then a tail at the full-lap edge counted from
  the oldest slot the device still holds (which the generator knows: it
  chose what is refused and how many frames eve sends): one less (the ring
  exactly full: hers to take), equal (an overrun: refused), one more;
* eve's frames for everything a tail may have handed over.

The oracle's ring account (fuzz/oracle/geometry.py) demands the refusal of
the overrun and the acceptance of the full ring, from the slots it saw given
to the device and the device's own head.
"""

from __future__ import annotations

import numpy as np

from fuzz.arena import MemoryMap
from fuzz.edges import RX_BUFFER, WRITE, _one_past, valid_ranges
from fuzz.steps import Attack, EveSends, Reg, Rx, Step
from ring import regs


def ring_order(rng: np.random.Generator, m: MemoryMap, n: int) -> Attack:
    size = m.ring_size
    k = int(rng.integers(4, min(max(n, 5), 128) + 1))
    hostile = np.zeros(k, dtype=bool)
    shape = rng.random()
    if shape < 0.4:  # refusals at the consumer, one valid slot, a refusal: done may leap the valid one
        lead = int(rng.integers(1, 3))
        hostile[:lead] = True
        hostile[lead + 1] = True
    elif shape < 0.8:  # valid slots, then a refusal: done must step over it when they come back
        hostile[int(rng.integers(1, k))] = True
    else:
        hostile = rng.random(k) < 0.3
    first = valid_ranges(rng, m, WRITE, np.full(k, RX_BUFFER, dtype=np.int64))
    for i in np.flatnonzero(hostile).tolist():
        first[i] = np.uint64(_one_past(rng, m, WRITE, RX_BUFFER))
    valid = np.flatnonzero(~hostile)
    # eve's frames: the valid slots up to just before a refused one (where a lagging or leaping done shows)
    ends = [int(np.count_nonzero(~hostile[:g])) for g in np.flatnonzero(hostile).tolist() if g and not hostile[g - 1]]
    pick = rng.random()
    c = int(rng.choice(ends)) if ends and pick < 0.6 else 0 if pick < 0.8 else int(rng.integers(0, valid.size + 1))
    done = int(valid[c]) if c < valid.size else k  # the oldest slot the device still holds (else the tail)
    more = int(rng.integers(1, min(n, 255) + 1))
    tail = (done + int(rng.choice([-1, 0, 1]))) % size
    # every other slot of the ring written too, address 0 (a kernel frame); the lap hands first's slots back as
    # they are (received: posted again; refused: refused again, after the tenant reaped the refusal)
    extra = valid_ranges(rng, m, WRITE, np.full(more, RX_BUFFER, dtype=np.int64))
    extra = np.concatenate((extra, np.zeros(max(0, size - 1 - k - more), dtype=np.uint64)))
    steps: list[Step] = [Rx(first), *([EveSends(c)] if c else []), Rx(extra, doorbell=False), Reg(regs.RDT, tail)]
    steps += [EveSends(255), EveSends(255), EveSends(1)]
    return Attack(tuple(steps), fresh=True)
