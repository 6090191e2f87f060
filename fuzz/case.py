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
``minimise`` delta-debugs first over the operation list (drops halves,
quarters, ... single operations) and then over each operation's
descriptors (after trying alone the raced descriptor and those that cover
the offending address), while the case still escapes with the same oracle
kind.

More operations: ``tx`` may carry ``rewrite_after_check`` (``slot_offset``
into its descriptors, ``addr`` and/or ``length``: the race), ``rx`` may
carry ``"doorbell": false`` (written only; a later ``doorbell`` op with
``queue`` "rx" or "tx" rings it), and the lifetime operations ``pin``
(``span``: "uaf", ``access``), ``unpin``, ``free`` (mallory's span) and
``victim_alloc`` (alice allocates ``pages``, which the oracle then guards).

The race may land elsewhere: ``rewrite_before_read`` (same fields; written
just before the kernel copies the descriptors in, a ``before_read`` hook)
or ``rewrite_threaded`` (plus ``rounds``: a second thread rewriting while
nic2 runs on the threaded engine; its replay depends on thread timing, so
it is evidence, not a deterministic reproducer).  One race per ``tx`` op.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fuzz.arena import SCENARIO, Arena
from fuzz.campaign import Finding, guarded_step
from fuzz.classes import AFTER_CHECK, BEFORE_READ, THREADED, Batch, Rewrite, tx_batch
from fuzz.oracle.audit import audit_count
from fuzz.oracle.escape import Escape
from verifier.audit.memory import MemoryAudit
from verifier.modes.protection import Protection

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


#: The op key of a race rewrite, by ``Rewrite.point``.
REWRITE_KEYS = {AFTER_CHECK: "rewrite_after_check", BEFORE_READ: "rewrite_before_read", THREADED: "rewrite_threaded"}
POINT_OF = {key: point for point, key in REWRITE_KEYS.items()}
SPANS = ("uaf",)  # mallory's spans the lifetime operations may name
OPS = ("tx", "rx", "eve_sends", "fake_ring", "reg", "pin", "unpin", "free", "victim_alloc", "doorbell")


def batch_ops(batch: Batch) -> list[dict[str, Any]]:
    """The readable operations of one campaign batch (a sequence: its steps' operations, in order)."""
    kind = batch.kind
    if kind == "seq":
        return [op for step in batch.steps for op in batch_ops(step)]
    if kind == "tx":
        assert batch.descs is not None
        op: dict[str, Any] = {"op": "tx", "descs": _descs_json(batch.descs)}
        if batch.tail is not None:
            op["tail" if batch.tail >= 0 else "tail_back"] = abs(batch.tail)
        if batch.rewrite is not None:
            rw: dict[str, Any] = {"slot_offset": batch.rewrite.slot_offset}
            if batch.rewrite.addr is not None:
                rw["addr"] = f"{batch.rewrite.addr:#x}"
            if batch.rewrite.length is not None:
                rw["length"] = batch.rewrite.length
            if batch.rewrite.point == THREADED:
                rw["rounds"] = batch.rewrite.rounds
            op[REWRITE_KEYS[batch.rewrite.point]] = rw
        return [op]
    if kind == "rx":
        assert batch.addrs is not None
        rx: dict[str, Any] = {"op": "rx", "addrs": [f"{a:#x}" for a in batch.addrs.tolist()]}
        if not batch.doorbell:
            rx["doorbell"] = False
        return [rx] + ([{"op": "eve_sends", "count": int(batch.addrs.size)}] if batch.eve else [])
    if kind == "pin":
        return [{"op": "pin", "span": batch.span, "access": batch.access}]
    if kind in ("unpin", "free"):
        return [{"op": kind, "span": batch.span}]
    if kind == "victim_alloc":
        return [{"op": "victim_alloc", "pages": batch.count}]
    if kind == "doorbell":
        return [{"op": "doorbell", "queue": batch.span}]
    if kind == "eve":
        return [{"op": "eve_sends", "count": batch.count}]
    ops: list[dict[str, Any]] = []
    if batch.descs is not None:
        ops.append({"op": "fake_ring", "descs": _descs_json(batch.descs)})
    ops += [{"op": "reg", "offset": f"{o:#06x}", "value": f"{v:#x}"} for o, v in batch.writes]
    return ops


def _span(op: dict[str, Any], key: str = "span", known: tuple[str, ...] = SPANS) -> str:
    value = op.get(key)
    if value not in known:
        raise CaseError(f"op {op.get('op')!r}: {key} must be one of {', '.join(known)}, got {value!r}")
    return str(value)


def op_batch(op: dict[str, Any]) -> Batch:
    """One operation as a campaign step."""
    kind = op.get("op")
    if kind == "tx":
        tail = None
        if "tail" in op:
            tail = _int(op["tail"])
        elif "tail_back" in op:
            tail = -_int(op["tail_back"])
        descs = _descs_from(op.get("descs", []))
        rewrite = None
        given = [key for key in REWRITE_KEYS.values() if key in op]
        if len(given) > 1:
            raise CaseError(f"tx: one race per op, got {', '.join(given)}")
        if given:
            key = given[0]
            rw = op[key]
            if not isinstance(rw, dict):
                raise CaseError(f"{key} must be an object")
            slot = _int(rw.get("slot_offset", 0))
            if not 0 <= slot < max(1, descs.size):
                raise CaseError(f"{key}: slot_offset {slot} is not one of the {descs.size} descriptors")
            rewrite = Rewrite(
                slot,
                _int(rw["addr"]) if "addr" in rw else None,
                _int(rw["length"]) if "length" in rw else None,
                point=POINT_OF[key],
                rounds=_int(rw.get("rounds", 1)),
            )
        return Batch("tx", descs, tail=tail, rewrite=rewrite)
    if kind == "rx":
        addrs = np.array([_int(a) for a in op.get("addrs", [])], dtype=np.uint64)
        return Batch("rx", addrs=addrs, doorbell=bool(op.get("doorbell", True)), eve=False)
    if kind == "eve_sends":
        return Batch("eve", count=_int(op.get("count", 1)))
    if kind == "fake_ring":
        return Batch("reg", _descs_from(op.get("descs", [])))
    if kind == "reg":
        return Batch("reg", writes=[(_int(op["offset"]), _int(op["value"]))])
    if kind == "pin":
        access = _int(op.get("access", 2))
        if access not in (1, 2, 3):
            raise CaseError(f"pin: access must be 1 (device read), 2 (device write) or 3, got {access}")
        return Batch("pin", span=_span(op), access=access)
    if kind in ("unpin", "free"):
        return Batch(str(kind), span=_span(op))
    if kind == "victim_alloc":
        return Batch("victim_alloc", count=_int(op.get("pages", 1)))
    if kind == "doorbell":
        return Batch("doorbell", span=_span(op, "queue", ("rx", "tx")))
    raise CaseError(f"unknown op {kind!r} (known: {', '.join(OPS)})")


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
    notes: list[str] = field(default_factory=list)  # what the lifetime operations did (pin handle, free refused)


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
        before, notes = audit_count(audit), len(arena.log)
        found = guarded_step(arena, op_batch(op))
        new = audit_count(audit) - before
        reasons = [str(audit.records[i]["reason"]) for i in range(-min(new, len(audit.records)), 0)]
        steps.append(Step(op, new, reasons, found, arena.log[notes:]))
    closing = arena.close()
    if closing and steps:
        steps[-1].escapes.extend(closing)
    return ReplayResult(case, mode, steps)


# -- minimising ------------------------------------------------------------------------------
def _with_items(case: Case, index: int, key: str, keep: list[int]) -> Case:
    """The case with only the items at positions ``keep`` of op ``index`` (a race rewrite follows its slot)."""
    ops = [dict(op) for op in case.ops]
    op = ops[index]
    op[key] = [case.ops[index][key][i] for i in keep]
    for rw_key in REWRITE_KEYS.values():
        rw = op.get(rw_key)
        if isinstance(rw, dict):
            slot = _int(rw.get("slot_offset", 0))
            if slot in keep:
                op[rw_key] = {**rw, "slot_offset": keep.index(slot)}
            else:
                del op[rw_key]
    for other in ops:  # eve sends as many frames as there are buffers posted
        if other["op"] == "eve_sends" and key == "addrs":
            other["count"] = max(1, len(keep))
    return Case(case.seed, case.protection, case.cls, ops, case.expect, case.scenario)


def _covering(op: dict[str, Any], key: str, address: int | None) -> list[int]:
    """Positions of the items to try alone first: the raced descriptor, then those whose range covers ``address``."""
    out = []
    for rw_key in REWRITE_KEYS.values():
        rw = op.get(rw_key)
        if isinstance(rw, dict):
            out.append(_int(rw.get("slot_offset", 0)))
    if address is not None:
        for i, item in enumerate(op[key]):
            addr = _int(item["addr"] if isinstance(item, dict) else item)
            length = int(item["length"]) if isinstance(item, dict) else 2048
            if addr <= address < addr + max(length, 1) and i not in out:
                out.append(i)
    return out[:4]


def _ddmin(items: list[Any], works: Any, budget_left: Any) -> list[Any]:
    """Delta debugging: drop halves, quarters, ... then single items while ``works(rest)`` holds."""
    chunk = len(items) // 2
    while chunk >= 1 and len(items) > 1 and budget_left():
        start = 0
        while start < len(items) and len(items) > 1 and budget_left():
            rest = items[:start] + items[start + chunk :]
            if rest and works(rest):
                items = rest
            else:
                start += chunk
        chunk = min(chunk // 2, max(1, len(items) // 2))
    return items


def minimise(case: Case, budget: int = MINIMISE_BUDGET) -> Case:
    """A smaller case that still escapes with the expected kind (or any escape if none is expected).

    First over the operation sequence (delta debugging: drop halves of the
    steps, quarters, ... single steps, while the case still escapes), then
    over the descriptors or buffers of each remaining operation.
    """
    kind = case.expect.get("kind")
    spent = 0

    def escapes(c: Case) -> bool:
        nonlocal spent
        spent += 1
        kinds = replay(c).kinds()
        return bool(kinds) and (kind is None or kind in kinds)

    def budget_left() -> bool:
        return spent < budget

    def with_ops(ops: list[dict[str, Any]]) -> Case:
        return Case(case.seed, case.protection, case.cls, ops, case.expect, case.scenario)

    case = with_ops(_ddmin(list(case.ops), lambda ops: escapes(with_ops(ops)), budget_left))
    address = case.expect.get("address")
    for index, op in enumerate(case.ops):
        key = "descs" if "descs" in op else "addrs" if "addrs" in op else None
        if key is None or len(op[key]) <= 1:
            continue
        keep = list(range(len(op[key])))
        for j in _covering(op, key, _int(address) if isinstance(address, str) else None):
            if spent < budget and escapes(_with_items(case, index, key, [j])):
                keep = [j]
                break
        keep = _ddmin(keep, lambda k, c=case, i=index, key=key: escapes(_with_items(c, i, key, k)), budget_left)
        case = _with_items(case, index, key, keep)
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
