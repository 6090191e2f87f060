"""A mutant: one replacement of exact source text in one file, with an id that survives edits elsewhere.

The id names the file, the function, the operator and a short hash of the
original and new text plus how many identical replacements precede it in
that function; line numbers are shown but are not part of the id, so adding
a line above a function renames none of its mutants (equivalent.toml and
``--only`` refer to ids).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

#: Operator names (the table's "operator" column): generic ones first, then the hand-written kind.
FLIP = "cmp-boundary"  # < <-> <=, > <-> >=
OFF_BY_ONE = "drop-one"  # ``x + 1`` / ``x - 1`` loses its 1 (also ``+ 2`` of a checksum field)
DROP_COND = "drop-condition"  # one operand of a | / or / & / and chain (or a whole ``ok &= ...``) dropped
CONSTANT = "limit-off-by-one"  # a limit constant one more or one less
NO_REJECT = "drop-rejection"  # a rejection removed: ``if cond: return/raise`` never taken, a reason never set
SEMANTIC = "semantic"  # catalog.toml: a hand-written slip
OPERATORS = (FLIP, OFF_BY_ONE, DROP_COND, CONSTANT, NO_REJECT, SEMANTIC)


@dataclass(frozen=True)
class Mutant:
    file: str  # relative to the source root, e.g. "verifier/rules/checks.py"
    function: str  # qualified name ("PinTable.release", "range_ok"), or "<module>"
    operator: str
    start: int  # character offset of ``old`` in the file
    old: str
    new: str
    line: int
    occurrence: int = 0  # identical (function, operator, old, new) replacements before this one
    why: str = ""  # semantic mutants: the slip it models
    label: str = ""  # semantic mutants: their catalog name, in place of the hash

    @property
    def id(self) -> str:
        stem = Path(self.file).stem
        key = f"{self.file}\0{self.function}\0{self.operator}\0{self.old}\0{self.new}\0{self.occurrence}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:6]
        return f"{stem}.{self.function}.{self.operator}.{self.label or digest}"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def change(self) -> str:
        """What changed, on one line."""
        if self.why:
            return self.why
        return f"{_one_line(self.old)}  ->  {_one_line(self.new)}"

    def apply(self, text: str) -> str:
        """The file's text with this mutation applied; the original must be at ``start``."""
        if text[self.start : self.start + len(self.old)] != self.old:
            raise ValueError(f"{self.id}: the original text is not at offset {self.start} of {self.file}")
        return text[: self.start] + self.new + text[self.start + len(self.old) :]


def _one_line(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def number(mutants: list[Mutant]) -> list[Mutant]:
    """Set each mutant's ``occurrence`` so that ids are unique and stable; keep the order."""
    seen: dict[tuple[str, str, str, str, str], int] = {}
    out = []
    for m in mutants:
        key = (m.file, m.function, m.operator, m.old, m.new)
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append(Mutant(m.file, m.function, m.operator, m.start, m.old, m.new, m.line, n, m.why, m.label))
    return out
