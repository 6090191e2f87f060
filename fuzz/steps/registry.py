"""The one dispatch from a reproducer op's name to its step type.

Every place that turns JSON into steps goes through ``step_from_json``;
everything else asks the step itself (``run``, ``to_json``, ``describe``).
"""

from __future__ import annotations

from fuzz.steps.base import Step
from fuzz.steps.lifetime import Free, Pin, Unpin, VictimAlloc
from fuzz.steps.registers import Reg
from fuzz.steps.rx import Doorbell, EveSends, Rx
from fuzz.steps.spec import ReproducerError
from fuzz.steps.syscalls import OpenQueue, PinRange, RegAt, UnpinRange
from fuzz.steps.tx import FakeRing, Tx
from fuzz.steps.virtq import VirtqPost

#: Step types by op name, in the order the format documentation lists them.
STEPS: dict[str, type[Step]] = {
    cls.kind: cls
    for cls in (
        Tx,
        Rx,
        EveSends,
        FakeRing,
        Reg,
        Pin,
        Unpin,
        Free,
        VictimAlloc,
        Doorbell,
        PinRange,
        UnpinRange,
        RegAt,
        OpenQueue,
        VirtqPost,
    )
}


def step_from_json(op: object, where: str, strict: bool) -> Step:
    """The step of one op (``where``: its place in the file, for messages; ``strict``: unknown keys are errors)."""
    if not isinstance(op, dict):
        raise ReproducerError(f"{where}: an op is a JSON object, got {type(op).__name__}")
    name = op.get("op")
    cls = STEPS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ReproducerError(f"{where}: unknown op {name!r} (known: {', '.join(STEPS)})")
    return cls.from_json(op, f"{where} ({name})", strict)
