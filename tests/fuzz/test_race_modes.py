"""Race injection at every kernel read point, the threaded race, and random interleavings of operations."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fuzz.arena import Arena
from fuzz.campaign import run_campaign
from fuzz.case import Case, replay, steps_from_ops
from fuzz.classes import AFTER_CHECK, BEFORE_READ, CLASSES, OPT_IN, THREADED, Rewrite, select, tx_batch
from fuzz.steps import Attack, Step, Tx, step_from_json
from fuzz.steps.base import kinds
from verifier.audit.memory import MemoryAudit
from verifier.modes.protection import Protection
from verifier.queue_state import QueueState


def _race(step: Step) -> Rewrite:
    """The race of a TX step."""
    assert isinstance(step, Tx) and step.rewrite is not None
    return step.rewrite


def canary(arena: Arena, frame: int = 5) -> int:
    return arena.map.kernel.phys + frame * 4096


# -- before_read: the write lands before the kernel's copy, so it is judged -----------------------------------
@pytest.mark.parametrize("mode", ["verifier", "unsafe-inplace"])
def test_before_read_rewrite_is_judged_and_the_hook_removed(mode: str) -> None:
    arena = Arena.build(mode, 1, MemoryAudit())
    state = arena.kernel.queue("nic2", "tx").state
    assert state is not None and state.before_read == [] and state.after_check == []
    descs = tx_batch([arena.map.read_pin.bus] * 3, 64)
    arena.tx(descs, rewrite=Rewrite(1, addr=canary(arena), point=BEFORE_READ))
    assert state.before_read == []
    assert arena.settle() == []  # the kernel read the rewritten descriptor and refused it
    assert arena.kernel.audit.seq == 1  # type: ignore[attr-defined]
    assert arena.kernel.audit.records[0]["ring_index"] == 1  # type: ignore[attr-defined]


def test_after_check_rewrite_escapes_only_in_place() -> None:
    for mode, escapes in (("unsafe-inplace", True), ("verifier", False)):
        arena = Arena.build(mode, 1, MemoryAudit())
        arena.tx(tx_batch([arena.map.read_pin.bus] * 2, 64), rewrite=Rewrite(0, addr=canary(arena), point=AFTER_CHECK))
        assert bool(arena.settle()) is escapes, mode


def test_before_read_runs_on_every_copy_path() -> None:
    """The hook sits in ``judge_new``: the shadow ring (compiled or not), and ``take_new`` (in place) reach it."""
    for mode in ("verifier", "unsafe-inplace"):
        arena = Arena.build(mode, 1, MemoryAudit())
        calls: list[int] = []

        def seen(st: QueueState, calls: list[int] = calls) -> None:
            calls.append(st.user_reads)

        for kind in ("tx", "rx"):
            state = arena.kernel.queue("nic2", kind).state
            assert state is not None
            state.before_read.append(seen)
        arena.tx(tx_batch([arena.map.read_pin.bus], 64))
        arena.rx(np.array([arena.map.write_pin.bus], dtype=np.uint64))
        arena.doorbell("tx")  # nothing new: no read, no hook
        assert calls == [0, 0], mode  # called before the read was counted


def test_race_points_by_seed_and_in_reproducers() -> None:
    cls = OPT_IN["race-points"]
    arena = Arena.build("none", 1, MemoryAudit())
    rng = np.random.default_rng([1, 0])
    points = {_race(cls.generate(rng, arena.map, 8).steps[0]).point for _ in range(40)}
    assert points == {BEFORE_READ, AFTER_CHECK}
    batch = cls.generate(np.random.default_rng(7), arena.map, 8)
    again = cls.generate(np.random.default_rng(7), arena.map, 8)
    assert batch.ops() == again.ops()
    rw = Rewrite(0, addr=canary(arena), point=BEFORE_READ)
    ops = Attack.of(Tx(tx_batch([arena.map.read_pin.bus], 64), rewrite=rw)).ops()
    assert ops[0]["rewrite_before_read"] == {"slot_offset": 0, "addr": f"{canary(arena):#x}"}
    assert _race(step_from_json(ops[0], "ops[0]", strict=True)) == rw
    case = Case(1, Protection.NONE, "race-points", steps_from_ops(ops))
    assert replay(case).escaped  # none: no check at all
    assert not replay(case, "unsafe-inplace").escaped  # the write came before the kernel's read
    assert not replay(case, "verifier").escaped


def test_race_points_campaigns() -> None:
    for mode in ("none", "unsafe-inplace"):
        result = run_campaign(mode, 1, classes="race-points", iterations=8, batch=64)
        assert result.stats["race-points"].escapes > 0, mode
    inplace = run_campaign("unsafe-inplace", 1, classes="race-points", iterations=8, batch=64)
    assert inplace.stats["race-points"].rejected > 0  # the before_read writes were judged there
    for mode in ("verifier", "iommu"):
        assert run_campaign(mode, 1, classes="race-points", iterations=24, batch=64).escapes == 0, mode


# -- the threaded race -------------------------------------------------------------------------------------------
def test_opt_in_classes_are_selectable_but_not_default() -> None:
    assert not set(OPT_IN) & set(CLASSES)
    assert [c.name for c in select("race-threaded,race-points")] == ["race-threaded", "race-points"]
    assert {c.name for c in select(None)} == set(CLASSES)


@pytest.mark.parametrize("mode", ["unsafe-inplace", "none"])
def test_threaded_race_escapes_where_the_device_reads_the_user_ring(mode: str) -> None:
    before = threading.active_count()
    result = run_campaign(mode, 1, classes="race-threaded", iterations=4, batch=64)
    assert result.stats["race-threaded"].escapes > 0
    assert {f.kind for f in result.findings} & {"leak", "dma", "pin"}
    assert threading.active_count() == before  # the attacker and the poller are gone


@pytest.mark.parametrize("mode", ["verifier", "iommu"])
def test_threaded_race_finds_nothing_in_protected_modes(mode: str) -> None:
    before = threading.active_count()
    result = run_campaign(mode, 1, classes="race-threaded", iterations=6, batch=64)
    assert result.escapes == 0
    assert threading.active_count() == before


def test_threaded_step_is_bounded_and_restores_the_inline_engine() -> None:
    arena = Arena.build("verifier", 1, MemoryAudit())
    rw = Rewrite(0, addr=canary(arena), point=THREADED, rounds=10_000)
    before = threading.active_count()
    arena.tx(tx_batch([arena.map.read_pin.bus] * 4, 64), rewrite=rw)
    assert threading.active_count() == before  # bounded: the attacker thread and the poller have ended
    assert arena.nics["nic2"].mode == "inline"
    assert "tx_threaded" in arena.log[-1]
    op = Tx(tx_batch([1], 64), rewrite=rw).to_json()
    assert op["rewrite_threaded"]["rounds"] == 10_000
    assert _race(step_from_json(op, "ops[0]", strict=True)) == rw
    arena.tx(tx_batch([arena.map.read_pin.bus], 64))  # inline again: the device runs inside the doorbell
    assert arena.settle() == []


# -- interleavings -----------------------------------------------------------------------------------------------
def test_interleavings_are_random_but_seeded() -> None:
    arena = Arena.build("none", 1, MemoryAudit())
    gen = CLASSES["interleave"].generate
    shapes = set()
    for seed in range(20):
        b = gen(np.random.default_rng([3, seed]), arena.map, 64)
        assert b.fresh
        assert b.ops() == gen(np.random.default_rng([3, seed]), arena.map, 64).ops()
        shapes.add(kinds(b.steps))
    seen = {k for shape in shapes for k in shape}
    assert len(shapes) == 20
    assert seen >= {"pin", "unpin", "free", "victim_alloc", "rx", "tx", "doorbell", "reg", "eve_sends"}


def test_interleave_escapes_against_none_within_six_batches_and_replays() -> None:
    result = run_campaign("none", 1, classes="interleave", iterations=6, batch=64)
    assert result.stats["interleave"].escapes > 0
    finding = result.findings[0]
    case = Case.from_finding(finding, 1, Protection.NONE)
    assert Case.from_dict(case.as_dict()).ops == case.ops  # every step is an op
    assert replay(case).escaped
    assert not replay(case, "verifier").escaped
    assert not replay(case, "iommu").escaped


@pytest.mark.parametrize("mode", ["verifier", "iommu", "unsafe-inplace"])
def test_interleave_finds_nothing_in_protected_modes(mode: str) -> None:
    for seed in (1, 2):
        result = run_campaign(mode, seed, classes="interleave", iterations=24, batch=64)
        assert result.escapes == 0, (seed, [f.escape.what for f in result.findings])
