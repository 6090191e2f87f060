"""The attack step: one operation mallory (or alice, or eve) performs in the arena, and a campaign's ``Attack``.

Every step type is a frozen dataclass that knows how to ``run`` itself in an
``Arena``, how to write itself as one reproducer op (``to_json``) and read
itself back, checked (``from_json``, from the declared ``FIELDS``), and how
to ``describe`` itself to a person replaying a case.  Campaigns and
reproducers run the same ``run``: a reproducer is exactly the steps the
generator made.

The hooks for mutation (``mutate``) and minimisation (``items``, ``keep``,
``raced``, ``follow_buffers``) default to "nothing to do" here; the steps
that carry descriptors or buffers override them.

Steps that carry numpy arrays (descriptors, buffer addresses) compare by
their JSON form, so two steps are equal when they would write the same op.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from fuzz.steps.spec import Fields, dump_object, parse_object

if TYPE_CHECKING:
    from fuzz.arena import Arena


class Step(ABC):
    """One operation of an attack and one op of a reproducer (``kind`` is the op's name in the JSON)."""

    kind: ClassVar[str]
    #: The op's JSON keys besides "op", with their types and bounds (fuzz/steps/spec.py).
    FIELDS: ClassVar[Fields]
    #: What the replay says of the audit records this step caused: a refusal of what was rung, or a lifetime audit.
    VERB: ClassVar[str] = "audited"

    @abstractmethod
    def run(self, arena: Arena) -> None:
        """Perform the step (the same code for campaigns and reproducers)."""

    @abstractmethod
    def describe(self) -> str:
        """One line for a person replaying the case."""

    # -- the reproducer JSON ------------------------------------------------------------------
    @classmethod
    def from_json(cls, op: object, where: str, strict: bool) -> Self:
        """The step of one op, every key checked against ``FIELDS`` (``strict``: unknown keys are errors)."""
        return cls.build(parse_object(op, cls.FIELDS, where, strict, ignore=("op",)), where)

    @classmethod
    def build(cls, values: dict[str, Any], where: str) -> Self:
        """The step from checked values (by default the dataclass fields are the JSON keys); checks across keys."""
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {"op": self.kind, **dump_object(self.values(), self.FIELDS)}

    def values(self) -> dict[str, Any]:
        """The values ``FIELDS`` writes, by key (by default the dataclass fields of the same name)."""
        return {name: getattr(self, name) for name in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, Step) and other.to_json() == self.to_json()

    __hash__ = None  # type: ignore[assignment]

    # -- campaign counts and mutation ---------------------------------------------------------
    @property
    def size(self) -> int:
        """Descriptors, buffers or register writes the step carries (what the campaign counts as generated)."""
        return 0

    def mutate(self, rng: np.random.Generator, share: float) -> Step:
        """A field-level mutation (fuzz/coverage.py); a step without descriptors or buffers stays as it is."""
        return self

    # -- minimisation -------------------------------------------------------------------------
    def items(self) -> list[tuple[int, int]]:
        """(address, length) of each descriptor or buffer the minimiser may drop; none by default."""
        return []

    def keep(self, positions: list[int]) -> Step:
        """The step with only the items at ``positions``."""
        return self

    def raced(self) -> list[int]:
        """Positions of items a race rewrites (the minimiser tries them alone first)."""
        return []

    #: The items are RX buffers: when the minimiser drops some, eve sends as many frames as are left.
    POSTS_BUFFERS: ClassVar[bool] = False

    def follow_buffers(self, posted: int) -> Step:
        """This step after the minimiser left ``posted`` RX buffers in the case (eve's frames follow them)."""
        return self

    def quiet(self) -> str:
        """What the replay says when the step caused no audit record, no note and no escape."""
        return "accepted, nothing escaped"


@dataclass(frozen=True, eq=False)
class Attack:
    """What a generator makes and a campaign iteration runs: steps in order, under one liveness budget.

    ``fresh``: run in an arena of its own, so lifetime steps start from the
    memory map the generator aimed at (sequences such as use-after-unpin).
    ``machine``: the configuration of the machine it runs on (fuzz/arena.py ``MACHINES``; "" the default).
    """

    steps: tuple[Step, ...]
    fresh: bool = False
    machine: str = ""

    @classmethod
    def of(cls, *steps: Step, fresh: bool = False, machine: str = "") -> Attack:
        return cls(tuple(steps), fresh, machine)

    @property
    def size(self) -> int:
        """Descriptors (or buffers, register writes) the attack carries: the sum, at least 1."""
        return max(1, sum(s.size for s in self.steps))

    def run(self, arena: Arena) -> None:
        for step in self.steps:
            step.run(arena)

    def ops(self) -> list[dict[str, Any]]:
        """The reproducer ops, one per step."""
        return [s.to_json() for s in self.steps]

    def mutate(self, rng: np.random.Generator, share: float = 0.25) -> Attack:
        """Each step mutated in order, from one generator (a new Attack; this one is not changed)."""
        return replace(self, steps=tuple(s.mutate(rng, share) for s in self.steps))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Attack) and (self.fresh, self.machine, self.ops()) == (
            other.fresh,
            other.machine,
            other.ops(),
        )

    __hash__ = None  # type: ignore[assignment]


def kinds(steps: Iterable[Step]) -> tuple[str, ...]:
    """The op names of ``steps``, in order (a sequence's shape)."""
    return tuple(s.kind for s in steps)
