"""Reproducers: one escape as a small, readable JSON case, replayed deterministically, minimised.

A case names the scenario ("attack", the arena of fuzz/arena.py), the seed,
the protection mode it was found under, the attack class, and the
operations, each a readable step::

    {"version": 1, "scenario": "attack", "seed": 1, "protection": "none", "class": "kernel-tx",
     "expect": {"kind": "leak", "what": "kernel canary sent by nic2"},
     "ops": [{"op": "tx", "descs": [{"addr": "0x7000", "length": 128, "cmd": 11}]}]}

Operations: ``tx`` (descriptors at mallory's TX tail, then the doorbell;
optional ``tail`` -- a raw tail value -- or ``tail_back`` -- so many slots
behind the natural tail), ``rx`` (post RX buffers at ``addrs``),
``eve_sends`` (eve sends ``count`` frames to mallory), ``fake_ring``
(descriptors written into mallory's scratch page), ``reg`` (a store of
``value`` into register ``offset`` of nic2).  Addresses and register values
are hex strings so a person can read them against the memory map.

``replay`` builds a fresh arena (the inline engine: deterministic) and runs
the operations, reporting each step: the audit reasons of what the kernel
refused and the escapes the oracle saw, with the offending DMA access.
``minimise`` drops descriptors one at a time (after trying the descriptors
that cover the offending address alone, and halves) while the case still
escapes with the same oracle kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fuzz.arena import SCENARIO, Arena
from fuzz.campaign import Finding, audit_count, guarded_step
from fuzz.classes import Batch, tx_batch
from fuzz.oracle import Escape
from verifier.memory_audit import MemoryAudit
from verifier.protection import Protection

VERSION = 1
#: Replays a minimisation may spend on one case (each builds a fresh arena, ~15 ms).
MINIMISE_BUDGET = 200


class CaseError(ValueError):
    """A case file that is not a valid reproducer."""


# -- ops <-> batches -----------------------------------------------------------------------
def _descs_json(descs: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for d in descs.tolist():  # (addr, length, cso, cmd, status, css, special)
        item: dict[str, Any] = {"addr": f"{d[0]:#x}", "length": int(d[1]), "cmd": int(d[3])}
        if d[2]:
            item["cso"] = int(d[2])
        if d[5]:
            item["css"] = int(d[5])
        out.append(item)
    return out


def _descs_from(items: list[dict[str, Any]]) -> np.ndarray:
    return tx_batch(
        [_int(d["addr"]) for d in items],
        [int(d["length"]) for d in items],
        [int(d.get("cmd", 0)) for d in items],
        [int(d.get("cso", 0)) for d in items],
        [int(d.get("css", 0)) for d in items],
    )


def _int(value: object) -> int:
    if isinstance(value, bool):
        raise CaseError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            raise CaseError(f"expected an integer, got {value!r}") from None
    raise CaseError(f"expected an integer, got {value!r}")


def batch_ops(batch: Batch) -> list[dict[str, Any]]:
    """The readable operations of one campaign batch."""
    if batch.kind == "tx":
        assert batch.descs is not None
        op: dict[str, Any] = {"op": "tx", "descs": _descs_json(batch.descs)}
        if batch.tail is not None:
            op["tail" if batch.tail >= 0 else "tail_back"] = abs(batch.tail)
        return [op]
    if batch.kind == "rx":
        assert batch.addrs is not None
        return [
            {"op": "rx", "addrs": [f"{a:#x}" for a in batch.addrs.tolist()]},
            {"op": "eve_sends", "count": int(batch.addrs.size)},
        ]
    ops: list[dict[str, Any]] = []
    if batch.descs is not None:
        ops.append({"op": "fake_ring", "descs": _descs_json(batch.descs)})
    ops += [{"op": "reg", "offset": f"{o:#06x}", "value": f"{v:#x}"} for o, v in batch.writes]
    return ops


def op_batch(op: dict[str, Any]) -> Batch | int:
    """One operation as a campaign batch (``eve_sends`` comes back as its frame count)."""
    kind = op.get("op")
    if kind == "tx":
        tail = None
        if "tail" in op:
            tail = _int(op["tail"])
        elif "tail_back" in op:
            tail = -_int(op["tail_back"])
        return Batch("tx", _descs_from(op.get("descs", [])), tail=tail)
    if kind == "rx":
        return Batch("rx", addrs=np.array([_int(a) for a in op.get("addrs", [])], dtype=np.uint64))
    if kind == "eve_sends":
        return _int(op.get("count", 1))
    if kind == "fake_ring":
        return Batch("reg", _descs_from(op.get("descs", [])))
    if kind == "reg":
        return Batch("reg", writes=[(_int(op["offset"]), _int(op["value"]))])
    raise CaseError(f"unknown op {kind!r} (known: tx, rx, eve_sends, fake_ring, reg)")


# -- cases -----------------------------------------------------------------------------------
@dataclass
class Case:
    seed: int
    protection: Protection
    cls: str
    ops: list[dict[str, Any]]
    expect: dict[str, Any] = field(default_factory=dict)
    scenario: str = SCENARIO

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "scenario": self.scenario,
            "seed": self.seed,
            "protection": self.protection.value,
            "class": self.cls,
            "expect": self.expect,
            "ops": self.ops,
        }

    def dumps(self) -> str:
        """Pretty JSON with one line per operation (descriptors stay readable side by side)."""
        head = {k: v for k, v in self.as_dict().items() if k != "ops"}
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
        ops = ",\n".join(f"    {json.dumps(op)}" for op in self.ops)
        return "{\n" + "\n".join(lines) + '\n  "ops": [\n' + ops + "\n  ]\n}\n"

    @property
    def descriptors(self) -> int:
        return sum(len(op.get("descs", [])) + len(op.get("addrs", [])) for op in self.ops)

    @classmethod
    def from_dict(cls, data: object) -> Case:
        if not isinstance(data, dict):
            raise CaseError("a case is a JSON object")
        if data.get("version") != VERSION:
            raise CaseError(f"unsupported case version {data.get('version')!r} (this fuzzer reads {VERSION})")
        if data.get("scenario") != SCENARIO:
            raise CaseError(f"unknown scenario {data.get('scenario')!r} (the fuzzer's arena is {SCENARIO!r})")
        ops = data.get("ops")
        if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
            raise CaseError("'ops' must be a list of objects")
        try:
            protection = Protection(data.get("protection", "none"))
        except ValueError:
            raise CaseError(f"unknown protection {data.get('protection')!r}") from None
        for op in ops:
            op_batch(op)  # validate now, with a clear message
        return cls(_int(data.get("seed", 1)), protection, str(data.get("class", "?")), ops, data.get("expect") or {})

    @classmethod
    def load(cls, path: str | Path) -> Case:
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise CaseError(f"cannot read {path}: {err.strerror or err}") from None
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise CaseError(f"{path}: not JSON ({err})") from None
        except KeyError as err:
            raise CaseError(f"{path}: an op lacks {err}") from None

    @classmethod
    def from_finding(cls, finding: Finding, seed: int, protection: Protection) -> Case:
        e = finding.escape
        expect: dict[str, Any] = {"kind": finding.kind, "what": e.what}
        if e.address >= 0 and finding.kind in ("dma", "pin"):
            expect["address"] = f"{e.address:#x}"
        return cls(seed, protection, finding.cls, batch_ops(finding.batch), expect)


@dataclass
class Step:
    op: dict[str, Any]
    rejected: int
    reasons: list[str]
    escapes: list[Escape]


@dataclass
class ReplayResult:
    case: Case
    protection: Protection
    steps: list[Step]

    @property
    def escapes(self) -> list[Escape]:
        return [e for s in self.steps for e in s.escapes]

    @property
    def escaped(self) -> bool:
        return bool(self.escapes)

    def kinds(self) -> set[str]:
        return {e.kind for e in self.escapes}

    @property
    def verdict(self) -> str:
        return "escapes" if self.escaped else "no escape"


def replay(case: Case, protection: Protection | str | None = None) -> ReplayResult:
    """Run the case in a fresh arena (under ``protection``, default the case's own) and report each step."""
    mode = Protection(protection) if protection is not None else case.protection
    audit = MemoryAudit()
    arena = Arena.build(mode, case.seed, audit)
    steps = []
    for op in case.ops:
        item = op_batch(op)
        before = audit_count(audit)
        if isinstance(item, int):
            try:
                arena.eve_sends(item)
                found = arena.settle()
            except Exception as err:
                found = [*arena.settle(), Escape("crash", f"{type(err).__name__}: {err}")]
        else:
            found = guarded_step(arena, item)
        new = audit_count(audit) - before
        reasons = [str(r["reason"]) for r in list(audit.records)[len(audit.records) - new :]] if new else []
        steps.append(Step(op, new, reasons, found))
    closing = arena.close()
    if closing and steps:
        steps[-1].escapes.extend(closing)
    return ReplayResult(case, mode, steps)


# -- minimising ------------------------------------------------------------------------------
def _with_items(case: Case, index: int, key: str, keep: list[Any]) -> Case:
    ops = [dict(op) for op in case.ops]
    ops[index][key] = keep
    for op in ops:  # eve sends as many frames as there are buffers posted
        if op["op"] == "eve_sends" and key == "addrs":
            op["count"] = max(1, len(keep))
    return Case(case.seed, case.protection, case.cls, ops, case.expect, case.scenario)


def _covering(items: list[Any], address: int) -> list[int]:
    """Indexes of the descriptors or buffers whose range may cover ``address`` (tried alone first)."""
    out = []
    for i, item in enumerate(items):
        addr = _int(item["addr"] if isinstance(item, dict) else item)
        length = int(item["length"]) if isinstance(item, dict) else 2048
        if addr <= address < addr + max(length, 1):
            out.append(i)
    return out[:4]


def minimise(case: Case, budget: int = MINIMISE_BUDGET) -> Case:
    """A smaller case that still escapes with the expected kind (or any escape if none is expected)."""
    kind = case.expect.get("kind")
    spent = 0

    def escapes(c: Case) -> bool:
        nonlocal spent
        spent += 1
        kinds = replay(c).kinds()
        return bool(kinds) and (kind is None or kind in kinds)

    # drop whole operations (stray register writes) one at a time
    i = 0
    while i < len(case.ops) and len(case.ops) > 1 and spent < budget:
        trial = Case(case.seed, case.protection, case.cls, case.ops[:i] + case.ops[i + 1 :], case.expect)
        if case.ops[i]["op"] != "eve_sends" and escapes(trial):
            case = trial
        else:
            i += 1
    address = case.expect.get("address")
    for index, op in enumerate(case.ops):
        key = "descs" if "descs" in op else "addrs" if "addrs" in op else None
        if key is None or len(op[key]) <= 1:
            continue
        items = list(op[key])
        if isinstance(address, str):  # the descriptor that made the offending access, alone
            for j in _covering(items, _int(address)):
                if spent < budget and escapes(_with_items(case, index, key, [items[j]])):
                    items = [items[j]]
                    break
        chunk = len(items) // 2
        while chunk >= 1 and len(items) > 1 and spent < budget:  # halves, quarters, ... then one at a time
            start = 0
            while start < len(items) and len(items) > 1 and spent < budget:
                rest = items[:start] + items[start + chunk :]
                if rest and escapes(_with_items(case, index, key, rest)):
                    items = rest
                else:
                    start += chunk
            chunk = min(chunk // 2, max(1, len(items) // 2))
        case = _with_items(case, index, key, items)
    return _restate(case)


def _restate(case: Case) -> Case:
    """Describe the expected escape as the minimised case produces it (address and account)."""
    kind = case.expect.get("kind")
    for e in replay(case).escapes:
        if kind is None or e.kind == kind:
            expect: dict[str, Any] = {"kind": e.kind, "what": e.what}
            if e.address >= 0 and e.kind in ("dma", "pin"):
                expect["address"] = f"{e.address:#x}"
            return Case(case.seed, case.protection, case.cls, case.ops, expect, case.scenario)
    return case


def write_case(case: Case, directory: str | Path, name: str) -> Path:
    path = Path(directory) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(case.dumps())
    return path
