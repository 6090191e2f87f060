"""``--corpus DIR``: cases in DIR are replayed first and mutated; new findings and kept inputs are added to DIR."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fuzz.arena import Arena
from fuzz.campaign import run_campaign
from fuzz.case import Case
from fuzz.classes import CLASSES
from sandbox import cli
from verifier.audit.memory import MemoryAudit


def fuzz(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = cli.main(["fuzz", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_findings_and_kept_inputs_grow_the_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    base = ["--iterations", "6", "--batch", "32", "--classes", "kernel-tx,straddle", "--out", str(out)]
    code, report = fuzz([*base, "--protection", "none", "--corpus", str(corpus), "--coverage"], capsys)
    assert code == 1
    info = report["corpus"]
    assert isinstance(info, dict) and info["replayed"] == []
    names = sorted(p.name for p in corpus.glob("*.json"))
    assert "none-kernel-tx-leak.json" in names
    assert any(n.startswith("cov-kernel-tx-") for n in names)
    assert sorted(Path(p).name for p in info["added"]) == names
    for path in corpus.glob("*.json"):
        Case.load(path)  # every added file is a valid case

    code, report = fuzz([*base, "--protection", "verifier", "--corpus", str(corpus)], capsys)
    assert code == 0
    info = report["corpus"]
    assert isinstance(info, dict)
    assert len(info["replayed"]) == len(names) and info["added"] == []
    assert {r["verdict"] for r in info["replayed"]} == {"no escape"}

    code, report = fuzz([*base, "--protection", "none", "--corpus", str(corpus)], capsys)
    info = report["corpus"]
    assert isinstance(info, dict) and code == 1
    leak = next(r for r in info["replayed"] if r["case"].endswith("none-kernel-tx-leak.json"))
    assert leak["verdict"] == "escapes" and "leak" in leak["kinds"]


def test_corpus_batches_are_mutated() -> None:
    arena = Arena.build("verifier", 1, MemoryAudit())
    seed = CLASSES["straddle"].generate(np.random.default_rng(9), arena.map, 16)
    plain = run_campaign("verifier", 1, classes="straddle", iterations=8, batch=16)
    seeded = run_campaign("verifier", 1, classes="straddle", iterations=8, batch=16, corpus=[("straddle", seed)])
    assert plain.as_dict()["classes"] != seeded.as_dict()["classes"]
    again = run_campaign("verifier", 1, classes="straddle", iterations=8, batch=16, corpus=[("straddle", seed)])
    assert again.as_dict() == seeded.as_dict()


def test_bad_corpus_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk.json").write_text("{")
    assert cli.main(["fuzz", "--iterations", "1", "--corpus", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--corpus" in err and "not JSON" in err and len(err.strip().splitlines()) == 1
