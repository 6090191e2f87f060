"""Race mode, use after unpin, ring overrun, operation sequences and the sequence minimiser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fuzz.arena import Arena
from fuzz.campaign import run_campaign
from fuzz.case import Case, minimise, replay, steps_from_ops
from fuzz.classes import CLASSES, overrun, race, use_after_unpin
from fuzz.steps import Attack, ReproducerError, Rewrite, Tx, tx_batch
from fuzz.steps.base import kinds
from sandbox import cli
from verifier.audit.memory import MemoryAudit
from verifier.modes.protection import Protection

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"


def _case(ops: list[dict[str, Any]], mode: str = "none", cls: str = "use-after-unpin", kind: str | None = None) -> Case:
    return Case(1, Protection(mode), cls, steps_from_ops(ops), {"kind": kind} if kind else {})


def _variants() -> dict[tuple[str, ...], Attack]:
    """One use-after-unpin sequence of each shape the generator makes."""
    m = Arena.build("none", 1, MemoryAudit()).map
    found: dict[tuple[str, ...], Attack] = {}
    for i in range(40):
        b = use_after_unpin(np.random.default_rng([1, i]), m, 64)
        found.setdefault(kinds(b.steps), b)
    return found


# -- race ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "escapes"), [("none", True), ("unsafe-inplace", True), ("verifier", False), ("iommu", False)]
)
def test_race_escapes_only_where_the_device_reads_what_was_checked_too_late(mode: str, escapes: bool) -> None:
    result = run_campaign(mode, 1, classes="race", iterations=12, batch=32)
    assert (result.stats["race"].escapes > 0) is escapes, [(f.kind, f.escape.what) for f in result.findings]
    if mode == "unsafe-inplace":
        assert {f.kind for f in result.findings} >= {"leak", "pin"}  # canary frames and lengths past the pin
        # every descriptor was valid when checked, but a before_read write: judged, refused (one per attack)
        assert 0 < result.stats["race"].rejected <= result.stats["race"].batches


def test_unsafe_inplace_campaign_at_seed_1_finds_the_race_and_only_the_race() -> None:
    result = run_campaign("unsafe-inplace", 1, iterations=len(CLASSES) * 2, batch=64)
    assert result.stats["race"].escapes > 0
    assert {f.cls for f in result.findings} == {"race"}
    for name, c in CLASSES.items():
        assert (Protection.UNSAFE_INPLACE in c.escapes_in) is (name == "race"), name


def test_race_hook_rewrites_after_the_check_and_is_removed() -> None:
    arena = Arena.build("unsafe-inplace", 1, MemoryAudit())
    state = arena.kernel.queue("nic2", "tx").state
    assert state is not None and state.after_check == []
    descs = tx_batch([arena.map.read_pin.bus] * 3, 64)
    canary = arena.map.kernel.phys + 5 * 4096
    arena.tx(descs, rewrite=Rewrite(2, addr=canary))
    assert state.after_check == []
    assert int(arena.tx_ring["addr"][2]) == canary  # in the user ring, after the kernel had read it
    assert {e.kind for e in arena.settle()} >= {"leak", "dma"}
    assert arena.kernel.audit.seq == 0  # type: ignore[attr-defined]  # nothing was refused: the check passed


def test_race_case_round_trips_and_minimises_to_the_raced_descriptor() -> None:
    m = Arena.build("none", 1, MemoryAudit()).map
    batch = race(np.random.default_rng([1, 3]), m, 40)
    (tx,) = batch.steps
    assert isinstance(tx, Tx) and tx.rewrite is not None
    ops = batch.ops()
    assert ops[0]["rewrite_after_check"]["slot_offset"] == tx.rewrite.slot_offset
    case = Case.from_dict(json.loads(_case(ops, "unsafe-inplace", "race").dumps()))
    assert case.ops == ops
    small = minimise(case)
    assert small.descriptors == 1
    assert small.ops[0]["rewrite_after_check"]["slot_offset"] == 0
    assert replay(small).escaped and not replay(small, "verifier").escaped


def test_committed_race_reproducer() -> None:
    case = Case.load(CORPUS / "unsafe-inplace-race-leak.json")
    assert case.protection is Protection.UNSAFE_INPLACE and case.descriptors == 1
    assert "rewrite_after_check" in case.ops[0]
    assert "leak" in replay(case).kinds()
    assert "leak" in replay(case, "none").kinds()
    checked = replay(case, "verifier")
    assert not checked.escaped and checked.steps[0].rejected == 0  # the snapshot was clean, the rewrite moot


def test_replay_prints_the_race(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["fuzz", "replay", str(CORPUS / "unsafe-inplace-race-leak.json")])
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert code == 1 and "rewrites descriptor 0" in out and "ESCAPE (leak)" in out
    assert cli.main(["fuzz", "replay", str(CORPUS / "unsafe-inplace-race-leak.json"), "--protection", "verifier"]) == 0


# -- use after unpin -----------------------------------------------------------------------
def test_use_after_unpin_escapes_in_none_only() -> None:
    variants = _variants()
    reason = {
        ("pin", "rx", "unpin", "doorbell", "eve_sends"): "PIN_RELEASED",  # unpin between writing and the doorbell
        ("pin", "rx", "unpin", "free", "victim_alloc", "doorbell", "eve_sends"): "ADDR_NOT_PINNED",  # frame reused
        ("pin", "rx", "unpin", "free", "victim_alloc", "eve_sends"): "PIN_IN_FLIGHT",  # unpin and free in flight
        # a completion between the deferred unpin and the free: the free is still refused (one buffer in flight)
        ("pin", "rx", "unpin", "eve_sends", "free", "victim_alloc", "eve_sends"): "PIN_IN_FLIGHT",
    }
    assert set(variants) == set(reason)
    for shape, batch in variants.items():
        case = _case(batch.ops())
        kinds = replay(case).kinds()
        assert kinds & {"dma", "integrity", "pin"}, (shape, kinds)
        if "victim_alloc" in shape:
            assert {"dma", "integrity"} <= kinds  # alice's new buffer was written
        checked = replay(case, "verifier")
        assert not checked.escaped, (shape, checked.escapes)
        assert reason[shape] in {r for s in checked.steps for r in s.reasons}, shape
        assert not replay(case, "iommu").escaped, shape


def test_in_flight_unpin_is_deferred_and_the_free_refused_under_verifier() -> None:
    case = Case.load(CORPUS / "none-use-after-unpin-integrity.json")
    checked = replay(case, "verifier")
    notes = [n for s in checked.steps for n in s.notes]
    assert "unpin uaf: deferred" in notes
    assert any(n.startswith("free uaf: refused") for n in notes)
    assert [r for s in checked.steps for r in s.reasons] == ["PIN_IN_FLIGHT"]
    loose = [n for s in replay(case).steps for n in s.notes]
    assert "unpin uaf: released" in loose and any(n.startswith("free uaf: done") for n in loose)


def test_lifetime_ops_are_validated() -> None:
    for op, match in (
        ({"op": "pin", "span": "kernel", "access": 2}, "span must be one of uaf"),
        ({"op": "pin", "span": "uaf", "access": 4}, "access must be"),
        ({"op": "doorbell", "queue": "nope"}, "queue must be one of rx, tx"),
        ({"op": "tx", "descs": [], "rewrite_after_check": {"slot_offset": 2}}, "slot_offset 2"),
    ):
        with pytest.raises(ReproducerError, match=match):
            Case.from_dict({"version": 1, "scenario": "attack", "ops": [op]})
    # a refused lifetime op is a verdict, not a crash
    free = {"op": "free", "span": "uaf"}
    found = replay(_case([{"op": "unpin", "span": "uaf"}, free, free]))
    assert not found.escaped
    assert found.steps[0].notes == ["unpin uaf: not pinned"] and found.steps[2].notes[0].startswith("free uaf: refused")


# -- ring overrun ----------------------------------------------------------------------------
def test_overrun_is_refused_as_ring_overrun_in_verifier_mode() -> None:
    m = Arena.build("none", 1, MemoryAudit()).map
    for i in range(3):
        batch = overrun(np.random.default_rng([7, i]), m, 100)
        assert batch.fresh and set(kinds(batch.steps)) == {"rx"}
        in_flight = sum(s.size for s in batch.steps[:-1])
        claim = batch.steps[-1].size
        assert in_flight + claim > m.ring_size - 1 and claim <= m.ring_size // 2
        checked = replay(_case(batch.ops(), "verifier", "ring-index"))
        assert [r for s in checked.steps for r in s.reasons] == ["RING_OVERRUN"]
        assert not checked.escaped
        assert not replay(_case(batch.ops(), "none", "ring-index")).escaped


def test_ring_index_campaign_includes_overruns() -> None:
    audit = MemoryAudit(keep=1000)
    run_campaign("verifier", 1, classes="ring-index", iterations=12, batch=64, audit=audit)
    reasons = {r["reason"] for r in audit.records}
    assert {"RING_OVERRUN", "RING_TAIL_BEYOND"} <= reasons


# -- sequences and the minimiser ---------------------------------------------------------------
def test_minimiser_drops_steps_first() -> None:
    m = Arena.build("none", 1, MemoryAudit()).map
    noise: list[dict[str, Any]] = [
        {"op": "tx", "descs": [{"addr": f"{m.read_pin.bus + 64 * i:#x}", "length": 60, "cmd": 11}]} for i in range(6)
    ]
    noise.append({"op": "reg", "offset": "0x00d0", "value": "0x0"})
    attack = [
        {"op": "tx", "descs": [{"addr": f"{m.kernel.phys:#x}", "length": 128, "cmd": 11}] * 3},
    ]
    case = _case(noise[:4] + attack + noise[4:], kind="leak", cls="kernel-tx")
    assert replay(case).escaped
    small = minimise(case)
    assert small.ops == [{"op": "tx", "descs": [{"addr": f"{m.kernel.phys:#x}", "length": 128, "cmd": 11}]}]


def test_sequence_campaign_uses_a_fresh_arena_per_sequence() -> None:
    result = run_campaign("none", 1, classes="use-after-unpin", iterations=6)
    assert result.stats["use-after-unpin"].batches == 6
    assert result.stats["use-after-unpin"].escapes >= 6  # every sequence escapes: each ran from the map it aimed at
    finding = result.findings[0]
    case = Case.from_finding(finding, 1, Protection.NONE)
    assert {op["op"] for op in case.ops} >= {"pin", "unpin", "free", "victim_alloc", "eve_sends"}
    small = minimise(case)
    assert len(small.ops) <= len(case.ops) and replay(small).escaped
