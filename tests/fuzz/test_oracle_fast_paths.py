"""The oracle's faster paths (issue 12) against the plain ones they replace: same answers, the same guarantees.

* ``refusal_marks`` reads a 16-byte ring as one masked test of each descriptor's second 64-bit word; the
  field-by-field reading (a ring of another layout, or not contiguous) is the reference.
* ``_owner_labels`` labels a batch hitting one owner without ``np.unique``; the general path is the reference.
* ``reasons._claim_status`` (a pin or access claim's first contradicting fact, per record) is computed by one
  compiled pass (fuzz/oracle/pinclaim.c) when it is loaded: same statuses and frames on hostile columns.
* A watched ring's marks, completions and packet splits are read and reaped by one compiled call
  (fuzz/oracle/ringmarks.c, ``audit._ring_pass``), and a queue's marks matched to its records' slots by another:
  the same marks, splits, reaped bytes and matches as the numpy path on hostile rings, and the same findings word
  for word on campaigns over many seeds, with audit and packet slips planted.
* What one TX doorbell shows (a mark left in the slots handed back, ``held.judge_doorbell``'s facts,
  ``rules.window_atomicity``) is read in one compiled call each: the same counts, facts, splits and findings.
* ``alarm_scope`` installs the step alarm's handler once for a campaign: a hang is still interrupted inside
  it, and the handler in place before comes back after it.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fuzz.campaign import run_campaign
from fuzz.oracle import audit, held, pin_claims, reasons, ring_marks
from fuzz.oracle.audit import refusal_marks
from fuzz.oracle.held import HeldModel
from fuzz.oracle.judge import Oracle
from fuzz.oracle.liveness import Budget, alarm_scope, bounded_step
from fuzz.oracle.reasons import Reference, _owner_labels
from fuzz.oracle.rules import DEFAULT_RULES, window_atomicity
from ring import indices
from ring.compiled import SWITCH
from ring.descriptors import RX_DESC, RXD_ERR_REFUSED, RXD_STAT_DD, TX_DESC, TXD_STAT_DD, TXD_STAT_REFUSED
from ring.memory import OWNER_FREE, OWNER_KERNEL, PAGE_SIZE, PhysicalMemory, owner_name
from tests.fuzz.test_audit_batches import BlanksReasons, DoublesOne, LosesOne, MisplacesOne
from tests.fuzz.test_oracle_rules import PACKETS, weaken_verdicts
from tests.verifier.compiled import compiled_accelerator
from verifier.audit.memory import MemoryAudit
from verifier.rules import reasons as R


def _ring(kind: str, seed: int) -> np.ndarray:
    """A 512-slot ring of random bytes, half its slots carrying (or nearly carrying) the refusal mark."""
    rng = np.random.default_rng(seed)
    ring = rng.integers(0, 256, 512 * 16, dtype=np.uint8).view(TX_DESC if kind == "tx" else RX_DESC)
    pick = rng.random(512) < 0.5
    if kind == "tx":
        marks = [TXD_STAT_DD | TXD_STAT_REFUSED, TXD_STAT_DD, TXD_STAT_REFUSED, 0xFF, 0]
        ring["status"][pick] = rng.choice(marks, int(pick.sum()))
    else:
        ring["status"][pick] |= RXD_STAT_DD
        ring["errors"][pick] |= RXD_ERR_REFUSED
        ring["length"][rng.random(512) < 0.5] = 0
        ring["length"][rng.random(512) < 0.1] = 0x100  # a high byte alone: still not length 0
    return ring


@pytest.mark.parametrize("kind", ["tx", "rx"])
def test_refusal_marks_by_word_equal_the_fields(kind: str) -> None:
    for seed in range(50):
        ring = _ring(kind, seed)
        reference = _by_fields(kind, ring)
        assert refusal_marks(kind, ring).tolist() == reference.tolist()
        slots = np.random.default_rng(seed).integers(0, 512, 100)
        assert refusal_marks(kind, ring, slots).tolist() == np.flatnonzero(np.isin(slots, reference)).tolist()


def _by_fields(kind: str, ring: np.ndarray) -> np.ndarray:
    """The refusal mark as the docstring states it, field by field."""
    status = ring["status"]
    if kind == "tx":
        return np.flatnonzero(((status & TXD_STAT_DD) != 0) & ((status & TXD_STAT_REFUSED) != 0))
    return np.flatnonzero(
        ((status & RXD_STAT_DD) != 0) & ((ring["errors"] & RXD_ERR_REFUSED) != 0) & (ring["length"] == 0)
    )


def test_refusal_marks_of_a_strided_ring_read_the_fields() -> None:
    ring = _ring("rx", 3)
    every_other = ring[::2]  # not contiguous: no word view, the fields
    assert refusal_marks("rx", every_other).tolist() == _by_fields("rx", every_other).tolist()


def test_owner_labels_of_one_owner_equal_the_general_labels() -> None:
    tenant = 2
    for truth in ([OWNER_KERNEL] * 5, [tenant] * 3, [OWNER_FREE], [7] * 4, [tenant, OWNER_KERNEL, 7, tenant], []):
        labels = _owner_labels(np.array(truth, dtype=np.int32), tenant, "own-unpinned")
        expected = ["own-unpinned" if t == tenant else owner_name(t) for t in truth]
        assert labels.tolist() == expected
        assert (labels == np.array(expected, dtype=np.str_)).all()


def test_a_hang_is_interrupted_inside_the_alarm_scope_and_the_old_handler_comes_back() -> None:
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        pytest.skip("the step alarm needs the main thread and setitimer")
    oracle = Oracle(PhysicalMemory(1 << 20, 1 << 16, seed=1), {})

    def mine(_signum: int, _frame: object) -> None:
        raise AssertionError("the test's own handler must not run during the scope")

    def forever() -> None:
        while True:
            pass

    before = signal.signal(signal.SIGALRM, mine)
    try:
        with alarm_scope():
            with alarm_scope():  # nested: the outer handler stays
                assert bounded_step(oracle, lambda: None, Budget(seconds=0.2)) == []
            for _ in range(2):  # one handler, many steps
                found = bounded_step(oracle, forever, Budget(seconds=0.2))
                assert found and found[0].kind == "liveness" and "interrupted" in found[0].what
            assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # disarmed between steps
        assert signal.getsignal(signal.SIGALRM) is mine
    finally:
        signal.signal(signal.SIGALRM, before)


def test_the_refusal_marks_tested_as_one_word_are_single_bits() -> None:
    """``refusal_marks`` tests "bit set" as ``field & bit == bit`` in one masked compare: true only of single bits."""
    assert all(bin(bit).count("1") == 1 for bit in (RXD_STAT_DD, RXD_ERR_REFUSED, TXD_STAT_DD, TXD_STAT_REFUSED))


# -- the pin and access claims' compiled pass (fuzz/oracle/pinclaim.c) against ``reasons._claim_status`` ------------


def _claims(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray, Reference]:
    """Hostile claim columns around a small random pin reference: bytes before, at, inside and past each range,
    past memory, none named, ranges over several frames and to the top of the address space."""
    rng = np.random.default_rng(seed)
    frames = 64
    table = rng.choice(np.array([0, 1, 2, 3, 0x40, 0x41, 0x80, 0x82, 0xC3], dtype=np.uint8), frames)
    ref = Reference(table, {}, frames * PAGE_SIZE)
    addr = rng.integers(0, frames * PAGE_SIZE + 3 * PAGE_SIZE, n).astype(np.uint64)
    addr[rng.random(n) < 0.05] = np.uint64(2**64 - 100)
    length = rng.choice(np.array([0, 1, 64, 4096, 9000, 16384, 2**40], dtype=np.uint64), n)
    offset = rng.integers(-2, 3 * PAGE_SIZE, n)
    bad = (addr.astype(np.int64) + offset).view(np.uint64)
    bad[rng.random(n) < 0.1] = np.uint64(2**64 - 1)  # none named
    first = rng.random(n) < 0.05
    bad[first] = addr[first]  # the first byte itself
    return addr, length, bad, ref


@pytest.mark.parametrize("predicate", [reasons._unpinned, reasons._released, reasons._without_access])
@pytest.mark.parametrize("need", [1, 2])
def test_pin_claims_compiled_equal_the_numpy_statuses(predicate: reasons.FrameBad, need: int) -> None:
    compiled_accelerator(*pin_claims.state())
    seen: set[int] = set()
    for seed in range(40):
        addr, length, bad, ref = _claims(seed)
        status, frame = reasons._claim_status(addr, length, bad, ref, need, predicate)
        fast = pin_claims.judge(addr, length, bad, ref.table, ref.memory_size, need, reasons._lut(predicate, need))
        assert fast is not None
        assert fast[0].tolist() == status.tolist() and fast[1].tolist() == frame.tolist()
        seen.update(status.tolist())
    assert seen == {pin_claims.TRUE, pin_claims.UNNAMED, pin_claims.OUTSIDE, pin_claims.BEFORE, pin_claims.FRAME}


def test_pin_claims_past_the_reference_are_not_sure() -> None:
    """A reference smaller than memory: the compiled pass declines, and the numpy path answers (here: raises)."""
    compiled_accelerator(*pin_claims.state())
    addr, length, bad, ref = _claims(1)
    short = ref.table[:8]
    assert pin_claims.judge(addr, length, bad, short, ref.memory_size, 1, reasons._lut(reasons._unpinned, 1)) is None


# -- a watched ring read and reaped in one compiled call (fuzz/oracle/ringmarks.c) against the numpy path ------------


def _hostile_ring(kind: str, seed: int) -> np.ndarray:
    """``_ring`` with a TX ring's EOP bits at random: packets split between a sent and a refused slot, over the
    ring's end too."""
    ring = _ring(kind, seed)
    if kind == "tx":
        rng = np.random.default_rng(seed + 1000)
        ring["cmd"] = rng.integers(0, 256, ring.size, dtype=np.uint8)
    return ring


