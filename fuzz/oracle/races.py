"""The race's windows: when a TOCTOU write may land, judged from the oracle's own account of the ring.

The fuzzer's deterministic race (``Arena.tx`` with a rewrite) places mallory's
write at one of two moments the kernel declares for it (verifier/queue_state.py):
``before_read``, the last moment before the kernel reads the new descriptors of a
doorbell, and ``after_check``, between its check and the device's read.  Both
exist once for a doorbell that brings descriptors and not at all for one that
brings none (the same tail again, or a tail the kernel refuses): there is then
nothing to read, check or hand the device.  That is the TOCTOU model the sandbox
stands on: a kernel that reads the new descriptors without passing its
``before_read`` moment has a read the race cannot precede (every "written before
the read" attack silently becomes "written after it", and the race class tests
nothing), and one that offers ``after_check`` on an empty doorbell opens a window
that does not exist.  Either is a finding of kind ``"race"``.

Whether the doorbell brought descriptors comes from the oracle (its tail account,
``RingModel``, and whether a packet was held open before: a kernel may read a held
packet's slots again on any doorbell, so that case is not judged), not from the
kernel; how many times the write landed comes from the attacker, who made it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fuzz.oracle.escape import Escape


@dataclass(frozen=True)
class RaceWrite:
    """A race write on one doorbell: the kernel moment it is to land at, and how often it did (the attacker's count)."""

    point: str  # "before_read" or "after_check"
    landed: Callable[[], int]


def judge_race(race: RaceWrite, nic: str, kind: str, moved: bool, held_open: bool) -> list[Escape]:
    """One finding if the write landed other than once for a doorbell that ``moved`` the tail the kernel took, or at
    all for one that did not (none judged when a packet was ``held_open`` before and the tail did not move)."""
    if not moved and held_open:
        return []
    want = 1 if moved else 0
    got = race.landed()
    if got == want:
        return []
    brought = "brought descriptors" if moved else "brought none (the same tail, or one refused)"
    # a case file's expect.what is one short line (fuzz/case.py): the rule is in this module's docstring
    return [
        Escape(
            "race", f"{nic} {kind} doorbell {brought}: its {race.point} window opened {got} time(s), not {want}", nic
        )
    ]
