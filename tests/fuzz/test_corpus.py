"""The committed reproducers in fuzz/corpus/: they escape under ``none`` and are refused when protected."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.case import Case, replay
from fuzz.steps import ReproducerError

CORPUS = sorted((Path(__file__).resolve().parents[2] / "fuzz" / "corpus").glob("*.json"))


def test_there_is_a_corpus() -> None:
    assert len(CORPUS) >= 2


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_case_escapes_under_its_mode_and_not_when_protected(path: Path) -> None:
    case = Case.load(path)
    found = replay(case)
    assert found.verdict == "escapes"
    assert case.expect["kind"] in found.kinds()
    assert any(e.what == case.expect["what"] for e in found.escapes), found.escapes
    for mode in ("verifier", "iommu"):
        again = replay(case, mode)
        assert again.verdict == "no escape", (mode, again.escapes)
    if case.protection.value == "none":
        assert sum(s.rejected for s in replay(case, "verifier").steps) >= 1


def test_bad_cases_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    for text, match in (
        ("{", "not JSON"),
        ('{"version": 3}', "version"),
        ('{"version": 1, "scenario": "attack", "ops": [{"op": "poke"}]}', "unknown op"),
        ('{"version": 1, "scenario": "attack", "ops": [{"op": "reg", "offset": "zz", "value": 1}]}', "integer"),
    ):
        bad.write_text(text)
        with pytest.raises(ReproducerError, match=match):
            Case.load(bad)
