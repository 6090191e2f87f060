"""Rules of the house that a linter does not check: asserts without side effects, unit tests without wall clocks.

- Production code may ``assert`` facts (a layout, a narrowed type), never
  do work inside one: ``python -O`` drops asserts, and the work with them.
- Unit tests assert behaviour, not speed: an ``assert`` comparing elapsed
  wall-clock time fails on a busy machine and proves nothing on a quiet one.
  Speed goals live in ``make bench`` (ratios measured in one run).  Polling
  loops with a deadline (waiting for a real process or device) are fine:
  they guard against a hang, they do not judge speed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ("ring", "driver", "device", "verifier", "world", "fuzz", "sandbox", "lab", "bench")
#: Calls that only look: an assert may use them.
PURE_CALLS = {"isinstance", "len", "callable", "all", "any", "sizeof", "offsetof", "is_set"}
CLOCKS = {"perf_counter", "monotonic", "time", "perf_counter_ns", "monotonic_ns", "time_ns"}


def _calls(node: ast.AST) -> list[str]:
    names = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            names.append(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "?"))
    return names


def _asserts(folder: str) -> list[tuple[Path, ast.Assert]]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        found += [(path, n) for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Assert)]
    return found


def test_production_asserts_do_no_work() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for folder in PRODUCTION
        for path, node in _asserts(folder)
        if set(_calls(node.test)) - PURE_CALLS
    ]
    assert bad == []


def test_unit_tests_do_not_assert_on_the_wall_clock() -> None:
    bad = [f"{path.relative_to(ROOT)}:{node.lineno}" for path, node in _asserts("tests") if set(_calls(node)) & CLOCKS]
    assert bad == []
