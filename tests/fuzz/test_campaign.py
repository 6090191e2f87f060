"""The fuzzer proves it can find things: escapes against ``none``, none against ``verifier`` and ``iommu``."""

from __future__ import annotations

import numpy as np
import pytest

from fuzz.arena import Arena
from fuzz.campaign import run_campaign
from fuzz.case import Case, minimise, replay
from fuzz.classes import CLASSES, select
from fuzz.steps.base import kinds
from verifier.audit.memory import MemoryAudit
from verifier.modes.protection import Protection

EVERY_CLASS = len(CLASSES)


def test_none_seed_1_escapes_in_every_class_that_applies() -> None:
    result = run_campaign("none", 1, iterations=EVERY_CLASS * 4, batch=64)
    applies = [name for name, c in CLASSES.items() if Protection.NONE in c.escapes_in]
    assert len(applies) >= 8
    for name in applies:
        assert result.stats[name].escapes > 0, f"{name}: no escape against none ({result.stats[name]})"
    for name, c in CLASSES.items():
        if not c.escapes_in:  # blocked by the hardware model itself: an escape here is a device bug
            assert result.stats[name].escapes == 0, name
    assert {f.kind for f in result.findings} >= {"dma", "leak", "pin", "integrity"}
    assert result.stats["kernel-tx"].rejected == 0  # nothing is checked in none


@pytest.mark.parametrize("mode", ["verifier", "iommu"])
def test_protected_modes_short_campaign_finds_nothing(mode: str) -> None:
    audit = MemoryAudit(keep=100)
    result = run_campaign(mode, 1, iterations=EVERY_CLASS * 6, audit=audit, batch=64)
    assert result.escapes == 0, [(f.cls, f.kind, f.escape.what) for f in result.findings]
    assert result.findings == []
    for name in ("kernel-tx", "kernel-rx", "other-tenant", "own-unpinned", "wrap", "beyond-memory"):
        stats = result.stats[name]
        assert stats.rejected == stats.generated > 0, (name, stats)
    assert sum(s.rejected for s in result.stats.values()) == audit.seq  # rejected = the audit sink's records


def test_same_seed_same_campaign() -> None:
    a = run_campaign("verifier", 3, iterations=EVERY_CLASS * 2, batch=32)
    b = run_campaign("verifier", 3, iterations=EVERY_CLASS * 2, batch=32)
    c = run_campaign("verifier", 4, iterations=EVERY_CLASS * 2, batch=32)
    assert a.as_dict() == b.as_dict()
    assert a.as_dict()["classes"] != c.as_dict()["classes"]
    n1 = run_campaign("none", 3, classes="kernel-tx,straddle", iterations=6, batch=32)
    n2 = run_campaign("none", 3, classes=["kernel-tx", "straddle"], iterations=6, batch=32)
    assert n1.as_dict() == n2.as_dict()


def test_generators_are_seeded_and_vectorised() -> None:
    arena = Arena.build("none", 1, MemoryAudit())
    for cls in CLASSES.values():
        one = cls.generate(np.random.default_rng([1, 0]), arena.map, 64)
        two = cls.generate(np.random.default_rng([1, 0]), arena.map, 64)
        assert kinds(one.steps) == kinds(two.steps) and one.size == two.size > 0, cls.name
        assert one.ops() == two.ops(), cls.name  # every descriptor, buffer and register write


def test_class_selection() -> None:
    assert [c.name for c in select("kernel-tx, wrap")] == ["kernel-tx", "wrap"]
    assert len(select(None)) == EVERY_CLASS
    with pytest.raises(ValueError, match=r"unknown attack class: nope .*known: kernel-tx"):
        select("kernel-tx,nope")


def test_minimised_reproducer_escapes_with_one_descriptor() -> None:
    result = run_campaign("none", 1, classes="kernel-tx", iterations=1)
    finding = next(f for f in result.findings if f.kind == "leak")
    case = Case.from_finding(finding, 1, Protection.NONE)
    assert case.descriptors == 128
    small = minimise(case)
    assert small.descriptors == 1
    assert "leak" in replay(small).kinds()
    assert not replay(small, "verifier").escaped
    assert Case.from_dict(__import__("json").loads(small.dumps())).ops == small.ops


def test_until_first_ends_after_the_batch_of_the_first_finding() -> None:
    full = run_campaign("none", 1, classes=["kernel-tx", "straddle"], iterations=64, batch=16)
    first = run_campaign("none", 1, classes=["kernel-tx", "straddle"], iterations=64, batch=16, until_first=True)
    assert full.findings and first.findings and not first.interrupted
    assert first.findings[0].key == full.findings[0].key  # the same first finding, found the same way
    assert sum(s.batches for s in first.stats.values()) < sum(s.batches for s in full.stats.values())
