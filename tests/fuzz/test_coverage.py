"""Coverage feedback: new verifier lines are kept and mutated; deterministic for a seed; off by default."""

from __future__ import annotations

import numpy as np

from fuzz.arena import Arena
from fuzz.campaign import run_campaign
from fuzz.classes import CLASSES
from fuzz.coverage import Coverage
from fuzz.steps import Tx
from fuzz.steps.base import kinds
from verifier.audit.memory import MemoryAudit


def test_campaign_reaches_more_lines_than_its_first_batch_and_keeps_inputs() -> None:
    first = run_campaign("verifier", 5, iterations=1, batch=32, coverage=True)
    result = run_campaign("verifier", 5, iterations=48, batch=32, coverage=True)
    assert first.coverage is not None and result.coverage is not None
    assert len(result.coverage) > len(first.coverage) > 0
    assert result.kept and all(k.new_lines > 0 for k in result.kept)
    assert all(line.startswith("verifier/") for line in result.coverage)
    assert result.as_dict()["coverage"]["lines"] == len(result.coverage)
    again = run_campaign("verifier", 5, iterations=48, batch=32, coverage=True)
    assert again.as_dict() == result.as_dict()
    assert again.coverage == result.coverage
    assert [(k.cls, k.block, k.iteration) for k in again.kept] == [(k.cls, k.block, k.iteration) for k in result.kept]


def test_coverage_is_off_by_default() -> None:
    plain = run_campaign("verifier", 5, iterations=4, batch=16)
    assert plain.coverage is None and plain.kept == [] and "coverage" not in plain.as_dict()


def test_coverage_traces_only_verifier() -> None:
    cov = Coverage()
    assert cov.run(lambda: sum(range(10))) == 0 and not cov.lines
    arena = Arena.build("verifier", 1, MemoryAudit())
    (b,) = CLASSES["kernel-tx"].generate(np.random.default_rng(1), arena.map, 8).steps
    assert isinstance(b, Tx)
    assert cov.run(lambda: arena.tx(b.descs)) > 0
    assert cov.run(lambda: arena.tx(b.descs)) == 0


def test_mutation_changes_fields_and_keeps_the_original() -> None:
    arena = Arena.build("none", 1, MemoryAudit())
    rng = np.random.default_rng(3)
    attack = CLASSES["straddle"].generate(rng, arena.map, 64)
    (b,) = attack.steps
    assert isinstance(b, Tx)
    before = b.descs.copy()
    (m,) = attack.mutate(np.random.default_rng(4), share=0.5).steps
    assert isinstance(m, Tx) and m.descs.size == 64
    assert b.descs.tobytes() == before.tobytes()
    assert (m.descs["addr"] != b.descs["addr"]).any()
    seq = CLASSES["use-after-unpin"].generate(rng, arena.map, 8)
    mutated = seq.mutate(np.random.default_rng(4))
    assert mutated.fresh and kinds(mutated.steps) == kinds(seq.steps)
