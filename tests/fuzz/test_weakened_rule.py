"""The fuzzer proves it can find things: a verifier rule weakened by the test is found.

The fixture weakens one step of the range rule, ``checks.frame_span``, so
that it looks only at each buffer's first byte (a buffer that starts in a
pinned frame and runs into the next frame passes), and runs the kernel
without the compiled fast path (``NIC_SANDBOX_FASTPATH=0``, the user's own
switch): the C implements the whole rule and would refuse the batch before
the weakened numpy rule were asked.  Both are undone after each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from fuzz.arena import Arena
from fuzz.campaign import run_campaign
from fuzz.classes import CLASSES
from ring.memory import PAGE_SHIFT
from tests.verifier.compiled import forget_accelerators
from verifier.audit.memory import MemoryAudit
from verifier.rules import checks, fastpath

WHOLE_RULE = checks.frame_span


def first_frame_only(first_byte: checks.U64, last_byte: checks.U64) -> tuple[checks.U64, checks.U64]:
    """The weakened step: every range ends in the frame it starts in."""
    first = first_byte >> np.uint64(PAGE_SHIFT)
    return first, first


@pytest.fixture
def first_byte_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    assert checks.frame_span is WHOLE_RULE, "the rule must be whole outside these tests"
    monkeypatch.setenv(fastpath.SWITCH, "0")
    forget_accelerators()
    monkeypatch.setattr(checks, "frame_span", first_frame_only)
    try:
        yield
    finally:
        forget_accelerators()


def test_fast_path_is_off_while_a_rule_is_weakened(first_byte_only: None) -> None:
    assert fastpath.enabled() is None
    arena = Arena.build("verifier", 1, MemoryAudit())
    for kind in ("tx", "rx"):
        assert getattr(arena.kernel.queue("nic2", kind).handler, "fast", "missing") is None


def test_weakened_range_rule_is_found_within_two_batches_per_class(first_byte_only: None) -> None:
    result = run_campaign("verifier", seed=1, iterations=2 * len(CLASSES), batch=64)
    straddle = [f for f in result.findings if f.cls == "straddle"]
    assert straddle, [(f.cls, f.kind) for f in result.findings]
    escape = next(f.escape for f in straddle if f.kind in ("pin", "dma"))  # the bytes the device read
    assert escape.device == "nic2" and escape.length > 1
    rule = next(f.escape for f in straddle if f.kind == "rule")  # and the descriptor it was given (fetched first)
    assert "ACCESS_NO_READ" in rule.what or "ADDR_NOT_PINNED" in rule.what


def test_the_same_campaign_finds_nothing_with_the_rule_whole() -> None:
    assert checks.frame_span is WHOLE_RULE
    result = run_campaign("verifier", seed=1, iterations=2 * len(CLASSES), batch=64)
    assert result.escapes == 0, [(f.cls, f.kind, f.escape.what) for f in result.findings]
