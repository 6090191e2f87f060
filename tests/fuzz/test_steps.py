"""Attack steps: one typed step per op, the reproducer JSON both ways, validation, format versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fuzz.arena import Arena
from fuzz.case import VERSION, Case, replay
from fuzz.classes import CLASSES, OPT_IN
from fuzz.steps import (
    STEPS,
    THREADED,
    Doorbell,
    EveSends,
    FakeRing,
    Free,
    OpenQueue,
    Pin,
    PinRange,
    Reg,
    RegAt,
    ReproducerError,
    Rewrite,
    Rx,
    Step,
    Tx,
    Unpin,
    UnpinRange,
    VictimAlloc,
    VirtqPost,
    step_from_json,
    tx_batch,
)
from fuzz.steps.virtq import rows
from sandbox import cli
from verifier.audit.memory import MemoryAudit

CORPUS = sorted((Path(__file__).resolve().parents[2] / "fuzz" / "corpus").glob("*.json"))
HEAD = {"scenario": "attack", "seed": 1, "protection": "none", "class": "kernel-tx"}

EXAMPLES: list[Step] = [
    Tx(tx_batch([0x7000, 2**64 - 1], [128, 0xFFFF], [11, 0], [3, 0], [0, 255])),
    Tx(tx_batch([0x7000], 60), tail=0xFFFF_FFFF),
    Tx(tx_batch([0x7000], 60), tail_back=511),
    Tx(tx_batch([0x7000, 0x8000], 60), rewrite=Rewrite(1, addr=0x1000)),
    Tx(tx_batch([0x7000], 60), rewrite=Rewrite(0, length=6277, point="before_read")),
    Tx(tx_batch([0x7000], 60), rewrite=Rewrite(0, addr=5, length=7, point=THREADED, rounds=10_000)),
    Rx(np.array([0x411000, 2**64 - 1], dtype=np.uint64)),
    Rx(np.array([0x411000], dtype=np.uint64), doorbell=False),
    EveSends(255),
    FakeRing(tx_batch([0x295000] * 256, 124)),
    Reg(0x3800, 0xFFFF_FFFF),
    Pin("uaf", 3),
    Unpin("uaf"),
    Free("uaf"),
    VictimAlloc(2),
    Doorbell("tx"),
    PinRange("spare", -1, 0x2001, 7),
    UnpinRange(40),
    RegAt("nic3", 0x3818, 0x1FF),
    OpenQueue("tx", "scattered_lo", 8, 0x2000, 512),
    VirtqPost(
        "rx",
        ((3, rows([{"addr": 0x405000, "len": 47, "flags": 3, "next": 28}])),),
        ((16, rows([{"addr": 2**64 - 1, "len": 2**32 - 1, "flags": 0xFFFF, "next": 0xFFFF}])),),
        (3, 0xFFFF),
        jump=33,
        notify=False,
    ),
]


def test_every_op_has_one_step_type() -> None:
    assert set(STEPS) == {
        "tx",
        "rx",
        "eve_sends",
        "fake_ring",
        "reg",
        "pin",
        "unpin",
        "free",
        "victim_alloc",
        "doorbell",
        "pin_range",
        "unpin_range",
        "reg_at",
        "open_queue",
        "virtq",
    }
    assert all(cls.kind == name for name, cls in STEPS.items())
    assert {type(s) for s in EXAMPLES} == set(STEPS.values())


@pytest.mark.parametrize("step", EXAMPLES, ids=lambda s: s.kind)
def test_steps_round_trip_through_json(step: Step) -> None:
    op = step.to_json()
    assert op["op"] == step.kind
    again = step_from_json(json.loads(json.dumps(op)), "ops[0]", strict=True)
    assert type(again) is type(step) and again == step and again.to_json() == op
    assert step.describe()


def test_generated_attacks_round_trip_and_replay_alike() -> None:
    """Every class's attack, written and read back, is the same steps: the case replays what the campaign ran."""
    arena = Arena.build("none", 1, MemoryAudit())
    for cls in [*CLASSES.values(), OPT_IN["race-points"]]:
        for seed in range(3):
            attack = cls.generate(np.random.default_rng([seed, 1]), arena.map, 16)
            case = Case(1, arena.protection, cls.name, attack.steps)
            again = Case.from_dict(json.loads(case.dumps()))
            assert again.steps == attack.steps, cls.name


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_version_1_files_replay_like_their_version_2_rewrite(path: Path) -> None:
    old = Case.load(path)
    assert json.loads(path.read_text()).get("version", 1) == 1
    new = Case.from_dict(json.loads(old.dumps()))
    assert json.loads(old.dumps())["version"] == VERSION == 2
    assert new.steps == old.steps and new.expect == old.expect and new.protection == old.protection
    for mode in (None, "verifier"):
        a, b = replay(old, mode), replay(new, mode)
        assert [(e.kind, e.what) for e in a.escapes] == [(e.kind, e.what) for e in b.escapes]
        assert [(s.rejected, s.reasons, s.notes) for s in a.steps] == [
            (s.rejected, s.reasons, s.notes) for s in b.steps
        ]


def test_a_file_without_a_version_is_version_1() -> None:
    data: dict[str, Any] = {"scenario": "attack", "ops": [{"op": "eve_sends", "count": 2, "note": "ignored"}]}
    case = Case.from_dict(data)
    assert case.seed == 1 and case.protection.value == "none" and case.cls == "?" and case.steps == (EveSends(2),)
    with pytest.raises(ReproducerError, match=r"ops\[0\] \(eve_sends\): unknown key 'note'"):
        Case.from_dict({**HEAD, **data, "version": 2})
    with pytest.raises(ReproducerError, match="lacks 'seed'"):
        Case.from_dict({k: v for k, v in {**HEAD, **data, "version": 2}.items() if k != "seed"})