@pytest.mark.parametrize(("kind", "completions"), [("tx", True), ("tx", False), ("rx", False)])
def test_a_ring_read_in_one_call_equals_the_numpy_path(kind: str, completions: bool) -> None:
    compiled_accelerator(*ring_marks.state())
    key = ("nic2", kind, 0)
    splits = 0
    for seed in range(60):
        numpy_ring, fast_ring = _hostile_ring(kind, seed), _hostile_ring(kind, seed)
        slots = refusal_marks(kind, numpy_ring)
        found = audit._whole_packets(key, numpy_ring, slots) if completions else []
        audit._acknowledge(kind, numpy_ring, slots)
        ring_pass = audit._ring_pass(kind, fast_ring)
        assert ring_pass is not None
        marks, split = ring_pass.step(completions)
        assert marks.tolist() == slots.tolist() and marks.dtype == slots.dtype
        assert fast_ring.tobytes() == numpy_ring.tobytes()  # the same slots reaped, the same bytes cleared
        assert [e.what for e in found] == ([audit._split(key, *split).what] if split[0] else [])
        splits += split[0] > 0
        # a second step sees nothing left to reap, both ways
        assert ring_pass.step(completions)[0].size == refusal_marks(kind, numpy_ring).size == 0
    assert splits > 10 if completions else splits == 0


