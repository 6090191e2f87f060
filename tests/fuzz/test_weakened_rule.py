"""The fuzzer proves it can find things: a verifier rule weakened through the test-only hook is found.

``verifier.rules.checks.WEAKEN`` is empty in production; the fixture adds one rule
for the duration of a test and always empties it again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from fuzz.arena import Arena
from fuzz.campaign import run_campaign
from fuzz.classes import CLASSES
from verifier.audit.memory import MemoryAudit
from verifier.rules import checks, fastpath


@pytest.fixture
def first_byte_only() -> Iterator[None]:
    assert not checks.WEAKEN, "the test-only hook must be empty outside these tests"
    checks.WEAKEN.add(checks.FIRST_BYTE_ONLY)
    try:
        yield
    finally:
        checks.WEAKEN.clear()


def test_fast_path_is_off_while_a_rule_is_weakened(first_byte_only: None) -> None:
    assert fastpath.enabled() is None
    arena = Arena.build("verifier", 1, MemoryAudit())
    for kind in ("tx", "rx"):
        assert getattr(arena.kernel.queue("nic2", kind).handler, "fast", "missing") is None


def test_weakened_range_rule_is_found_within_seconds(first_byte_only: None) -> None:
    start = time.perf_counter()
    result = run_campaign("verifier", seed=1, iterations=2 * len(CLASSES), batch=64)
    assert time.perf_counter() - start < 5
    straddle = [f for f in result.findings if f.cls == "straddle"]
    assert straddle, [(f.cls, f.kind) for f in result.findings]
    escape = straddle[0].escape
    assert escape.kind in ("pin", "dma") and escape.device == "nic2" and escape.length > 1


def test_the_same_campaign_finds_nothing_with_the_rule_whole() -> None:
    assert not checks.WEAKEN
    result = run_campaign("verifier", seed=1, iterations=2 * len(CLASSES), batch=64)
    assert result.escapes == 0, [(f.cls, f.kind, f.escape.what) for f in result.findings]
