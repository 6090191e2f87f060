"""Every mutant of the tree under ``root``: the generic operators over targets.py, then catalog.toml."""

from __future__ import annotations

from pathlib import Path

from fuzz.mutants import c_ops, catalog, python_ops, targets
from fuzz.mutants.model import Mutant, number


def all_mutants(root: Path) -> list[Mutant]:
    """In file order, then the catalog; ids unique (model.number), each mutation checked to apply."""
    found: list[Mutant] = []
    for path, names in targets.PYTHON.items():
        src = python_ops.Source(path, (root / path).read_text())
        fns = python_ops.functions(src.tree)
        for name in names:
            if name not in fns:
                raise LookupError(f"targets.py: {path} has no function {name}")
            found.extend(python_ops.mutate_function(src, name, fns[name]))
        found.extend(python_ops.limits(src, targets.LIMITS.get(path, ())))
    for path, names in targets.C.items():
        csrc = c_ops.CSource(path, (root / path).read_text())
        for name in names:
            found.extend(c_ops.mutate_function(csrc, name))
    found.sort(key=lambda m: (m.file, m.start, m.operator))
    mutants = number(found) + catalog.load(root)
    ids = [m.id for m in mutants]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"duplicate mutant ids: {sorted(dup)}")
    return mutants