def test_a_ring_of_one_slot_and_a_strided_ring() -> None:
    compiled_accelerator(*ring_marks.state())
    ring = _hostile_ring("tx", 4)[:1].copy()
    ring["status"] = TXD_STAT_DD | TXD_STAT_REFUSED
    ring_pass = audit._ring_pass("tx", ring)
    assert ring_pass is not None and ring_pass.step(True) == (np.array([0]), (0, 0, 0))  # no split with itself
    assert audit._ring_pass("tx", _hostile_ring("tx", 4)[::2]) is None  # read field by field


def test_marks_matched_in_one_call_equal_the_sorted_compare() -> None:
    compiled_accelerator(*ring_marks.state())
    ring_pass = audit._ring_pass("tx", _hostile_ring("tx", 0))
    assert ring_pass is not None
    rng = np.random.default_rng(7)
    outcomes = set()
    for _ in range(3000):
        marks = np.flatnonzero(rng.random(512) < rng.random())
        described = rng.permutation(marks)
        change = rng.integers(0, 6)
        if described.size and change == 1:
            described = described[1:]  # a record lost
        elif described.size and change == 2:
            described = np.append(described, described[rng.integers(described.size)])  # one doubled
        elif described.size and change == 3:
            described[rng.integers(described.size)] = rng.choice([-1, 512, 999, 2**62])  # not a slot
        elif described.size and change == 4:
            described[rng.integers(described.size)] = rng.integers(0, 512)  # another slot, or the same
        same = described.size == marks.size and bool((np.sort(described) == marks).all())
        assert ring_pass.match(marks, described) == same
        outcomes.add(same)
    assert outcomes == {True, False}
    assert not ring_pass._seen.any()  # its scratch is left zero
    assert ring_pass.match(np.arange(3), np.arange(3, dtype=np.int32)) is None  # not int64: the numpy path
    for outside in ([-1, 3], [0, 512], [5, 2**62]):  # marks of no slot of this ring: never written through
        assert ring_pass.match(np.array(outside, dtype=np.int64), np.array(outside, dtype=np.int64)) is None
    assert not ring_pass._seen.any()


