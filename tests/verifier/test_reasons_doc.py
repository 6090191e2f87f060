"""docs/verifier.md's reason table lists every code the verifier can write, under its own name."""

from __future__ import annotations

import re
from pathlib import Path

from verifier.rules import reasons

DOC = Path(__file__).resolve().parents[2] / "docs" / "verifier.md"


def test_every_reason_code_has_its_row() -> None:
    rows = dict(re.findall(r"^\| (\d+) \| `([A-Z_0-9]+)` \|", DOC.read_text(), flags=re.MULTILINE))
    expected = {str(code): r.name for code, r in reasons.BY_CODE.items() if code != 0}
    missing = {code: name for code, name in expected.items() if rows.get(code) != name}
    assert not missing, f"docs/verifier.md lacks rows for {missing}"
