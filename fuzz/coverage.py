"""Coverage feedback: which lines of ``verifier/`` a batch reached, and mutation of kept batches.

``Coverage.run(fn)`` runs ``fn`` with a ``sys.settrace`` function installed
only for that call.  The global trace function returns a local tracer only
for frames whose code lives under ``verifier/`` (decided once per code
object), so line events are taken only there; every other frame costs one
call event and a dictionary lookup.  A verifier function whose every line
has been reached is no longer traced line by line.  Lines are ``(file name, line number)``.

The campaign mutates a kept attack with ``Attack.mutate``: each step
mutates itself (fuzz/steps/mutation.py): TX descriptors get ``addr`` +-1,
+-page or low-bit flips, ``length`` +-1 or +-page, and a flipped ``cmd``
bit on a share of the descriptors (also a fake ring); RX buffer addresses
get the same address mutations; other steps stay as they are.  Everything
is drawn from the campaign's block generator, so a campaign with coverage
stays deterministic for a seed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

VERIFIER_DIR = str(Path(__file__).resolve().parents[1] / "verifier")
#: Chance that a batch is a mutation of a kept one (when the class has any) rather than a fresh one.
MUTATE_CHANCE = 0.5
#: Kept batches per campaign (the oldest stay: they opened the most lines).
MAX_KEPT = 256

Line = tuple[str, int]


class Coverage:
    """Lines of ``verifier/`` (or ``root``) reached so far."""

    def __init__(self, root: str = VERIFIER_DIR) -> None:
        self.root = root
        self.lines: set[Line] = set()
        self._inside: dict[CodeType, bool] = {}
        self._new: set[Line] = set()
        self._done: set[CodeType] = set()  # verifier code whose every line has been reached

    def _call(self, frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        inside = self._inside.get(code)
        if inside is None:
            inside = self._inside[code] = code.co_filename.startswith(self.root)
        if not inside or code in self._done:
            return None
        self._new.add((code.co_filename, frame.f_lineno))
        return self._line

    def _line(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            self._new.add((frame.f_code.co_filename, frame.f_lineno))
        return self._line

    def run(self, fn: Callable[[], Any]) -> int:
        """Call ``fn`` traced; return how many lines it reached that no earlier call had."""
        self._new = set()
        previous = sys.gettrace()
        sys.settrace(self._call)
        try:
            fn()
        finally:
            sys.settrace(previous)
        added = self._new - self.lines
        self.lines |= added
        self._new = set()
        if added:
            for code, inside in self._inside.items():
                if inside and code not in self._done:
                    name = code.co_filename
                    if all((name, n) in self.lines for _, _, n in code.co_lines() if n is not None):
                        self._done.add(code)
        return len(added)

    def relative(self) -> list[str]:
        """The lines as ``file:line`` relative to the root's parent, sorted (for reports and merging)."""
        base = str(Path(self.root).parent) + "/"
        return sorted(f"{f.removeprefix(base)}:{n}" for f, n in self.lines)
