"""Differential tests of the campaign's faster paths: each held to its reference path, same seed, same outputs.

The machine reset (one arena, reset before each block and each fresh attack) against the reference,
a freshly built arena each time: the same verdicts, counts, oracle findings and audit records.
"""

from __future__ import annotations

from typing import Any

import pytest

from fuzz.arena import Arena
from fuzz.campaign import run_campaign
from verifier.audit.memory import MemoryAudit


def _fresh_instead_of_reset(self: Arena) -> None:
    """The reference: replace everything the arena holds by a machine built from scratch."""
    built = Arena.build(self.protection, self.seed, self.kernel.audit, self.oracle.detail_limit, resettable=True)
    vars(self).update(vars(built))


def _campaign(protection: str, classes: str | None, **kw: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    sink = MemoryAudit(keep=1_000_000)
    result = run_campaign(protection, 3, classes, audit=sink, **kw)
    records = list(sink.records)
    assert len(records) == sink.next_seq
    return result.as_dict(), records


@pytest.mark.parametrize("protection", ["none", "verifier", "unsafe-inplace", "iommu"])
def test_reset_campaign_equals_fresh_arena_campaign(protection: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kw = {"iterations": 64, "batch": 32, "arena_every": 2}
    fast = _campaign(protection, None, **kw)
    monkeypatch.setattr(Arena, "reset", _fresh_instead_of_reset)
    reference = _campaign(protection, None, **kw)
    assert fast == reference
    assert fast[0]["iterations"] == 64
