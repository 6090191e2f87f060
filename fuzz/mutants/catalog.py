"""The semantic mutants of catalog.toml: each one exact replacement, checked to occur exactly once."""

from __future__ import annotations

import tomllib
from pathlib import Path

from fuzz.mutants.model import SEMANTIC, Mutant

CATALOG = Path(__file__).with_name("catalog.toml")
FIELDS = ("name", "file", "function", "old", "new", "why")


class CatalogError(Exception):
    """catalog.toml or equivalent.toml does not match the sources."""


def load(root: Path, path: Path = CATALOG) -> list[Mutant]:
    """The catalog's mutants against the sources under ``root``."""
    out = []
    for entry in tomllib.loads(path.read_text()).get("mutant", []):
        missing = [f for f in FIELDS if not isinstance(entry.get(f), str)]
        if missing:
            raise CatalogError(f"{path.name}: an entry lacks {', '.join(missing)}: {entry.get('name')}")
        text = (root / entry["file"]).read_text()
        count = text.count(entry["old"])
        if count != 1:
            raise CatalogError(f"{path.name}: {entry['name']}: its old text occurs {count} times in {entry['file']}")
        start = text.index(entry["old"])
        line = text.count("\n", 0, start) + 1
        out.append(
            Mutant(entry["file"], entry["function"], SEMANTIC, start, entry["old"], entry["new"], line,
                   why=entry["why"], label=entry["name"])
        )  # fmt: skip
    return out
