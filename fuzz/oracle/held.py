"""Held packets: a TX packet left open at a doorbell's tail waits in the kernel, for a bounded number of doorbells.

The kernel cannot judge a packet before its EOP arrives (its length, its
fragment count and its checksum offsets are packet-level rules), so a packet
still open at the end of a doorbell is *held*: neither posted nor completed,
judged again whole with the next doorbell's descriptors.  docs/verifier.md
("Policy limits", ``PKT_UNTERMINATED``) bounds the wait: a packet that ends
``RuleBook.max_held_doorbells`` doorbells still open is held no longer; at
the next doorbell that leaves it open every fragment is refused as
``PKT_UNTERMINATED`` (AF_XDP likewise keeps a partial packet across
``sendmsg`` calls and drops it whole, ``xsk_drop_skb``).

The oracle keeps its own account (``HeldModel``), read from the tenant's TX
ring right after each doorbell the kernel took (inline engine: what a
doorbell posts is sent within it): the slots the doorbell consumed, after
the packet held from before, are *sent* (DD), *refused* (DD|REFUSED) or
*pending* (neither: held).  From that alone it demands, per doorbell:

* ring order: nothing after a pending slot is completed (the kernel hands
  the device whole packets in ring order; a packet is the consecutive
  descriptors up to EOP, 8254x 3.3.3), so pending slots are a suffix;
* no open packet is sent: the last sent slot carries EOP;
* the bound: a pending packet has ended at most ``max_held_doorbells``
  doorbells open;
* ``PKT_UNTERMINATED`` is true: such records are added only at the doorbell
  after a packet ended ``max_held_doorbells`` doorbells open (counted from
  the queue's audit statistics, which the oracle reads per reason).

The age is counted as the rule words it, from what the tenant sees: the
pending suffix starting at the same slot as the one held before is the same
open packet, one doorbell older; a pending suffix starting elsewhere is a
new packet, one doorbell old.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fuzz.oracle.audit import held_window
from fuzz.oracle.rules import RuleBook
from ring import indices
from ring.descriptors import TXD_CMD_EOP, TXD_STAT_DD, TXD_STAT_REFUSED

UNTERMINATED = "PKT_UNTERMINATED"


@dataclass
class HeldModel:
    """The packet one TX queue holds open: its first slot (-1: none) and the doorbells it has ended open."""

    start: int = -1
    age: int = 0


def window_facts(ring: npt.NDArray[np.void], first: int, count: int, size: int) -> tuple[int, int, int, bool]:
    """What ``judge_doorbell`` reads of the ``count`` TX slots from ``first`` on, as positions in that window: the
    first slot still held (DD clear), the first completed slot after it, the last sent slot (DD without REFUSED;
    -1: none of each), and whether that slot carries EOP.  The numpy semantics of ``audit.held_window``'s compiled
    read (tests/fuzz/test_oracle_fast_paths.py holds the two to the same facts)."""
    window = indices.slots(first, count, size)
    status = ring["status"][window]
    dd = (status & np.uint8(TXD_STAT_DD)) != 0
    sent = dd & ((status & np.uint8(TXD_STAT_REFUSED)) == 0)
    pending = ~dd
    p = r = last = -1
    if bool(pending.any()):
        p = int(np.argmax(pending))
        if bool(dd[p:].any()):
            r = p + int(np.argmax(dd[p:]))
    if bool(sent.any()):
        last = int(sent.nonzero()[0][-1])
    return p, r, last, last >= 0 and bool(int(ring["cmd"][window[last]]) & TXD_CMD_EOP)


def judge_doorbell(
    model: HeldModel,
    ring: npt.NDArray[np.void],
    before: int,
    after: int,
    size: int,
    rules: RuleBook,
    unterminated: int,
) -> list[str]:
    """Judge one TX doorbell the kernel took (tail ``before`` -> ``after``), update ``model``; one line per
    broken rule.  ``unterminated``: how many PKT_UNTERMINATED records the doorbell added (-1: not known)."""
    first = model.start if model.start >= 0 else before
    count = indices.used(first, after, size)
    facts = held_window(ring, first, count, size)
    p, r, last, last_eop = facts if facts is not None else window_facts(ring, first, count, size)
    problems: list[str] = []
    # the bound, as of this doorbell: the packet held before ended ``age`` doorbells open
    due = model.start >= 0 and model.age >= rules.max_held_doorbells
    if p >= 0:
        if r >= 0:
            problems.append(
                f"slot {(first + r) % size} was completed while slot {(first + p) % size} before it is still held "
                "(a packet is the consecutive descriptors up to EOP, handed over in ring order)"
            )
        same = model.start == (first + p) % size and p == 0
        model.age = model.age + 1 if same else 1
        model.start = (first + p) % size
        if model.age > rules.max_held_doorbells:
            problems.append(
                f"the packet open at slot {model.start} is still held after {model.age} doorbells "
                f"> {rules.max_held_doorbells}, which breaks {UNTERMINATED}"
            )
    else:
        model.start, model.age = -1, 0
    if last >= 0 and not last_eop:
        problems.append(
            f"slot {(first + last) % size} was sent without EOP and nothing after it: an open packet given to the "
            f"device (a packet waits for its EOP, at most {rules.max_held_doorbells} doorbells, "
            f"then goes as {UNTERMINATED})"
        )
    if unterminated > 0 and not due:
        problems.append(
            f"{unterminated} {UNTERMINATED} record(s) for a packet that had not ended "
            f"{rules.max_held_doorbells} doorbells open"
        )
    return problems
