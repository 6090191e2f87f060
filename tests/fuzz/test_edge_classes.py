"""The edge classes (fuzz/edges.py) have teeth: the compiled fast path takes their batches, and slips the older
classes cannot see are found.

Each weakening is a monkeypatch for one test only: the C fast path's length
rule dropped (through the one constant it reads, ``Policy.tx_fast_path``), and
an off-by-one at a buffer's end in the numpy fast check with the compiled
path switched off (``NIC_SANDBOX_FASTPATH=0``).  Batches hostile throughout
fall through to the full numpy checks and never meet either slip; the
``hidden`` class's valid-but-one batches do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from fuzz.arena import Arena
from fuzz.campaign import guarded_step, run_campaign
from fuzz.classes import CLASSES
from fuzz.edges import hidden_rx, hidden_tx
from ring.descriptors import TXD_CMD_EOP
from tests.verifier.compiled import compiled_fast_path, forget_accelerators
from verifier.audit.memory import MemoryAudit
from verifier.rules import checks, fastpath
from verifier.rules.policy import Policy

EDGE = ["hidden", "scattered", "ring-edge", "register"]


class CountingLib:
    """The compiled library, with the check-and-post calls counted by their answer (1 took the batch, 0 not)."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self.answers: list[int] = []

    def tx_snapshot_check_post(self, *args: Any) -> int:
        answer = int(self.lib.tx_snapshot_check_post(*args))
        self.answers.append(answer)
        return answer

    def rx_snapshot_check_post(self, *args: Any) -> int:
        answer = int(self.lib.rx_snapshot_check_post(*args))
        self.answers.append(answer)
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lib, name)


class CountingFast:
    def __init__(self, fast: Any) -> None:
        self.fast = fast
        self.lib = CountingLib(fast.lib)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fast, name)


def test_compiled_path_takes_the_hidden_batches_and_hands_back_the_hostile_ones() -> None:
    compiled_fast_path(required=True)
    arena = Arena.build("verifier", 1, MemoryAudit())
    handler: Any = arena.kernel.queue("nic2", "tx").handler
    counting = CountingFast(handler.fast)
    handler.fast = counting
    rng = np.random.default_rng(5)
    found = []
    for _ in range(40):
        found += guarded_step(arena, hidden_tx(rng, arena.map, 128))
    answers = counting.lib.answers
    assert not found, [e.what for e in found]
    assert answers.count(1) >= 5, answers  # whole valid batches, posted by the C
    assert answers.count(0) >= 10, answers  # one hostile descriptor: handed back to numpy, which refuses it


def test_compiled_path_takes_the_hidden_rx_batches() -> None:
    compiled_fast_path(required=True)
    arena = Arena.build("verifier", 1, MemoryAudit())
    handler: Any = arena.kernel.queue("nic2", "rx").handler
    counting = CountingFast(handler.fast)
    handler.fast = counting
    rng = np.random.default_rng(6)
    found = []
    for _ in range(24):
        found += guarded_step(arena, hidden_rx(rng, arena.map, 64))
    answers = counting.lib.answers
    assert not found, [e.what for e in found]
    assert answers.count(1) >= 2 and answers.count(0) >= 10, answers


def test_unmodified_verifier_finds_nothing_in_the_edge_classes() -> None:
    result = run_campaign("verifier", seed=1, classes=EDGE, iterations=4 * 24, batch=96)
    assert not result.findings, [(f.cls, f.kind, f.escape.what) for f in result.findings]
    assert not result.audit_problems


def test_edge_classes_escape_without_protection() -> None:
    result = run_campaign("none", seed=1, classes=EDGE, iterations=4 * 24, batch=96)
    assert {f.cls for f in result.findings} == set(EDGE)


@pytest.fixture
def compiled_length_rule_dropped(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The fast path's buffer limit raised to the field's maximum: the C (and numpy's fast check) forget the
    length rule; the full numpy checks keep it (they read ``max_buffer``)."""
    whole = Policy().tx_fast_path
    assert whole is not None
    mask, _, _ = whole
    monkeypatch.setattr(Policy, "tx_fast_path", property(lambda self: (mask, np.uint8(TXD_CMD_EOP), np.uint16(0xFFFF))))
    yield


def test_a_dropped_length_rule_in_the_compiled_path_is_found(compiled_length_rule_dropped: None) -> None:
    compiled_fast_path(required=True)
    old = [name for name in CLASSES if name not in ("hidden", "scattered", "jumbo")]
    before = run_campaign("verifier", seed=1, classes=old, iterations=2 * len(old), batch=128)
    assert not before.findings, "the older classes were not expected to see this slip"
    result = run_campaign("verifier", seed=1, classes=["hidden"], iterations=64, batch=128)
    assert any(f.kind in ("pin", "dma", "leak") for f in result.findings), result.as_dict()


@pytest.fixture
def fast_check_one_byte_short(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """numpy's fast check judges ``[addr, addr + span - 1]``: a buffer's last byte is never looked at."""
    whole = checks.pinned_mask
    monkeypatch.setenv(fastpath.SWITCH, "0")
    forget_accelerators()

    def short(addr: Any, span: Any, pins: Any, need: Any) -> Any:
        return whole(addr, np.maximum(span, 1) - 1, pins, need)

    monkeypatch.setattr(checks, "pinned_mask", short)
    try:
        yield
    finally:
        forget_accelerators()


def test_an_off_by_one_at_a_buffers_end_in_the_fast_check_is_found(fast_check_one_byte_short: None) -> None:
    straddle = run_campaign("verifier", seed=1, classes=["straddle"], iterations=8, batch=128)
    assert not straddle.findings, "straddle's batches are hostile throughout: the fast check is never decisive"
    result = run_campaign("verifier", seed=1, classes=["hidden"], iterations=64, batch=128)
    assert any(f.kind == "pin" for f in result.findings), result.as_dict()
