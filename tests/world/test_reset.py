"""Machine reset (world/reset.py): a reset machine is a fresh one, down to the last byte and the last attribute.

Two checks, in every protection mode, after attacks of every class (sequences too):
nothing of the attacks survives the reset (the reset machine's whole object graph -- pins,
queues, rings, device registers, counters, the oracle's reference -- and all of DRAM equal a
freshly built machine's), and the reset machine then behaves exactly as the fresh one
(the same verdicts, oracle findings, audit records and operation log for the same attacks).
"""

from __future__ import annotations

import threading
import types
from collections import deque
from typing import Any

import numpy as np
import pytest

from device import fastdev
from fuzz.arena import Arena
from fuzz.campaign import guarded_step
from fuzz.classes import CLASSES, OPT_IN
from fuzz.oracle.audit import AuditWatch
from fuzz.steps import Attack
from tests.verifier.compiled import compiled_accelerator
from verifier.audit.memory import MemoryAudit
from verifier.modes.protection import Protection
from world.reset import SCRATCH, DirtyFrames, Snapshot, scratch_names

SEED = 7
#: every class whose attacks are reproducible by seed (race-threaded depends on thread scheduling)
KINDS = [*CLASSES, "race-points"]
LOCKS = (type(threading.Lock()), type(threading.RLock()))


def _attacks(arena: Arena, seed: int, each: int = 2, batch: int = 24) -> list[tuple[str, Attack]]:
    rng = np.random.default_rng(seed)
    return [(name, CLASSES[name].generate(rng, arena.map, batch)) for name in KINDS for _ in range(each)]


def _run(arena: Arena, sink: MemoryAudit, attacks: list[tuple[str, Attack]]) -> dict[str, Any]:
    """Everything observable of a run: findings per attack, the close backstop, the log, the new audit records."""
    start = sink.next_seq
    watch = AuditWatch(sink)
    watch.watch(arena)
    found = []
    for name, attack in attacks:
        found.append((name, [(e.kind, e.what) for e in guarded_step(arena, attack)], arena.take_suppressed()))
    closing = [(e.kind, e.what) for e in arena.close()]
    records = [{k: v for k, v in r.items() if k != "seq"} for r in list(sink.records) if r["seq"] >= start]
    return {
        "found": found,
        "close": closing,
        "audit_end": [(e.kind, e.what) for e in watch.finish()],
        "log": list(arena.log),
        "records": records,
        "counts": sink.next_seq - start,
    }


def _same_state(a: object, b: object, scratch: frozenset[int] = frozenset()) -> None:
    """Walk two object graphs in step; fail at the first difference, naming its path.  Arrays of ``a`` whose id is
    in ``scratch`` (world/reset.py ``SCRATCH``: staging buffers written before they are read) may hold anything."""
    pairs: dict[int, int] = {}
    stack: list[tuple[object, object, str]] = [(a, b, "arena")]
    while stack:
        x, y, path = stack.pop()
        if type(x) is not type(y):
            raise AssertionError(f"{path}: {type(x).__name__} vs {type(y).__name__}")
        if isinstance(x, (MemoryAudit, Snapshot, DirtyFrames, *LOCKS)) or type(x).__module__ == "_cffi_backend":
            continue  # the sinks are the tests' own; snapshots, locks and C pointers are not machine state
        if isinstance(x, int | float | str | bytes | bool | type(None) | np.generic | type):
            if x != y:
                raise AssertionError(f"{path}: {x!r} vs {y!r}")
            continue
        if id(x) in pairs:
            if pairs[id(x)] != id(y):
                raise AssertionError(f"{path}: shared differently")
            continue
        pairs[id(x)] = id(y)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray)
            if id(x) in scratch:
                continue
            if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                diff = np.flatnonzero(x.view(np.uint8).ravel() != y.view(np.uint8).ravel())[:4]
                raise AssertionError(f"{path}: array differs (bytes {diff.tolist()}...)")
        elif isinstance(x, list | tuple | deque):
            assert isinstance(y, list | tuple | deque)
            if len(x) != len(y):
                raise AssertionError(f"{path}: {len(x)} vs {len(y)} items")
            stack += [(p, q, f"{path}[{i}]") for i, (p, q) in enumerate(zip(x, y, strict=True))]
        elif isinstance(x, set | frozenset):
            if x != y:
                raise AssertionError(f"{path}: {x!r} vs {y!r}")
        elif isinstance(x, dict):
            assert isinstance(y, dict)
            if list(x) != list(y):
                raise AssertionError(f"{path}: keys {list(x)} vs {list(y)}")
            stack += [(x[k], y[k], f"{path}[{k!r}]") for k in x]
        elif isinstance(x, types.MethodType):
            assert isinstance(y, types.MethodType)
            if x.__func__ is not y.__func__:
                raise AssertionError(f"{path}: method {x.__func__} vs {y.__func__}")
            stack.append((x.__self__, y.__self__, f"{path}.__self__"))
        elif isinstance(x, types.FunctionType):
            assert isinstance(y, types.FunctionType)
            if x.__code__ is not y.__code__:
                raise AssertionError(f"{path}: function {x.__qualname__} vs {y.__qualname__}")
        elif hasattr(x, "__dict__"):
            dx, dy = vars(x), vars(y)
            if list(dx) != list(dy):
                raise AssertionError(f"{path}: attributes {sorted(dx)} vs {sorted(dy)}")
            stack += [(dx[k], dy[k], f"{path}.{k}") for k in dx]
        elif x != y:
            raise AssertionError(f"{path}: {x!r} vs {y!r}")


