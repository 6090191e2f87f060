"""The virtqueue graph classes (fuzz/virtio_classes.py) on the virtio machine, judged by the oracle's own reading.

Each class runs a few batches in both modes a virtio NIC supports: under
``verifier`` nothing escapes, nothing is refused that keeps every rule and
every refusal names a rule the chain breaks; under ``none`` the classes that
escape there do (a chain never finished, DMA outside mallory's pins).  The
oracle's verdicts at the exact boundaries are checked on hand-made graphs,
and a rule the test weakens in the kernel is found.  A reproducer of a
finding replays: it escapes under ``none`` and not under ``verifier``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import verifier.rules.reasons as R
from fuzz import case as case_mod
from fuzz.arena import Arena
from fuzz.campaign import guarded_step, run_campaign
from fuzz.classes import OPT_IN, VIRTIO, select
from fuzz.oracle.virtq import PINS, chain_rules
from fuzz.steps import Attack
from fuzz.virtio_arena import MACHINE, QUEUE
from fuzz.virtio_classes import INDIRECT, NEXT, WRITE, attack, link, post, table_rows, tx_rows
from ring.virtio import VIRTQ_DESC, VIRTQ_DESC_SIZE
from tests.sandbox.test_cli import run_cli
from verifier.audit.memory import MemoryAudit
from verifier.modes.protection import Protection

ITERATIONS = 12
NAMES = [c.name for c in VIRTIO]


@pytest.mark.parametrize("name", NAMES)
def test_each_class_is_safe_under_verifier(name: str) -> None:
    result = run_campaign("verifier", 3, name, iterations=ITERATIONS, batch=16)
    stats = result.stats[name]
    assert stats.batches == ITERATIONS
    assert [f.escape.what for f in result.findings] == [] and result.audit_problems == []
    if name != "virtio-race":  # the race's chains are valid when the kernel copies them: nothing to refuse
        assert stats.rejected > 0


@pytest.mark.parametrize("name", NAMES)
def test_each_class_escapes_under_none_where_it_should(name: str) -> None:
    cls = OPT_IN[name]
    result = run_campaign("none", 3, name, iterations=ITERATIONS, batch=16)
    kinds = {f.kind for f in result.findings}
    if Protection.NONE in cls.escapes_in:
        assert kinds, f"{name} found nothing under none"
        assert kinds <= {"liveness", "dma", "integrity", "leak"}
    else:
        assert kinds == set()


def test_virtio_names_every_graph_class_and_other_modes_are_refused() -> None:
    assert [c.name for c in select("virtio")] == NAMES
    assert all(c.machine == MACHINE for c in VIRTIO)
    with pytest.raises(ValueError, match="support protection none and verifier, not iommu"):
        run_campaign("iommu", 1, "virtio-loop", iterations=1)


def test_generated_attacks_round_trip() -> None:
    """Every virtio class's attack, written as a case and read back, is the same steps (the replay runs them)."""
    arena = _arena("none")
    for cls in VIRTIO:
        for seed in range(4):
            made = cls.generate(np.random.default_rng([seed, 1]), arena.map, 16)
            assert made.machine == MACHINE and made.fresh
            case = case_mod.Case(1, Protection.NONE, cls.name, made.steps, machine=MACHINE)
            again = case_mod.Case.from_dict(json.loads(case.dumps()))
            assert again.steps == made.steps and again.machine == MACHINE, cls.name


# -- the oracle's rules at their boundaries ---------------------------------------------------------------------
def _arena(mode: str = "verifier") -> Arena:
    return Arena.build(mode, 1, MemoryAudit(), resettable=True, machine=MACHINE)


