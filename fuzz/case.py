"""Reproducers: one escape as a small, readable JSON case, replayed deterministically, minimised.

A case names the scenario ("attack", the arena of fuzz/arena.py), the seed,
the protection mode it was found under, the attack class, and the
operations, each a readable step::

    {"version": 2, "scenario": "attack", "seed": 1, "protection": "none", "class": "kernel-tx",
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

Each op is one step type of fuzz/steps/ (its keys, types and bounds
declared there); a case holds the typed steps, so replay runs exactly what
a campaign ran.  Format versions (``FORMATS``; docs/fuzzing.md has the
table): 1, the original, read leniently (unknown keys ignored, head fields
defaulted); 2, written now, the same ops read strictly.  Every version's
values are checked; a bad file raises one ``ReproducerError`` line naming
the file, the key and the problem.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fuzz.arena import MACHINES, SCENARIO, Arena
from fuzz.campaign import Finding, guarded_step
from fuzz.oracle.audit import AuditWatch, audit_complete, audit_count
from fuzz.oracle.escape import Escape
from fuzz.steps import ReproducerError, Step, step_from_json
from fuzz.steps.spec import U64, Int, Key, Text, parse_object, u
from verifier.audit.memory import MemoryAudit
from verifier.modes.protection import Protection

#: The format written; ``FORMATS`` the ones read (a file without ``version`` is version 1).
VERSION = 2
FORMATS = {
    1: "the ops of this module; unknown keys ignored; seed, protection and class may be left out",
    2: "the same ops; every key known and every value checked; version, seed, protection and class required",
}
#: Largest case file read (a case of RING-1 descriptors in each of a thousand ops is a few MiB; ``/dev/zero``
#: never ends).
MAX_CASE_BYTES = 32 << 20
#: Replays a minimisation may spend on one case (each builds a fresh arena, ~15 ms).
MINIMISE_BUDGET = 200
#: The case's own keys (besides "ops"), by format version: 1 fills in defaults, 2 requires them.
HEAD = {
    1: {
        "version": Key(Int(1, 1), default=1),
        "scenario": Key(Text((SCENARIO,))),
        "seed": Key(Int(0, 2**63 - 1), default=1),
        "protection": Key(Text(tuple(m.value for m in Protection)), default=Protection.NONE.value),
        "class": Key(Text(), default="?"),
    },
    2: {
        "version": Key(Int(2, 2)),
        "scenario": Key(Text((SCENARIO,))),
        "seed": Key(Int(0, 2**63 - 1)),
        "protection": Key(Text(tuple(m.value for m in Protection))),
        "class": Key(Text()),
        "machine": Key(Text(tuple(MACHINES)), default=""),
    },
}
#: What a case expects of its replay (a note for the reader and the minimiser; checked in version 2).
EXPECT = {
    "kind": Key(Text(), default=None),
    "what": Key(Text(), default=None),
    "address": Key(u(U64, "#x"), default=None),
    "new_lines": Key(Int(0, 2**31 - 1), default=None),
}


def expected(escape: Escape) -> dict[str, Any]:
    """A case's ``expect`` for an escape: its kind and account, and the offending address of a DMA or pin one."""
    expect: dict[str, Any] = {"kind": escape.kind, "what": escape.what}
    if escape.address >= 0 and escape.kind in ("dma", "pin"):
        expect["address"] = f"{escape.address:#x}"
    return expect


def steps_from_ops(ops: object, strict: bool = True) -> tuple[Step, ...]:
    """The steps of a list of ops, each checked (``ops[3] (tx).descs[0].length must be ...`` names a bad value)."""
    if not isinstance(ops, list):
        raise ReproducerError(f"'ops' must be a list of objects, got {type(ops).__name__}")
    return tuple(step_from_json(op, f"ops[{i}]", strict) for i, op in enumerate(ops))


# -- cases -----------------------------------------------------------------------------------
@dataclass
class Case:
    seed: int
    protection: Protection
    cls: str
    steps: tuple[Step, ...]
    expect: dict[str, Any] = field(default_factory=dict)
    scenario: str = SCENARIO
    machine: str = ""  # fuzz/arena.py ``MACHINES``: written only when not the default

    def __post_init__(self) -> None:
        self.steps = tuple(self.steps)

    @property
    def ops(self) -> list[dict[str, Any]]:
        """The steps as reproducer ops."""
        return [s.to_json() for s in self.steps]

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "scenario": self.scenario,
            "seed": self.seed,
            "protection": self.protection.value,
            "class": self.cls,
            **({"machine": self.machine} if self.machine else {}),
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
        return sum(len(s.items()) for s in self.steps)

    def with_steps(self, steps: Iterable[Step]) -> Case:
        return Case(self.seed, self.protection, self.cls, tuple(steps), self.expect, self.scenario, self.machine)

    @classmethod
    def from_dict(cls, data: object) -> Case:
        """A case from its JSON object, in any version of ``FORMATS``, every value checked."""
        if not isinstance(data, dict):
            raise ReproducerError("a case is a JSON object")
        version = data.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version not in FORMATS:
            known = ", ".join(map(str, FORMATS))
            raise ReproducerError(f"unsupported case version {version!r} (this fuzzer reads {known})")
        strict = version >= 2
        head = parse_object(data, HEAD[version], "case", strict, ignore=("ops", "expect"))
        expect = data.get("expect")
        expect = {} if expect is None else expect
        if strict:
            parse_object(expect, EXPECT, "expect", strict)
        elif not isinstance(expect, dict):
            raise ReproducerError(f"expect must be an object, got {type(expect).__name__}")
        if "ops" not in data:
            raise ReproducerError("case: lacks 'ops'")
        steps = steps_from_ops(data["ops"], strict)
        machine = head.get("machine", "")
        return cls(
            head["seed"], Protection(head["protection"]), head["class"], steps, expect, head["scenario"], machine
        )

    @classmethod
    def load(cls, path: str | Path) -> Case:
        """A case file; any problem is one ``ReproducerError`` line naming the file."""
        try:
            with Path(path).open("rb") as f:
                data = f.read(MAX_CASE_BYTES + 1)
            if len(data) > MAX_CASE_BYTES:
                raise ReproducerError(f"{path}: larger than {MAX_CASE_BYTES:,} bytes, so not a reproducer")
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ReproducerError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ReproducerError(f"{path}: not JSON ({err})") from None
        except RecursionError:
            raise ReproducerError(f"{path}: JSON nested too deeply") from None
        except ValueError:  # an integer past Python's int-digit limit
            raise ReproducerError(f"{path}: an integer of more than {sys.get_int_max_str_digits()} digits") from None
        try:
            return cls.from_dict(data)
        except ReproducerError as err:
            raise ReproducerError(f"{path}: {err}") from None

    @classmethod
    def from_finding(cls, finding: Finding, seed: int, protection: Protection) -> Case:
        steps, machine = finding.batch.steps, finding.batch.machine
        return cls(seed, protection, finding.cls, steps, expected(finding.escape), machine=machine)


