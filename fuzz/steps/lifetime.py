"""Lifetime steps: mallory pins, unpins and frees one of her spans; alice allocates (use after unpin).

The spans are mallory's regions the arena names (``uaf``: her spare page,
mapped, not pinned at first).  A pin's ``access`` is the device's: 1 read,
2 write, 3 both (``ring.syscalls``).  A refused lifetime operation is a
note in the replay, not an error: a refusal is a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from fuzz.steps.base import Step
from fuzz.steps.spec import Int, Key, Text
from ring.syscalls import DEVICE_READ, DEVICE_WRITE

if TYPE_CHECKING:
    from fuzz.arena import Arena

SPANS = ("uaf",)  # mallory's spans the lifetime operations may name
SPAN = Key(Text(SPANS))
#: Pages alice may allocate in one step (a few frames: the point is to land on the one mallory freed).
MAX_VICTIM_PAGES = 1024


@dataclass(frozen=True, eq=False)
class Pin(Step):
    """Mallory pins ``span`` for device ``access`` (the oracle's pin reference learns of it)."""

    span: str
    access: int = DEVICE_WRITE

    kind: ClassVar[str] = "pin"
    FIELDS: ClassVar[dict[str, Key]] = {"span": SPAN, "access": Key(Int(DEVICE_READ, DEVICE_READ | DEVICE_WRITE), 2)}

    def run(self, arena: Arena) -> None:
        arena.pin(self.span, self.access)

    def describe(self) -> str:
        return f"pin: mallory pins her {self.span} page (access {self.access})"


@dataclass(frozen=True, eq=False)
class Unpin(Step):
    """Mallory unpins ``span`` (released at once, or deferred while DMA is in flight)."""

    span: str

    kind: ClassVar[str] = "unpin"
    FIELDS: ClassVar[dict[str, Key]] = {"span": SPAN}

    def run(self, arena: Arena) -> None:
        arena.unpin(self.span)

    def describe(self) -> str:
        return f"unpin: mallory unpins her {self.span} page"


@dataclass(frozen=True, eq=False)
class Free(Step):
    """Mallory frees ``span``'s memory (refused while pinned, also while a deferred unpin waits)."""

    span: str

    kind: ClassVar[str] = "free"
    FIELDS: ClassVar[dict[str, Key]] = {"span": SPAN}

    def run(self, arena: Arena) -> None:
        arena.free(self.span)

    def describe(self) -> str:
        return f"free: mallory frees her {self.span} page"


@dataclass(frozen=True, eq=False)
class VictimAlloc(Step):
    """Alice allocates ``pages`` (first fit: perhaps a frame mallory just freed) and fills them; the oracle guards
    them."""

    pages: int = 1

    kind: ClassVar[str] = "victim_alloc"
    FIELDS: ClassVar[dict[str, Key]] = {"pages": Key(Int(1, MAX_VICTIM_PAGES), default=1)}

    def run(self, arena: Arena) -> None:
        arena.victim_alloc(self.pages)

    def describe(self) -> str:
        return f"victim_alloc: alice allocates {self.pages} page(s) and fills them"