def _table(graph: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    table = np.zeros(QUEUE, dtype=VIRTQ_DESC)
    for slot, row in graph.items():
        table[slot] = row
    return table


def test_the_oracle_judges_each_boundary_itself() -> None:
    arena = _arena()
    m, rng = arena.map, np.random.default_rng(0)

    def read(addr: int, length: int) -> np.ndarray:
        return arena.memory.data[addr : addr + length].copy()

    def never(addr: int, length: int, need: int) -> bool:
        return False

    def rules(graph: dict[int, tuple[int, int, int, int]], head: int = 0) -> set[str]:
        return chain_rules(_table(graph), head, True, read, never)

    slots = list(range(QUEUE))
    assert rules(link(slots, tx_rows(rng, m, QUEUE))) == set()  # exactly Q descriptors
    looped = link(slots, tx_rows(rng, m, QUEUE))
    a, n, f, _ = looped[QUEUE - 1]
    looped[QUEUE - 1] = (a, n, f | NEXT, 5)
    assert rules(looped) == {"VIRTQ_CHAIN_LOOP"}
    (a, n, f, _), *_ = tx_rows(rng, m, 1)
    assert rules({0: (a, n, NEXT, QUEUE), QUEUE - 1: (a, n, 0, 0)}) == {"VIRTQ_NEXT_BEYOND"}
    assert rules({0: (a, n, NEXT, QUEUE - 1), QUEUE - 1: (a, n, 0, 0)}) == set()
    assert rules({0: (a, n, 0, 0)}, head=QUEUE) == {"VIRTQ_HEAD_BEYOND"}
    assert rules({0: (m.write_pin.bus, 64, WRITE | NEXT, 1), 1: (a, n, 0, 0)}) == {"VIRTQ_WRITE_BEFORE_READ"}
    assert rules({0: (a, 11, 0, 0)}) == {"VIRTQ_NET_HDR_SHORT"}
    assert rules({0: (a, 12, 0, 0)}) == set()
    # indirect tables in mallory's scratch page: Q entries (valid) and Q + 1, a chain of Q and Q + 1 buffers
    for count, direct, broken in ((QUEUE, 0, set()), (QUEUE + 1, 0, {"VIRTQ_INDIRECT_TOO_BIG"}),
                                  (QUEUE - 1, 1, set()), (QUEUE, 1, {"VIRTQ_CHAIN_TOO_LONG"})):  # fmt: skip
        table = table_rows(rng, m, "tx", count)
        raw = np.array(table, dtype=VIRTQ_DESC)
        arena.memory.data[m.scratch.phys : m.scratch.phys + raw.nbytes] = raw.view(np.uint8)
        pointer = (m.scratch.bus, count * VIRTQ_DESC_SIZE, INDIRECT, 0)
        graph = link([0, 1], [*tx_rows(rng, m, 1), pointer]) if direct else {0: pointer}
        assert rules(graph) == broken, (count, direct)
    nested = {0: (m.scratch.bus, VIRTQ_DESC_SIZE, INDIRECT, 0)}
    arena.memory.data[m.scratch.phys : m.scratch.phys + 16] = np.array(
        [(m.scratch.bus, 16, INDIRECT, 0)], dtype=VIRTQ_DESC
    ).view(np.uint8)
    assert rules(nested) == {"VIRTQ_INDIRECT_NESTED"}
    assert rules({0: (m.scratch.bus, 24, INDIRECT, 0)}) == {"VIRTQ_INDIRECT_LEN"}
    assert rules({0: (m.scratch.bus, 16, INDIRECT | NEXT, 1)}) == {"VIRTQ_INDIRECT_WITH_NEXT"}

    def outside(addr: int, length: int, need: int) -> bool:
        return True

    assert chain_rules(_table({0: (a, n, 0, 0)}), 0, True, read, outside) == {PINS}


def test_a_rule_weakened_in_the_kernel_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel stops refusing a writable buffer before a readable one: the oracle says so."""
    monkeypatch.setattr(R, "VIRTQ_WRITE_BEFORE_READ", R.OK)
    result = run_campaign("verifier", 1, "virtio-order", iterations=24, batch=16)
    whats = [f.escape.what for f in result.findings if f.kind == "rule"]
    assert any("VIRTQ_WRITE_BEFORE_READ" in w for w in whats), whats


def test_a_wrong_reason_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel calls a table of Q + 1 entries a chain too long: the audit reason is judged per chain."""
    monkeypatch.setattr(R, "VIRTQ_INDIRECT_TOO_BIG", R.VIRTQ_CHAIN_TOO_LONG)
    result = run_campaign("verifier", 1, "virtio-indirect", iterations=40, batch=16)
    assert any(f.kind == "audit" and "VIRTQ_INDIRECT_TOO_BIG" in f.escape.what for f in result.findings)


def test_a_sum_of_exactly_two_to_the_32_minus_1_called_an_overflow_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel's 32-bit rule off by one (``>=`` for ``>``): a chain summed to 2**32 - 1 fits, and only its pins
    may refuse it; virtio-length puts chains on both sides of the edge and the oracle judges the reason."""
    from verifier.rules import virtq as kernel_rules

    monkeypatch.setattr(kernel_rules, "MAX_CHAIN_BYTES", 0xFFFF_FFFE)
    result = run_campaign("verifier", 3, "virtio-length", iterations=24, batch=16)
    assert any(f.kind == "audit" and "VIRTQ_LEN_OVERFLOW" in f.escape.what for f in result.findings)


def test_the_oracle_reads_the_32_bit_edge_itself() -> None:
    """2**32 - 1 bytes in all: only the pins are broken; 2**32: the overflow too (the oracle's own sum)."""
    arena = _arena("verifier")
    m = arena.map

    def read(addr: int, length: int) -> np.ndarray:
        return arena.memory.data[addr : addr + length]

    def outside(addr: int, length: int, need: int) -> bool:
        return addr + length > m.read_pin.bus + m.read_pin.size

    head = (m.read_pin.bus, 1100, NEXT, 1)
    for total, broken in ((0xFFFF_FFFF, {PINS}), (1 << 32, {PINS, "VIRTQ_LEN_OVERFLOW"})):
        graph = {0: head, 1: (m.read_pin.bus + 2048, total - 1100, 0, 0)}
        assert chain_rules(_table(graph), 0, True, read, outside) == broken


# -- the machine, its reset, replay -----------------------------------------------------------------------------
def _used_ring_attack(arena: Arena) -> Attack:
    from fuzz.steps import Reg
    from ring.virtio import QUEUE_DEVICE_HIGH, QUEUE_DEVICE_LOW, QUEUE_SEL, TRANSMITQ

    m = arena.map
    target = m.alice_rx.bus
    graph = link([0], tx_rows(np.random.default_rng(0), m, 1))
    return attack(Reg(QUEUE_SEL, TRANSMITQ), Reg(QUEUE_DEVICE_LOW, target & 0xFFFF_FFFF),
                  Reg(QUEUE_DEVICE_HIGH, target >> 32), post("tx", graph, [0]))  # fmt: skip


def test_a_reset_machine_answers_as_a_fresh_one() -> None:
    arena = _arena("none")
    first = [(e.kind, e.what) for e in guarded_step(arena, _used_ring_attack(arena)) + arena.close()]
    assert {"dma", "liveness"} <= {k for k, _ in first}
    arena.reset()
    again = [(e.kind, e.what) for e in guarded_step(arena, _used_ring_attack(arena)) + arena.close()]
    assert again == first
    safe = _arena("verifier")
    assert guarded_step(safe, _used_ring_attack(safe)) + safe.close() == []


def test_a_reproducer_replays(tmp_path: Path) -> None:
    result = run_campaign("none", 2, "virtio-race", iterations=8, batch=16)
    finding = next(f for f in result.findings if f.kind == "dma")
    case = case_mod.minimise(case_mod.Case.from_finding(finding, 2, Protection.NONE), budget=40)
    path = case_mod.write_case(case, tmp_path, "race")
    loaded = case_mod.Case.load(path)
    assert loaded.machine == MACHINE and loaded.ops == case.ops
    assert "dma" in case_mod.replay(loaded).kinds()
    assert not case_mod.replay(loaded, "verifier").escaped
    run = run_cli("fuzz", "replay", str(path))
    assert run.returncode == 1 and "ESCAPE (dma)" in run.stdout
    assert run_cli("fuzz", "replay", str(path), "--protection", "verifier").returncode == 0
    refused = run_cli("fuzz", "replay", str(path), "--protection", "iommu")
    assert refused.returncode == 2 and "support protection none and verifier, not iommu" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_campaign_command_refuses_other_modes_in_one_line(tmp_path: Path) -> None:
    run = run_cli("fuzz", "--classes", "virtio", "--protection", "unsafe-inplace", "--iterations", "1",
                  "--out", str(tmp_path))  # fmt: skip
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "virtio NICs support --protection none and verifier" in run.stderr