@dataclass
class StepReport:
    """What one step of a replay did: audit records (and their reasons), notes, escapes."""

    step: Step
    rejected: int
    reasons: list[str]
    escapes: list[Escape]
    notes: list[str] = field(default_factory=list)  # what the lifetime operations did (pin handle, free refused)


@dataclass
class ReplayResult:
    case: Case
    protection: Protection
    steps: list[StepReport]

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
    """Run the case in a fresh arena (under ``protection``, default the case's own) and report each step.

    The audit records are judged as in a campaign: an ``AuditWatch`` over the replay's own sink checks,
    after each step, one record per refusal mark with a true reason, and at the end that counters equal
    records, so an audit finding's reproducer reproduces (kind ``audit``).
    """
    mode = Protection(protection) if protection is not None else case.protection
    audit = MemoryAudit()
    arena = Arena.build(mode, case.seed, audit, machine=case.machine)
    watch = AuditWatch(audit)
    watch.watch(arena)
    steps = []
    for step in case.steps:
        before, notes = audit_count(audit), len(arena.log)
        found = guarded_step(arena, step)
        new = audit_count(audit) - before
        reasons = [str(audit.records[i]["reason"]) for i in range(-min(new, len(audit.records)), 0)]
        steps.append(StepReport(step, new, reasons, found, arena.log[notes:]))
    closing = arena.close() + audit_complete(watch)
    if closing and steps:
        steps[-1].escapes.extend(closing)
    return ReplayResult(case, mode, steps)


# -- minimising ------------------------------------------------------------------------------
def _with_items(case: Case, index: int, keep: list[int]) -> Case:
    """The case with only the items at positions ``keep`` of step ``index`` (a race rewrite follows its slot;
    when the items are RX buffers, eve sends as many frames as are left)."""
    target = case.steps[index]
    steps = [s.follow_buffers(len(keep)) if target.POSTS_BUFFERS else s for s in case.steps]
    steps[index] = target.keep(keep)
    return case.with_steps(steps)


def _covering(step: Step, address: int | None) -> list[int]:
    """Positions of the items to try alone first: the raced descriptor, then those whose range covers ``address``."""
    out = step.raced()
    if address is not None:
        for i, (addr, length) in enumerate(step.items()):
            if addr <= address < addr + max(length, 1) and i not in out:
                out.append(i)
    return out[:4]


def _address(value: object) -> int | None:
    """The expected escape's address (a hex string), if the case names a valid one."""
    try:
        return Int(*U64).parse(value, "expect.address", False) if isinstance(value, str) else None
    except ReproducerError:
        return None


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

    case = case.with_steps(_ddmin(list(case.steps), lambda steps: escapes(case.with_steps(steps)), budget_left))
    at = _address(case.expect.get("address"))
    for index, step in enumerate(case.steps):
        count = len(step.items())
        if count <= 1:
            continue
        keep = list(range(count))
        for j in _covering(step, at):
            if spent < budget and escapes(_with_items(case, index, [j])):
                keep = [j]
                break
        keep = _ddmin(keep, lambda k, c=case, i=index: escapes(_with_items(c, i, k)), budget_left)
        case = _with_items(case, index, keep)
    return _restate(case)


def _restate(case: Case) -> Case:
    """Describe the expected escape as the minimised case produces it (address and account)."""
    kind = case.expect.get("kind")
    for e in replay(case).escapes:
        if kind is None or e.kind == kind:
            return Case(case.seed, case.protection, case.cls, case.steps, expected(e), case.scenario, case.machine)
    return case


def write_case(case: Case, directory: str | Path, name: str) -> Path:
    """Write ``DIR/NAME.json`` whole or not at all (a temporary file renamed over it): ``fuzz --serve`` offers the
    file for download while the campaign runs, and rewrites it minimised at the end."""
    path = Path(directory) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(case.dumps())
    os.replace(temporary, path)
    return path
