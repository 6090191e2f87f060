"""The generic operators over C source text (verifier/rules/fastpath.c), by a small scanner of named functions.

The same slips as python_ops.py, in C spelling: a boundary flip (``<``
``<=``, ``>`` ``>=``), a lost ``- 1``/``+ 1``, one operand of an ``||``/``&&``
chain dropped (in an ``if`` or a ``return``), and a rejection
(``if (cond) return 0;``: the batch goes back to the numpy checks) never
taken.  Comments and shifts (``<<``, ``>>``) and ``->`` are skipped.  The
scanner needs only what fastpath.c is written in: functions whose body is
one brace-balanced block after their name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from fuzz.mutants.model import DROP_COND, FLIP, NO_REJECT, OFF_BY_ONE, Mutant

_TOKENS = re.compile(r"<<=?|>>=?|->|<=|>=|<|>")
_FLIPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}
_ONE = re.compile(r"\s[-+] 1\b(?!\.)")
_IF = re.compile(r"\bif \(")
_RETURN = re.compile(r"\breturn ([^;]+);")
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


class CSource:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.comments = [m.span() for m in _COMMENT.finditer(text)]

    def line(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1

    def in_comment(self, offset: int) -> bool:
        return any(a <= offset < b for a, b in self.comments)

    def body(self, name: str) -> tuple[int, int]:
        """Offsets of a function's body, braces included."""
        m = re.search(rf"^[A-Za-z][\w \*]*\b{re.escape(name)}\(", self.text, re.M)
        if m is None:
            raise LookupError(f"{self.path}: no function {name}")
        start = self.text.index("{", m.end())
        return start, _close(self.text, start, "{", "}")

    def mutant(self, fn: str, op: str, start: int, old: str, new: str) -> Mutant:
        return Mutant(self.path, fn, op, start, old, new, self.line(start))


def _close(text: str, start: int, open_: str, close: str) -> int:
    """Offset just past the bracket that closes the one at ``start``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_:
            depth += 1
        elif text[i] == close:
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError(f"unbalanced {open_} at {start}")


def _split_top(expr: str, op: str) -> list[str]:
    """``expr`` split at ``op`` where no bracket is open."""
    parts, depth, last, i = [], 0, 0, 0
    while i < len(expr):
        if expr[i] in "([":
            depth += 1
        elif expr[i] in ")]":
            depth -= 1
        if depth == 0 and expr.startswith(op, i):
            parts.append(expr[last:i].strip())
            last = i = i + len(op)
            continue
        i += 1
    parts.append(expr[last:].strip())
    return parts


def mutate_function(src: CSource, name: str) -> Iterator[Mutant]:
    start, end = src.body(name)
    text = src.text
    for m in _TOKENS.finditer(text, start, end):
        if m.group() in _FLIPS and not src.in_comment(m.start()):
            yield src.mutant(name, FLIP, m.start(), m.group(), _FLIPS[m.group()])
    for m in _ONE.finditer(text, start, end):
        if not src.in_comment(m.start()):
            yield src.mutant(name, OFF_BY_ONE, m.start(), m.group(), "")
    conditions: list[tuple[int, str, bool]] = []  # (offset, expression, is an if that rejects)
    for m in _IF.finditer(text, start, end):
        open_ = m.end() - 1
        close = _close(text, open_, "(", ")")
        rejects = re.match(r"\s*return 0;", text[close:]) is not None
        conditions.append((open_ + 1, text[open_ + 1 : close - 1], rejects))
    for m in _RETURN.finditer(text, start, end):
        conditions.append((m.start(1), m.group(1), False))
    for at, expr, rejects in conditions:
        if src.in_comment(at):
            continue
        for op in ("||", "&&"):
            parts = _split_top(expr, op)
            if len(parts) > 1:
                for i in range(len(parts)):
                    rest = [p for j, p in enumerate(parts) if j != i]
                    yield src.mutant(name, DROP_COND, at, expr, f" {op} ".join(rest))
                break
        if rejects:
            yield src.mutant(name, NO_REJECT, at, expr, "0")
