"""RX and traffic steps: buffers posted on mallory's RX ring, a doorbell at a natural tail, eve's frames.

RX buffer addresses are 64-bit bus addresses written as hex strings; a
post may leave the doorbell for a later ``doorbell`` step, and eve's frames
(``eve_sends``) are what makes the device write into posted buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt

from fuzz.arena import MAX_BATCH, RING
from fuzz.steps.base import Step
from fuzz.steps.mutation import mutate
from fuzz.steps.spec import U64, Flag, Int, Key, ListOf, Text, u

if TYPE_CHECKING:
    from fuzz.arena import Arena

Addrs = npt.NDArray[np.uint64]
#: An RX buffer as the minimiser sees it: a 2 KiB buffer (the RCTL buffer size the arena's device runs with).
RX_BUFFER = 2048
QUEUES = ("rx", "tx")


def _addrs_build(items: list[int]) -> Addrs:
    return np.array(items, dtype=np.uint64)


def _addrs_unbuild(addrs: Addrs) -> list[int]:
    return [int(a) for a in addrs.tolist()]


@dataclass(frozen=True, eq=False)
class Rx(Step):
    """Empty RX buffers at ``addrs`` posted on mallory's RX ring, then the doorbell (unless ``doorbell`` is False:
    written only, for a later ``doorbell`` step).  Within the ring: at most ``RING - 1`` buffers at once."""

    addrs: Addrs
    doorbell: bool = True

    kind: ClassVar[str] = "rx"
    VERB: ClassVar[str] = "refused"
    POSTS_BUFFERS: ClassVar[bool] = True
    FIELDS: ClassVar[dict[str, Key]] = {
        "addrs": Key(ListOf(u(U64, "#x"), RING - 1, _addrs_build, _addrs_unbuild), default=np.zeros(0, np.uint64)),
        "doorbell": Key(Flag(), default=True, always=False),
    }

    def run(self, arena: Arena) -> None:
        arena.rx(self.addrs, self.doorbell)

    def describe(self) -> str:
        addrs: list[str] = self.to_json()["addrs"]
        bell = "" if self.doorbell else " (no doorbell)"
        more = " ..." if len(addrs) > 6 else ""
        return f"rx: post {len(addrs)} buffer(s) at {', '.join(addrs[:6])}{more}{bell}"

    def quiet(self) -> str:
        return "accepted, nothing escaped" if self.doorbell else "written (no doorbell yet)"

    @property
    def size(self) -> int:
        return int(self.addrs.size)

    def mutate(self, rng: np.random.Generator, share: float) -> Step:
        if not self.addrs.size:
            return self
        return replace(self, addrs=mutate(rng, self.addrs.astype(np.uint64), share))

    def items(self) -> list[tuple[int, int]]:
        return [(int(a), RX_BUFFER) for a in self.addrs.tolist()]

    def keep(self, positions: list[int]) -> Step:
        return replace(self, addrs=self.addrs[np.asarray(positions, dtype=np.int64)] if positions else self.addrs[:0])


@dataclass(frozen=True, eq=False)
class Doorbell(Step):
    """Mallory rings ``queue`` ("rx" or "tx") at its natural tail: what earlier steps wrote without a doorbell."""

    queue: str

    kind: ClassVar[str] = "doorbell"
    VERB: ClassVar[str] = "refused"
    FIELDS: ClassVar[dict[str, Key]] = {"queue": Key(Text(QUEUES))}

    def run(self, arena: Arena) -> None:
        arena.doorbell(self.queue)

    def describe(self) -> str:
        return f"doorbell: mallory rings her {self.queue} queue at its natural tail"


@dataclass(frozen=True, eq=False)
class EveSends(Step):
    """Eve sends ``count`` frames to mallory's NIC (at most a batch), so that posted RX buffers are used."""

    count: int = 1

    kind: ClassVar[str] = "eve_sends"
    FIELDS: ClassVar[dict[str, Key]] = {"count": Key(Int(0, MAX_BATCH), default=1)}

    def run(self, arena: Arena) -> None:
        arena.eve_sends(self.count)

    def describe(self) -> str:
        return f"eve sends {self.count} frame(s) to mallory"

    def follow_buffers(self, posted: int) -> Step:
        return EveSends(max(1, min(posted, MAX_BATCH)))  # a step sends at most a batch


def post_and_receive(addrs: Addrs) -> tuple[Step, ...]:
    """RX buffers posted and rung, then as many of eve's frames: every posted buffer is used."""
    return Rx(addrs), EveSends(int(addrs.size))