@pytest.mark.parametrize("protection", list(Protection))
def test_a_reset_machine_is_a_fresh_machine(protection: Protection) -> None:
    sink = MemoryAudit()
    reused = Arena.build(protection, SEED, sink, detail_limit=4, resettable=True)
    _run(reused, sink, _attacks(reused, 1))  # its first life: every class, sequences and all
    _run(reused, sink, _attacks(reused, 2))
    reused.reset()

    fresh_sink = MemoryAudit()
    fresh = Arena.build(protection, SEED, fresh_sink, detail_limit=4, resettable=True)
    # nothing survives: pins, queues, rings, registers, the oracle, all of DRAM (staging buffers hold anything)
    _same_state(reused, fresh, _scratch(reused))

    attacks = _attacks(fresh, 3)
    assert _run(reused, sink, attacks) == _run(fresh, fresh_sink, attacks)


def test_reset_undoes_what_each_kind_of_attack_leaves_behind() -> None:
    """Spot checks of the graph comparison: the attack did change these, and the reset undid it."""
    sink = MemoryAudit()
    arena = Arena.build("none", SEED, sink, resettable=True)
    pins_before = arena.mallory.pins.access.copy()
    dram_before = arena.memory.data.copy()
    regs_before = {name: dev.regs.copy() for name, dev in arena.nics.items()}
    for name in ("use-after-unpin", "kernel-rx", "register", "interleave"):
        rng = np.random.default_rng(5)
        for _ in range(3):
            guarded_step(arena, CLASSES[name].generate(rng, arena.map, 16))
    assert arena.tx_tail or arena.rx_tail
    assert not np.array_equal(arena.memory.data, dram_before)  # kernel-rx under none: the device wrote kernel frames
    assert any(not np.array_equal(dev.regs, regs_before[name]) for name, dev in arena.nics.items())
    arena.reset()
    assert arena.tx_tail == arena.rx_tail == 0 and arena.log == [] and arena.handles == {}
    assert np.array_equal(arena.mallory.pins.access, pins_before)
    assert np.array_equal(arena.memory.data, dram_before)
    assert all(np.array_equal(dev.regs, regs_before[name]) for name, dev in arena.nics.items())
    assert arena.snapshot is not None and arena.snapshot.resets == 1


def test_the_snapshot_knows_every_kind_of_state_it_meets() -> None:
    """Objects without attributes to restore are only the compiled fast path's C pointers: nothing is missed."""
    arena = Arena.build("verifier", SEED, MemoryAudit(), resettable=True)
    assert arena.snapshot is not None
    assert arena.snapshot.opaque <= {"_cffi_backend._CDataBase", "_cffi_backend.FFI", "_cffi_backend.Lib"}


def test_threaded_race_then_reset_is_fresh_too() -> None:
    sink = MemoryAudit()
    arena = Arena.build("unsafe-inplace", SEED, sink, resettable=True)
    rng = np.random.default_rng(1)
    guarded_step(arena, OPT_IN["race-threaded"].generate(rng, arena.map, 8))
    arena.reset()
    _same_state(arena, Arena.build("unsafe-inplace", SEED, MemoryAudit(), resettable=True), _scratch(arena))


def _scratch(arena: Arena) -> frozenset[int]:
    assert arena.snapshot is not None
    return frozenset(id(a) for a in arena.snapshot.scratch)


def test_scratch_is_the_compiled_staging_buffers_and_nothing_else() -> None:
    """Every ``SCRATCH`` entry names buffers a machine has (a renamed one would make resets slow again), they are
    most of a machine's array bytes, and nothing else is left out: every other array is restored."""
    arena = Arena.build("verifier", SEED, MemoryAudit(), resettable=True)
    snap = arena.snapshot
    assert snap is not None
    compiled_accelerator(fastdev.enabled(), fastdev.status())  # the buffers exist with the compiled path only
    holders = {(type(o).__module__, type(o).__qualname__) for o, state in snap.objects if scratch_names(o) & set(state)}
    assert {key for key in SCRATCH if key[0].startswith("device.")} <= holders
    ids = {id(a) for a in snap.scratch}
    assert not ids & {id(a) for a, _ in snap.arrays}
    assert sum(a.nbytes for a in snap.scratch) > 4 * sum(a.nbytes for a, _ in snap.arrays)
