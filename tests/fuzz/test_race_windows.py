"""The default campaign's reach into the doorbell's guards: tails no 32-bit register holds, and the race windows.

``ring-index`` writes tails the doorbell window passes on whole (-1, 2**32 + size, 2**64 - 1, ...); ``race`` puts
its write at ``after_check``, at ``before_read``, or on a doorbell that brings nothing, and the oracle judges how
often each window opened (fuzz/oracle/races.py).  The mutants they kill are pinned in
tests/fuzz/mutants/test_killed.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from fuzz.arena import Arena
from fuzz.classes import AFTER_CHECK, BEFORE_READ, CLASSES, Rewrite, tx_batch, wide_tails
from fuzz.oracle.races import RaceWrite, judge_race
from fuzz.steps import Doorbell, Tx, step_from_json
from fuzz.steps.spec import ReproducerError
from verifier.audit.memory import MemoryAudit

U32 = 2**32


def _attacks(name: str, count: int) -> list[tuple[Tx, ...]]:
    arena = Arena.build("none", 1, MemoryAudit())
    gen = CLASSES[name].generate
    out = []
    for i in range(count):
        steps = gen(np.random.default_rng([7, i]), arena.map, 8).steps
        out.append(tuple(s for s in steps if isinstance(s, Tx)))
    return out


def test_ring_index_writes_tails_no_register_holds_whose_low_bits_stall_an_unprotected_device() -> None:
    tails = [s.tail for steps in _attacks("ring-index", 60) for s in steps if s.tail is not None]
    wide = [t for t in tails if not 0 <= t < U32]
    assert wide and any(t < 0 for t in wide) and any(t >= U32 for t in wide)
    assert len(wide) < len(tails)  # the 32-bit ones stay
    for seed in range(20):
        for tail in wide_tails(np.random.default_rng(seed), 512):
            assert not 0 <= tail < U32 and tail & 0xFFFF >= 512  # a device that keeps the low bits stalls


def test_race_puts_its_write_at_each_window_and_on_an_empty_doorbell() -> None:
    seen = set()
    for steps in _attacks("race", 60):
        tx = steps[0]
        assert tx.rewrite is not None
        empty = tx.tail_back == tx.size  # the old tail rung again: nothing new
        seen.add((tx.rewrite.point, empty))
    assert seen == {(AFTER_CHECK, False), (BEFORE_READ, False), (AFTER_CHECK, True), (BEFORE_READ, True)}


@pytest.mark.parametrize("tail", [-1, 2**32, 2**32 + 512, 2**64 - 1])
def test_a_wide_tail_is_refused_and_audited_whole(tail: int) -> None:
    arena = Arena.build("verifier", 1, MemoryAudit())
    arena.tx(tx_batch([arena.map.read_pin.bus], 64), tail=tail)
    assert arena.settle() == []
    (record,) = arena.kernel.audit.records  # type: ignore[attr-defined]
    assert (record["reason"], record["ring_index"], record["detail"]["new_tail"]) == ("RING_TAIL_BEYOND", None, tail)


def test_the_race_windows_on_the_unmodified_kernel_find_nothing() -> None:
    for mode in ("verifier", "unsafe-inplace"):
        arena = Arena.build(mode, 1, MemoryAudit())
        descs = tx_batch([arena.map.read_pin.bus] * 2, 64)
        canary = arena.map.kernel.phys + 5 * 4096
        arena.tx(descs, rewrite=Rewrite(1, addr=canary, point=BEFORE_READ))  # judged: refused
        for point in (BEFORE_READ, AFTER_CHECK):  # an empty doorbell: neither window opens
            arena.tx(descs, tail_back=2, rewrite=Rewrite(0, addr=canary, point=point))
            Doorbell("tx").run(arena)
        assert arena.settle() == [], mode


def test_the_oracle_counts_the_windows_against_what_the_doorbell_brought() -> None:
    def judged(landed: int, moved: bool, held_open: bool = False) -> list[str]:
        return [e.kind for e in judge_race(RaceWrite(BEFORE_READ, lambda: landed), "nic2", "tx", moved, held_open)]

    assert judged(1, True) == [] and judged(0, False) == []
    assert judged(0, True) == ["race"]  # read without the moment before it
    assert judged(1, False) == ["race"]  # a window on a doorbell that brought nothing
    assert judged(1, False, held_open=True) == []  # a held packet may be read again: not judged


def test_a_reproducer_tail_is_any_64_bit_operand() -> None:
    for tail in (-1, -(2**63), 2**32, 2**64 - 1):
        step = step_from_json({"op": "tx", "descs": [], "tail": tail}, "ops[0]", strict=True)
        assert isinstance(step, Tx) and step.tail == tail and step.to_json()["tail"] == tail
    with pytest.raises(ReproducerError, match="tail"):
        step_from_json({"op": "tx", "descs": [], "tail": 2**64}, "ops[0]", strict=True)
