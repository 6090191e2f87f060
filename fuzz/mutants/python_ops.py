"""The generic operators over Python source text, located with ``ast`` (the code is parsed, never imported).

Each operator is a slip a kernel developer makes:

- ``cmp-boundary``: ``<`` becomes ``<=`` and back, ``>`` becomes ``>=`` and back (an end one byte, frame or
  slot off);
- ``drop-one``: ``x + 1`` / ``x - 1`` loses its constant (also ``+ 2``, the size of a checksum field, and
  the ``np.uint64(1)``/``_ONE16`` spellings of one);
- ``drop-condition``: one operand of an ``|``/``or``/``&``/``and`` chain is dropped, or a whole ``ok &= ...``
  (a forgotten rule); bit tests (``(x & mask) != 0``) and operands that are constants are masks, not
  conditions, and are left alone;
- ``drop-rejection``: ``if cond: return R.X`` / ``raise`` / ``return False`` is never taken, and a
  vectorised rejection ``v.reason[mask] = R.X`` is not made;
- ``limit-off-by-one``: a limit of targets.LIMITS one more and one less.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from fuzz.mutants.model import CONSTANT, DROP_COND, FLIP, NO_REJECT, OFF_BY_ONE, Mutant

_FLIPS = {ast.Lt: "<=", ast.LtE: "<", ast.Gt: ">=", ast.GtE: ">"}
_ONES = {"1", "2", "np.uint64(1)", "_ONE16"}


class Source:
    """A file's text and the character offset of each ``ast`` position (col_offset counts UTF-8 bytes)."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.tree = ast.parse(text)
        self._line_start = [0]
        for line in text.splitlines(keepends=True):
            self._line_start.append(self._line_start[-1] + len(line))
        self._lines = text.splitlines(keepends=True)

    def offset(self, line: int, col: int) -> int:
        return self._line_start[line - 1] + len(self._lines[line - 1].encode()[:col].decode())

    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        return start, end

    def seg(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.text[start:end]

    def mutant(self, function: str, operator: str, node: ast.AST, new: str, why: str = "") -> Mutant:
        start, end = self.span(node)
        return Mutant(self.path, function, operator, start, self.text[start:end], new, node.lineno, why=why)  # type: ignore[attr-defined]


def functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    """Every function and method by qualified name (``Class.method``)."""
    out: dict[str, ast.FunctionDef] = {}

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef):
                out[prefix + node.name] = node
            elif isinstance(node, ast.ClassDef):
                walk(node.body, f"{prefix}{node.name}.")

    walk(tree.body, "")
    return out


def mutate_function(src: Source, name: str, fn: ast.FunctionDef) -> Iterator[Mutant]:
    body = [n for stmt in fn.body for n in ast.walk(stmt)]
    masks = {id(n.left) for n in body if isinstance(n, ast.Compare)}  # (x & mask) != 0: a bit test
    for node in body:
        if isinstance(node, ast.Compare):
            yield from _flips(src, name, node)
        elif isinstance(node, ast.BinOp):
            yield from _off_by_one(src, name, node)
            if isinstance(node.op, ast.BitOr | ast.BitAnd) and id(node) not in masks:
                yield from _drop_operand(src, name, node)
        elif isinstance(node, ast.BoolOp):
            for i in range(len(node.values)):
                rest = [f"({src.seg(v)})" for j, v in enumerate(node.values) if j != i]
                joiner = " or " if isinstance(node.op, ast.Or) else " and "
                yield src.mutant(name, DROP_COND, node, joiner.join(rest) if len(rest) > 1 else rest[0])
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.BitAnd | ast.BitOr):
            yield src.mutant(name, DROP_COND, node, "pass")
        elif isinstance(node, ast.If) and _rejects(node.body[0]):
            yield src.mutant(name, NO_REJECT, node.test, "False")
        elif isinstance(node, ast.Assign) and _reason(node.value) and isinstance(node.targets[0], ast.Subscript):
            yield src.mutant(name, NO_REJECT, node, "pass")


def _flips(src: Source, name: str, node: ast.Compare) -> Iterator[Mutant]:
    left: ast.expr = node.left
    for op, right in zip(node.ops, node.comparators, strict=True):
        new = _FLIPS.get(type(op))
        if new is not None:
            start, end = src.span(left)[1], src.span(right)[0]
            gap = src.text[start:end]
            token = gap.strip(" ()\n")
            at = start + gap.index(token)
            yield Mutant(src.path, name, FLIP, at, token, new, right.lineno)
        left = right


def _off_by_one(src: Source, name: str, node: ast.BinOp) -> Iterator[Mutant]:
    if isinstance(node.op, ast.Add | ast.Sub) and src.seg(node.right) in _ONES:
        yield src.mutant(name, OFF_BY_ONE, node, f"({src.seg(node.left)})")


def _drop_operand(src: Source, name: str, node: ast.BinOp) -> Iterator[Mutant]:
    if isinstance(node.left, ast.Constant) or isinstance(node.right, ast.Constant):
        return
    yield src.mutant(name, DROP_COND, node, f"({src.seg(node.left)})")
    if not (isinstance(node.left, ast.BinOp) and type(node.left.op) is type(node.op)):
        yield src.mutant(name, DROP_COND, node, f"({src.seg(node.right)})")


def _reason(node: ast.expr | None) -> bool:
    """``R.SOMETHING`` other than ``R.OK``: a rejection code."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "R"
        and node.attr != "OK"
    )


def _rejects(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Raise):
        return True
    if isinstance(stmt, ast.Return):
        value = stmt.value
        return _reason(value) or (isinstance(value, ast.Constant) and value.value is False)
    return False


def limits(src: Source, fields: tuple[tuple[str, str], ...]) -> Iterator[Mutant]:
    """A limit's default one more and one less."""
    classes = {n.name: n for n in src.tree.body if isinstance(n, ast.ClassDef)}
    for cls, field in fields:
        for stmt in classes[cls].body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == field:
                assert stmt.value is not None
                old = src.seg(stmt.value)
                for delta in ("+ 1", "- 1"):
                    yield src.mutant(f"{cls}.{field}", CONSTANT, stmt.value, f"{old} {delta}")
                break
        else:
            raise LookupError(f"{src.path}: no field {cls}.{field}")
