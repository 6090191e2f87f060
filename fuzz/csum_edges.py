"""Attack class ``csum-edge``: TX checksum offload (IC, CSO, CSS) at the edges of the packet it names.

The rule (docs/verifier.md ``CSUM_OFFSET``, 8254x manual 3.3.3): a complete
packet whose first descriptor asks for checksum insertion (IC) must have
``CSO + 2 <= packet length`` and ``CSS < packet length``; an open packet is
judged when it completes; the reason is charged to the first descriptor only
when none of that descriptor's own rules (CMD_UNSUPPORTED, LEN_ZERO,
LEN_TOO_LONG, the address rules) refuses it first.  ``bad-cmd`` throws offsets
far outside single-descriptor packets and ``hidden`` meets the edge once in a
while; this class aims at the three places where a slip in the rule's
conditions changes a verdict, one per attack:

* ``end``: CSO on its last valid byte and CSS exactly on the packet's end (or
  one short of it), over one to three fragments: only the ``>=`` of the CSS
  rule refuses it;
* ``open``: the packet's first fragments end a doorbell without EOP, their
  offsets past what is posted so far but inside the packet the next doorbell
  completes (or past that too): the kernel must hold it, and judge it only
  when complete;
* ``outranked``: the first descriptor's offsets lie outside its packet and the
  descriptor also breaks a rule that comes first in precedence (a zero length,
  or an unsupported command bit): the record must name that rule.

Each attack runs in a machine as built, so no packet left open by another
class joins it; the buffers are mallory's read-pinned runs, so the checksum
and the descriptor rules are the only ones in play.  CSO and CSS are one byte
each: the packets stay under 256 bytes.
"""

from __future__ import annotations

import numpy as np

from fuzz.arena import MemoryMap
from fuzz.edges import READ, UNKNOWN, valid_ranges
from fuzz.steps import Attack, Step, Tx, tx_batch
from fuzz.steps.tx import GOOD
from ring.descriptors import TXD_CMD_IC, TXD_CMD_IFCS, TXD_CMD_RS

MORE = TXD_CMD_IFCS | TXD_CMD_RS  # a fragment that is not its packet's last
#: The three edges, by name (tests pick one with ``edge``).
EDGES = ("end", "open", "outranked")


def _valid(rng: np.random.Generator, m: MemoryMap, k: int) -> tuple[list[int], list[int], list[int]]:
    """``k`` valid single-descriptor packets (short, inside read-pinned runs), as columns addr, length, cmd."""
    length = rng.integers(14, 400, k).astype(np.int64)
    return valid_ranges(rng, m, READ, length).tolist(), length.tolist(), [GOOD] * k


def _packet(rng: np.random.Generator, m: MemoryMap, frags: int, total_max: int) -> tuple[list[int], list[int]]:
    """A packet of ``frags`` fragments, at most ``total_max`` bytes, each at least 2 bytes: addr and length."""
    length = rng.integers(2, max(3, total_max // frags) + 1, frags).astype(np.int64)
    return valid_ranges(rng, m, READ, length).tolist(), length.tolist()


def _doorbell(
    rng: np.random.Generator,
    m: MemoryMap,
    addr: list[int],
    length: list[int],
    cmd: list[int],
    cso: int,
    css: int,
    tail: bool,
    lead: bool = True,
) -> Tx:
    """Valid packets before the edge packet when ``lead`` (not before the rest of a packet held open: they would
    join it), and after it unless ``tail`` (it ends the doorbell); IC and the offsets on every fragment of it, as
    a driver writes them (the first fragment's count)."""
    before = _valid(rng, m, int(rng.integers(0, 4)) if lead else 0)
    after = ([], [], []) if tail else _valid(rng, m, int(rng.integers(0, 4)))
    k = len(addr)
    return Tx(
        tx_batch(
            before[0] + addr + after[0],
            before[1] + length + after[1],
            before[2] + [c | TXD_CMD_IC for c in cmd] + after[2],
            [0] * len(before[0]) + [cso] * k + [0] * len(after[0]),
            [0] * len(before[0]) + [css] * k + [0] * len(after[0]),
        )
    )


def csum_edge(rng: np.random.Generator, m: MemoryMap, n: int, edge: str | None = None) -> Attack:
    """One attack at one of ``EDGES`` (``edge``, else chosen by ``rng``)."""
    which = edge if edge is not None else EDGES[int(rng.integers(0, len(EDGES)))]
    frags = int(rng.integers(1, 4))
    steps: list[Step] = []
    if which == "end":
        addr, length = _packet(rng, m, frags, 250)
        total = sum(length)
        cso = total - 2 + int(rng.random() < 0.25)  # on its last valid byte, a quarter of the time one past
        css = total - int(rng.random() < 0.25)  # exactly on the end, a quarter of the time its last byte
        cmd = [MORE] * (frags - 1) + [GOOD]
        steps.append(_doorbell(rng, m, addr, length, cmd, cso, css, tail=rng.random() < 0.5))
    elif which == "open":
        frags = max(frags, 2)
        addr, length = _packet(rng, m, frags, 250)
        total = sum(length)
        posted = int(rng.integers(1, frags))  # fragments in the first doorbell: the packet ends it open
        cso = total - 2 + int(rng.random() < 0.25)  # past what is posted; inside the whole packet, or one past it
        css = int(rng.integers(sum(length[:posted]), total + int(rng.random() < 0.25)))
        cmd = [MORE] * (frags - 1) + [GOOD]
        steps.append(_doorbell(rng, m, addr[:posted], length[:posted], cmd[:posted], cso, css, tail=True))
        steps.append(
            _doorbell(rng, m, addr[posted:], length[posted:], cmd[posted:], cso, css, rng.random() < 0.5, False)
        )
    else:  # outranked: offsets outside the packet, and the first descriptor's own rule comes first
        addr, length = _packet(rng, m, frags, 200)
        cmd = [MORE] * (frags - 1) + [GOOD]
        if rng.random() < 0.5:
            length[0] = 0
        else:
            cmd[0] |= UNKNOWN[int(rng.integers(0, len(UNKNOWN)))]
        total = sum(length)
        cso = max(0, total - 1) + int(rng.integers(0, 40))  # CSO + 2 > the packet's length
        css = int(rng.integers(0, 256)) if rng.random() < 0.5 else 0
        steps.append(_doorbell(rng, m, addr, length, cmd, cso, css, tail=rng.random() < 0.5))
    return Attack(tuple(steps), fresh=True)
