"""The mutant set: every mutant applies and parses, ids are unique and survive edits elsewhere, lists cannot rot."""

from __future__ import annotations

import ast
import shutil
from collections import Counter
from pathlib import Path

import pytest

from fuzz.mutants import targets
from fuzz.mutants.catalog import CatalogError
from fuzz.mutants.catalog import load as load_catalog
from fuzz.mutants.equivalent import load as load_equivalent
from fuzz.mutants.generate import all_mutants
from fuzz.mutants.model import OPERATORS, SEMANTIC

ROOT = Path(__file__).resolve().parents[3]


def copy_sources(dest: Path) -> Path:
    for path in targets.FILES:
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, dest / path)
    return dest


def test_every_mutant_applies_and_every_python_mutant_parses() -> None:
    mutants = all_mutants(ROOT)
    assert len({m.id for m in mutants}) == len(mutants)
    for m in mutants:
        text = (ROOT / m.file).read_text()
        mutated = m.apply(text)
        assert mutated != text, m.id
        if m.file.endswith(".py"):
            ast.parse(mutated)  # a generic operator never writes broken Python


def test_every_operator_and_the_fast_path_are_covered() -> None:
    mutants = all_mutants(ROOT)
    kinds = Counter(m.operator for m in mutants)
    assert set(kinds) == set(OPERATORS)
    c_kinds = {m.operator for m in mutants if m.file.endswith(".c")}
    assert {"cmp-boundary", "drop-one", "drop-condition", "drop-rejection", SEMANTIC} <= c_kinds


def test_ids_do_not_depend_on_line_numbers(tmp_path: Path) -> None:
    tree = copy_sources(tmp_path)
    before = {m.id: m.line for m in all_mutants(tree)}
    for path in targets.FILES:
        text = (tree / path).read_text()
        head = "/* moved */\n" if path.endswith(".c") else "# moved\n"
        (tree / path).write_text(head * 3 + text)
    after = {m.id: m.line for m in all_mutants(tree)}
    assert after.keys() == before.keys()
    assert all(after[i] == before[i] + 3 for i in before)


def test_a_target_function_that_is_gone_is_an_error(tmp_path: Path) -> None:
    tree = copy_sources(tmp_path)
    path = tree / "verifier/queue_state.py"
    path.write_text(path.read_text().replace("def judge_tail(", "def judge_the_tail("))
    with pytest.raises(LookupError, match="judge_tail"):
        all_mutants(tree)


def test_a_catalog_entry_whose_text_is_gone_is_an_error(tmp_path: Path) -> None:
    tree = copy_sources(tmp_path)
    path = tree / "verifier/pins.py"
    path.write_text(path.read_text().replace("if self.references(pin.frames):", "if self.references(pin.frames) > 0:"))
    with pytest.raises(CatalogError, match="unpin-ignores-dma"):
        load_catalog(tree)


def test_the_equivalents_list_names_only_mutants_that_exist(tmp_path: Path) -> None:
    ids = {m.id for m in all_mutants(ROOT)}
    equivalent = load_equivalent(ids)  # the checked-in list
    assert all(why.strip() for why in equivalent.values())
    stale = tmp_path / "equivalent.toml"
    stale.write_text('[[equivalent]]\nid = "checks.gone.cmp-boundary.000000"\nwhy = "it was"\n')
    with pytest.raises(CatalogError, match="no mutant any more"):
        load_equivalent(ids, stale)
    unargued = tmp_path / "unargued.toml"
    unargued.write_text(f'[[equivalent]]\nid = "{sorted(ids)[0]}"\nwhy = " "\n')
    with pytest.raises(CatalogError, match="needs an id and a why"):
        load_equivalent(ids, unargued)


def test_a_mutant_copy_holds_every_package_the_command_line_imports() -> None:
    """A package missing from the copy is imported from the install instead: a new folder beside sandbox/
    (measure/ once) made every campaign crash, which the harness counts as a kill."""
    import tomllib
    from pathlib import Path

    from fuzz.mutants.workspace import COPIED

    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages - {"lab"} <= set(COPIED), packages - set(COPIED)