def _ring_pass_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ring_marks, "state", functools.cache(lambda: (None, "off (test)")))


def _counting_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The packet splits each of the compiled pass's steps found: a campaign compared with the pass on must have
    used it."""
    steps: list[int] = []
    real: Callable[..., Any] = ring_marks.RingPass.step

    def step(self: ring_marks.RingPass, completions: bool) -> Any:
        marks, split = real(self, completions)
        steps.append(split[0])
        return marks, split

    monkeypatch.setattr(ring_marks.RingPass, "step", step)
    return steps


def _findings(result: Any) -> list[tuple[str, str, str]]:
    return [(f.cls, f.kind, f.escape.what) for f in result.findings]


@pytest.mark.parametrize("sink", [MemoryAudit, LosesOne, DoublesOne, MisplacesOne, BlanksReasons])
def test_campaigns_find_the_same_with_the_ring_pass_and_without(
    sink: type[MemoryAudit], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit slips planted (a record lost, doubled, misplaced, blank) and none: the same findings word for word."""
    compiled_accelerator(*ring_marks.state())
    classes = ["kernel-tx", "straddle", "wrap", "fragments", "ring-index", "own-unpinned"]
    steps = _counting_steps(monkeypatch)
    for seed in range(1, 7):
        compiled = run_campaign("verifier", seed, classes, iterations=12, batch=64, arena_every=4, audit=sink())
        with monkeypatch.context() as off:
            _ring_pass_off(off)
            numpy = run_campaign("verifier", seed, classes, iterations=12, batch=64, arena_every=4, audit=sink())
        assert _findings(compiled) == _findings(numpy)
        assert compiled.audit_problems == numpy.audit_problems and compiled.escapes == numpy.escapes
        assert (compiled.escapes == 0) == (sink is MemoryAudit)
    assert steps


def test_a_split_packet_is_found_the_same_with_the_ring_pass_and_without(
    monkeypatch: pytest.MonkeyPatch, numpy_path: None
) -> None:
    """PKT_BAD_FRAGMENT dropped from the kernel's rules (on its numpy path, where a slip is asked): good fragments
    of a doomed packet are sent; the ring pass (switched on alone here) finds the same splits word for word."""
    with monkeypatch.context() as on:  # (the numpy_path fixture switched every accelerator off)
        on.setenv(SWITCH, "1")
        loaded = ring_marks.state.__wrapped__()
    monkeypatch.setattr(ring_marks, "state", functools.cache(lambda: loaded))
    compiled_accelerator(*loaded)
    weaken_verdicts(monkeypatch, R.PKT_BAD_FRAGMENT)
    steps = _counting_steps(monkeypatch)
    compiled = run_campaign("verifier", 1, [PACKETS], iterations=8, batch=32)
    _ring_pass_off(monkeypatch)
    numpy = run_campaign("verifier", 1, [PACKETS], iterations=8, batch=32)
    assert any(steps) and _findings(compiled) == _findings(numpy) and compiled.escapes == numpy.escapes
    assert any("breaks PKT_BAD_FRAGMENT" in what for _, _, what in _findings(compiled))


