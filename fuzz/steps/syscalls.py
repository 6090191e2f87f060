"""System-call steps: mallory pins and unpins any range, and stores into any register of any NIC.

The other steps use the kernel as an honest tenant would (whole regions
pinned, her own NIC's registers); these give the attacker the whole
surface, with the arguments at their boundaries: a pin that starts a byte
before a span (in the guard page), ends a byte after it, is zero bytes long,
covers part of a region, overlaps a pin, asks for no or an unknown access; an
unpin of a handle that is not hers; a queue opened over any region with any
ring size (shorter than the ring, unaligned, not a multiple of 8); a store into another tenant's doorbell
or ring registers (ring/regs.py offsets, within BAR0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from fuzz.arena import NICS, PIN_REACH, QUEUE_KINDS
from fuzz.steps.base import Step
from fuzz.steps.spec import U32, Int, Key, Text, u
from ring.regs import BAR0_SIZE, REG_WIDTH

if TYPE_CHECKING:
    from fuzz.arena import Arena

#: Mallory's spans a pin_range may name (each with guard pages around it).
RANGE_SPANS = ("spare", "holey", "uaf")
#: The largest span (3 pages) plus the reach on both sides.
MAX_RANGE = 3 * 4096 + 2 * PIN_REACH
MAX_PINS = 64  # unpin_range index: pins of one attack, plus a few indexes no pin has
#: Spans a queue's ring may be opened over (``scattered_lo`` is followed by alice's frame).
RING_SPANS = ("spare", "holey", "uaf", "scattered_lo")
MAX_RING_BYTES = 1 << 21  # a ring of 65544 slots (one size too many) and a descriptor more, and then some
#: How far past a span ``open_queue`` may name its ring: into the unmapped addresses after the spans.
UNMAPPED_REACH = 64 * 4096
MAX_RING_OFFSET = 4 * 4096 + UNMAPPED_REACH


@dataclass(frozen=True, eq=False)
class PinRange(Step):
    """Mallory pins ``length`` bytes at ``offset`` into ``span`` with device ``access`` (any value 0..7)."""

    span: str
    offset: int
    length: int
    access: int

    kind: ClassVar[str] = "pin_range"
    FIELDS: ClassVar[dict[str, Key]] = {
        "span": Key(Text(RANGE_SPANS)),
        "offset": Key(Int(-PIN_REACH, 3 * 4096 + PIN_REACH, "#x")),
        "length": Key(Int(0, MAX_RANGE, "#x")),
        "access": Key(Int(0, 7)),
    }

    def run(self, arena: Arena) -> None:
        arena.pin_range(self.span, self.offset, self.length, self.access)

    def describe(self) -> str:
        return f"pin_range: mallory pins {self.length:#x} bytes at {self.span}{self.offset:+#x} (access {self.access})"

    @property
    def size(self) -> int:
        return 1


@dataclass(frozen=True, eq=False)
class UnpinRange(Step):
    """Mallory unpins the ``index``-th pin of her pin_range steps (beyond them: a handle she does not hold)."""

    index: int

    kind: ClassVar[str] = "unpin_range"
    FIELDS: ClassVar[dict[str, Key]] = {"index": Key(Int(0, MAX_PINS))}

    def run(self, arena: Arena) -> None:
        arena.unpin_range(self.index)

    def describe(self) -> str:
        return f"unpin_range: mallory unpins her pin_range number {self.index}"

    @property
    def size(self) -> int:
        return 1


@dataclass(frozen=True, eq=False)
class RegAt(Step):
    """Mallory stores ``value`` into register ``offset`` of ``nic`` (any NIC: another tenant's doorbell too)."""

    nic: str
    offset: int
    value: int

    kind: ClassVar[str] = "reg_at"
    VERB: ClassVar[str] = "refused"
    FIELDS: ClassVar[dict[str, Key]] = {
        "nic": Key(Text(NICS)),
        "offset": Key(Int(0, BAR0_SIZE - REG_WIDTH, "#06x")),
        "value": Key(u(U32, "#x")),
    }

    def run(self, arena: Arena) -> None:
        arena.reg_at(self.nic, self.offset, self.value)

    def describe(self) -> str:
        return f"reg_at: mallory writes {self.value:#x} to register {self.offset:#06x} of {self.nic}"

    @property
    def size(self) -> int:
        return 1


@dataclass(frozen=True, eq=False)
class OpenQueue(Step):
    """Mallory opens nic2's spare ``queue`` ("tx" or "rx"): a ring of ``slots`` descriptors over ``nbytes`` at
    ``offset`` into ``span`` (its tail is then a ``reg_at`` of nic2 queue 1)."""

    queue: str
    span: str
    offset: int
    nbytes: int
    slots: int

    kind: ClassVar[str] = "open_queue"
    VERB: ClassVar[str] = "refused"
    FIELDS: ClassVar[dict[str, Key]] = {
        "queue": Key(Text(QUEUE_KINDS)),
        "span": Key(Text(RING_SPANS)),
        "offset": Key(Int(0, MAX_RING_OFFSET, "#x")),
        "nbytes": Key(Int(0, MAX_RING_BYTES, "#x")),
        "slots": Key(Int(0, 1 << 17)),
    }

    def run(self, arena: Arena) -> None:
        arena.open_queue(self.queue, self.span, self.offset, self.nbytes, self.slots)

    def describe(self) -> str:
        return (
            f"open_queue: mallory opens a {self.queue} queue of {self.slots} slots over {self.nbytes:#x} bytes "
            f"at {self.span}{self.offset:+#x}"
        )

    @property
    def size(self) -> int:
        return 1
