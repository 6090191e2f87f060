"""The generic operators on small pieces of source: each spells the slip it names, and nothing else."""

from __future__ import annotations

from fuzz.mutants import c_ops, python_ops
from fuzz.mutants.model import Mutant

PY = """
def rule(a, b, v, mask):
    if not 0 <= a < b:
        return R.RING_TAIL_BEYOND
    ok = (a - 1) < b
    ok &= v[a + 1]
    bad = (a > b) | (v == 0) | (b >= 9)
    flags = (mask & 4) != 0
    v.reason[bad] = R.LEN_ZERO
    return ok and flags
"""

C = """static int range_ok(uint64_t addr, uint64_t span, const uint8_t *ok, uint64_t n)
{
    uint64_t last = addr + span; /* a < b in a comment */
    if (last < addr)
        return 0;
    if (addr >= n || last >> 12 >= n)
        return 0;
    return ok[addr] && ok[last - 1];
}
"""


def py_mutants() -> list[Mutant]:
    src = python_ops.Source("x.py", PY)
    return list(python_ops.mutate_function(src, "rule", python_ops.functions(src.tree)["rule"]))


def changes(mutants: list[Mutant], operator: str) -> set[tuple[str, str]]:
    return {(m.old, m.new) for m in mutants if m.operator == operator}


def test_python_boundary_flips_every_ordering_comparison() -> None:
    flips = changes(py_mutants(), "cmp-boundary")
    assert flips == {("<=", "<"), ("<", "<="), (">", ">="), (">=", ">")}
    assert len([m for m in py_mutants() if m.operator == "cmp-boundary"]) == 5


def test_python_drop_one_and_drop_condition() -> None:
    mutants = py_mutants()
    assert changes(mutants, "drop-one") == {("a - 1", "(a)"), ("a + 1", "(a)")}
    dropped = changes(mutants, "drop-condition")
    assert ("ok &= v[a + 1]", "pass") in dropped
    chain = "(a > b) | (v == 0) | (b >= 9)"
    assert (chain, "((a > b) | (v == 0))") in dropped
    assert ("(a > b) | (v == 0)", "(a > b)") in dropped and ("(a > b) | (v == 0)", "(v == 0)") in dropped
    assert ("ok and flags", "(flags)") in dropped
    assert not any(old == "mask & 4" for old, _ in dropped)  # a bit test is a mask, not a condition


def test_python_drop_rejection() -> None:
    dropped = changes(py_mutants(), "drop-rejection")
    assert dropped == {("not 0 <= a < b", "False"), ("v.reason[bad] = R.LEN_ZERO", "pass")}


def test_c_operators_skip_comments_and_shifts() -> None:
    src = c_ops.CSource("x.c", C)
    mutants = list(c_ops.mutate_function(src, "range_ok"))
    flips = [m for m in mutants if m.operator == "cmp-boundary"]
    assert sorted((m.old, m.new) for m in flips) == [("<", "<="), (">=", ">"), (">=", ">")]
    assert changes(mutants, "drop-one") == {(" - 1", "")}
    dropped = changes(mutants, "drop-condition")
    assert ("addr >= n || last >> 12 >= n", "last >> 12 >= n") in dropped
    assert ("ok[addr] && ok[last - 1]", "ok[addr]") in dropped
    assert changes(mutants, "drop-rejection") == {("last < addr", "0"), ("addr >= n || last >> 12 >= n", "0")}
    for m in mutants:
        assert m.apply(C) != C
