"""Mutants argued, one by one, to be equivalent: no behaviour of the kernel can differ (equivalent.toml).

The runner does not fuzz them and leaves them out of both percentages.  An
entry must name a mutant that exists and argue why: an id that no longer
exists (the code moved on) is an error, so the list cannot rot.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from fuzz.mutants.catalog import CatalogError

EQUIVALENT = Path(__file__).with_name("equivalent.toml")


def load(ids: set[str], path: Path = EQUIVALENT) -> dict[str, str]:
    """Mutant id -> why it is equivalent; CatalogError for an unknown id or an entry without an argument."""
    out: dict[str, str] = {}
    for entry in tomllib.loads(path.read_text()).get("equivalent", []):
        mid, why = entry.get("id"), entry.get("why")
        if not isinstance(mid, str) or not isinstance(why, str) or not why.strip():
            raise CatalogError(f"{path.name}: every entry needs an id and a why: {entry}")
        if mid not in ids:
            raise CatalogError(f"{path.name}: {mid} is no mutant any more (remove or update the entry)")
        out[mid] = why
    return out
