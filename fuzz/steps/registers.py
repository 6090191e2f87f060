"""Register steps: a store into nic2's register window (BAR0), as mallory's mapped page would make it.

Anything but a tail is refused when the kernel traps mallory's register
window; offsets stay within BAR0 (128 KiB), values within one 32-bit store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from fuzz.steps.base import Step
from fuzz.steps.spec import U32, Int, Key, u
from ring.regs import BAR0_SIZE, REG_WIDTH

if TYPE_CHECKING:
    from fuzz.arena import Arena


@dataclass(frozen=True, eq=False)
class Reg(Step):
    """Mallory stores ``value`` into register ``offset`` of nic2."""

    offset: int
    value: int

    kind: ClassVar[str] = "reg"
    VERB: ClassVar[str] = "refused"
    FIELDS: ClassVar[dict[str, Key]] = {
        "offset": Key(Int(0, BAR0_SIZE - REG_WIDTH, "#06x")),
        "value": Key(u(U32, "#x")),
    }

    def run(self, arena: Arena) -> None:
        arena.reg(self.offset, self.value)

    def describe(self) -> str:
        return f"reg: mallory writes {self.value:#x} to register {self.offset:#06x}"

    @property
    def size(self) -> int:
        return 1
