"""The oracle's faster paths (issue 12) against the plain ones they replace: same answers, the same guarantees.

* ``refusal_marks`` reads a 16-byte ring as one masked test of each descriptor's second 64-bit word; the
  field-by-field reading (a ring of another layout, or not contiguous) is the reference.
* ``_owner_labels`` labels a batch hitting one owner without ``np.unique``; the general path is the reference.
* ``reasons._claim_status`` (a pin or access claim's first contradicting fact, per record) is computed by one
  compiled pass (fuzz/oracle/pinclaim.c) when it is loaded: same statuses and frames on hostile columns.
* ``alarm_scope`` installs the step alarm's handler once for a campaign: a hang is still interrupted inside
  it, and the handler in place before comes back after it.
"""

from __future__ import annotations

import signal
import threading

import numpy as np
import pytest

from fuzz.oracle import pin_claims, reasons
from fuzz.oracle.audit import refusal_marks
from fuzz.oracle.judge import Oracle
from fuzz.oracle.liveness import Budget, alarm_scope, bounded_step
from fuzz.oracle.reasons import Reference, _owner_labels
from ring.descriptors import RX_DESC, RXD_ERR_REFUSED, RXD_STAT_DD, TX_DESC, TXD_STAT_DD, TXD_STAT_REFUSED
from ring.memory import OWNER_FREE, OWNER_KERNEL, PAGE_SIZE, PhysicalMemory, owner_name
from tests.verifier.compiled import compiled_accelerator


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
