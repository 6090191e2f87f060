"""The command line imports top-down: ``cli.py`` -> ``commands/`` -> the shared modules, never back.

A command module that imports ``sandbox.cli`` (or a late import that dodges the
cycle) ties every command to every other; a private ``_helper`` imported from
another module is an interface nobody declared.  These rules are read from the
source with ``ast``, so they hold whether or not a module happens to be imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = ROOT / "sandbox"
COMMANDS = sorted((SANDBOX / "commands").glob("*.py"))
#: Below the commands: they may import each other, never a command or the assembly.
SHARED = [SANDBOX / name for name in ("errors.py", "argtypes.py", "parser.py", "flags.py")]
DEMOS = sorted((SANDBOX / "demos").glob("*.py"))


def imports(path: Path) -> Iterator[tuple[ast.stmt, str, list[str], bool]]:
    """Every import in ``path``: the statement, the module, the names taken from it, and whether a function makes it."""
    tree = ast.parse(path.read_text(), str(path))
    functions = (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))
    late = {id(inner) for f in functions for inner in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, [], id(node) in late
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            yield node, node.module, [alias.name for alias in node.names], id(node) in late


def modules(module: str, names: list[str]) -> set[str]:
    """The modules an import may bind: ``from sandbox import cli`` is ``sandbox.cli``."""
    return {module, *(f"{module}.{name}" for name in names)}


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_rules_see_every_command() -> None:
    names = {p.stem for p in COMMANDS}
    assert {"demo", "pingpong", "attack", "ping", "afxdp", "fuzz", "audit", "verify", "scenario"} <= names


@pytest.mark.parametrize("path", COMMANDS + SHARED + DEMOS, ids=rel)
def test_nothing_below_cli_imports_it(path: Path) -> None:
    for node, module, names, _ in imports(path):
        assert "sandbox.cli" not in modules(module, names), f"{rel(path)}:{node.lineno} imports sandbox.cli"


@pytest.mark.parametrize("path", SHARED + DEMOS, ids=rel)
def test_shared_modules_and_demos_import_no_command(path: Path) -> None:
    for node, module, names, _ in imports(path):
        bound = modules(module, names)
        assert not any(m.startswith("sandbox.commands") for m in bound), f"{rel(path)}:{node.lineno} imports {bound}"


@pytest.mark.parametrize("path", COMMANDS + SHARED + DEMOS + [SANDBOX / "cli.py"], ids=rel)
def test_no_private_name_is_imported_from_another_module(path: Path) -> None:
    for node, module, names, _ in imports(path):
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{rel(path)}:{node.lineno} imports {private} from {module}"


@pytest.mark.parametrize("path", COMMANDS + SHARED + DEMOS + [SANDBOX / "cli.py"], ids=rel)
def test_late_imports_of_the_sandbox_say_why(path: Path) -> None:
    """A function-local import of ``sandbox.*`` is only for keeping a heavy dependency lazy, and says so."""
    lines = path.read_text().splitlines()
    for node, module, names, late in imports(path):
        if not late or not any(m.startswith("sandbox") for m in modules(module, names)):
            continue
        assert "#" in lines[node.lineno - 1], f"{rel(path)}:{node.lineno}: a late import with no reason given"