def test_a_doorbell_window_read_in_one_call_equals_the_numpy_path() -> None:
    compiled_accelerator(*ring_marks.state())
    rng = np.random.default_rng(11)
    facts_seen, splits = set(), 0
    for seed in range(200):
        kind = "tx" if seed % 4 else "rx"
        ring = _hostile_ring(kind, seed)
        if seed % 3 == 0:  # long runs of held (DD clear) slots, as a doorbell leaves them
            ring["status"][rng.integers(0, 512) :][: rng.integers(0, 300)] = 0
        size = len(ring)
        first = int(rng.integers(0, size))
        count = int(rng.choice([0, 1, 2, int(rng.integers(0, size)), size - 1]))
        window = indices.slots(first, count, size)
        assert audit.marked_in(kind, ring, first, count, size) == refusal_marks(kind, ring, window).size
        if kind == "rx":
            continue
        facts = audit.held_window(ring, first, count, size)
        assert facts is not None and facts == held.window_facts(ring, first, count, size)
        facts_seen.add((facts[0] >= 0, facts[1] >= 0, facts[2] >= 0, facts[3]))
        split = audit.atomic_window(ring, first, count, size)
        assert split == window_atomicity(ring, window)
        splits += split is not None
    assert len(facts_seen) >= 6 and splits > 20
    ring = _hostile_ring("tx", 1)
    assert audit.held_window(ring, 0, 5, 256) is None and audit.held_window(ring[::2], 0, 5, 256) is None


def test_held_packets_judged_the_same_with_the_compiled_window_and_without(monkeypatch: pytest.MonkeyPatch) -> None:
    """Doorbell after doorbell on hostile TX rings: the same problems and the same held model both ways."""
    compiled_accelerator(*ring_marks.state())
    rng = np.random.default_rng(5)
    found = 0
    for seed in range(40):
        ring = _hostile_ring("tx", seed)
        ring["status"][rng.random(512) < 0.4] = 0  # held slots
        fast, slow = HeldModel(), HeldModel()
        tail = int(rng.integers(0, 512))
        for _ in range(12):
            after = (tail + int(rng.integers(0, 80))) % 512
            added = int(rng.integers(-1, 3))
            compiled = held.judge_doorbell(fast, ring, tail, after, 512, DEFAULT_RULES, added)
            with monkeypatch.context() as off:
                off.setattr(held, "held_window", lambda *_args: None)
                numpy = held.judge_doorbell(slow, ring, tail, after, 512, DEFAULT_RULES, added)
            assert compiled == numpy and fast == slow
            found += len(compiled)
            tail = after
    assert found > 50


def test_the_switch_turns_the_ring_reads_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """``NIC_SANDBOX_FASTPATH=0``: no ring pass, no compiled window read; the numpy path answers the same."""
    ring = _hostile_ring("tx", 2)
    expected = (audit.marked_in("tx", ring, 3, 200, 512), held.window_facts(ring, 3, 200, 512))
    monkeypatch.setenv(SWITCH, "0")
    ring_marks.state.cache_clear()
    try:
        assert ring_marks.state()[0] is None and "off" in ring_marks.state()[1]
        assert audit._ring_pass("tx", ring) is None and audit.held_window(ring, 3, 200, 512) is None
        assert (audit.marked_in("tx", ring, 3, 200, 512), held.window_facts(ring, 3, 200, 512)) == expected
    finally:
        monkeypatch.undo()
        ring_marks.state.cache_clear()