def _desc(**over: object) -> dict[str, object]:
    return {"addr": "0x7000", "length": 64, "cmd": 11, **over}


@pytest.mark.parametrize(
    ("op", "match"),
    [
        ({"op": "tx", "descs": [_desc(addr=hex(2**64))]}, r"ops\[0\] \(tx\)\.descs\[0\]\.addr must be in"),
        ({"op": "tx", "descs": [_desc(addr=-1)]}, r"descs\[0\]\.addr must be in"),
        ({"op": "tx", "descs": [_desc(length=65536)]}, r"descs\[0\]\.length must be in 0\.\.65535, got 65536"),
        ({"op": "tx", "descs": [_desc(cmd=256)]}, r"cmd must be in 0\.\.255"),
        ({"op": "tx", "descs": [_desc(cso=-1)]}, r"cso must be in 0\.\.255"),
        ({"op": "tx", "descs": [_desc(length=True)]}, "length must be an integer, got True"),
        ({"op": "tx", "descs": [_desc(length=1.5)]}, "length must be an integer"),
        ({"op": "tx", "descs": [{"length": 64}]}, r"descs\[0\]: lacks 'addr'"),
        ({"op": "tx", "descs": "0x7000"}, "descs must be a list"),
        ({"op": "tx", "descs": [_desc()] * 512}, "at most 511 items"),
        ({"op": "tx", "descs": [_desc()], "tail": 2**64}, "tail must be in"),  # any 64-bit operand is a store
        ({"op": "tx", "descs": [_desc()], "tail_back": 512}, r"tail_back must be in 1\.\.511"),
        ({"op": "tx", "descs": [_desc()], "tail_back": 0}, r"tail_back must be in 1\.\.511"),
        ({"op": "tx", "descs": [_desc()], "tail": 1, "tail_back": 1}, "tail or tail_back, not both"),
        ({"op": "tx", "descs": [_desc()], "rewrite_after_check": {"slot_offset": 1}}, "slot_offset 1"),
        ({"op": "tx", "descs": [_desc()], "rewrite_after_check": [0]}, "rewrite_after_check must be an object"),
        (
            {"op": "tx", "descs": [_desc()], "rewrite_after_check": {}, "rewrite_before_read": {}},
            "one race per op",
        ),
        ({"op": "tx", "descs": [_desc()], "rewrite_threaded": {"rounds": 0}}, "rounds must be in"),
        ({"op": "rx", "addrs": ["0x1", "zz"]}, r"addrs\[1\] must be an integer, got 'zz'"),
        ({"op": "rx", "addrs": ["0x1"], "doorbell": "no"}, "doorbell must be true or false"),
        ({"op": "eve_sends", "count": 256}, r"count must be in 0\.\.255"),
        ({"op": "fake_ring", "descs": [_desc()] * 257}, "at most 256 items"),
        ({"op": "reg", "offset": "0x20000", "value": 1}, "offset must be in"),
        ({"op": "reg", "offset": 0, "value": 2**32}, "value must be in"),
        ({"op": "reg", "value": 1}, "lacks 'offset'"),
        ({"op": "pin", "span": "uaf", "access": 0}, r"access must be in 1\.\.3"),
        ({"op": "victim_alloc", "pages": 0}, "pages must be in"),
        ({"op": "doorbell"}, "lacks 'queue'"),
        ({"op": "poke"}, r"ops\[0\]: unknown op 'poke'"),
        ({"op": 3}, "unknown op 3"),
        ("tx", r"ops\[0\]: an op is a JSON object"),
    ],
)
def test_bad_ops_are_one_error_naming_the_step_and_key(op: object, match: str) -> None:
    for version in (1, 2):
        with pytest.raises(ReproducerError, match=match):
            Case.from_dict({**HEAD, "version": version, "ops": [op]})


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([], "a case is a JSON object"),
        ({**HEAD, "version": 3, "ops": []}, "unsupported case version 3"),
        ({**HEAD, "version": "2", "ops": []}, "unsupported case version '2'"),
        ({**HEAD, "version": [2], "ops": []}, "unsupported case version"),
        ({**HEAD, "version": 2, "seed": -1, "ops": []}, "seed must be in"),
        ({**HEAD, "version": 2, "protection": "tight", "ops": []}, "protection must be one of"),
        ({**HEAD, "version": 2, "scenario": "ping", "ops": []}, "scenario must be one of attack"),
        ({**HEAD, "version": 2, "ops": {}}, "'ops' must be a list"),
        ({**HEAD, "version": 2}, "lacks 'ops'"),
        ({**HEAD, "version": 2, "ops": [], "extra": 1}, "unknown key 'extra'"),
        ({**HEAD, "version": 2, "ops": [], "expect": {"address": "x"}}, "expect.address must be an integer"),
        ({**HEAD, "version": 1, "ops": [], "expect": "leak"}, "expect must be an object"),
    ],
)
def test_bad_cases_are_one_error(data: object, match: str) -> None:
    with pytest.raises(ReproducerError, match=match):
        Case.from_dict(data)


def test_replay_of_a_bad_file_exits_2_with_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**HEAD, "version": 2, "ops": [{"op": "tx", "descs": [_desc(length=70000)]}]}))
    assert cli.main(["fuzz", "replay", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(bad) in err and "ops[0] (tx).descs[0].length must be in 0..65535, got 70000" in err
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "bad.json").write_text("[1, 2]")
    assert cli.main(["fuzz", "--corpus", str(corpus), "--iterations", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "bad.json" in err and "Traceback" not in err
