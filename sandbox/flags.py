"""Flags shared by the commands that run the kernel, and what they turn into.

``--protection``, ``--audit-log`` and ``--fsync`` with its group commit
(``--fsync-batch``, ``--fsync-interval``: :func:`group_from_flags`) (every demo that runs the
kernel, :func:`add_kernel_flags`), with ``--audit-clock`` and
``--audit-max-bytes`` (:func:`add_audit_flags`, also taken by ``fuzz``); ``--scenario``, ``--seed`` and ``--engine``
(every demo that builds a simulated machine from a scenario,
:func:`add_scenario_flags`).  :func:`scenario_from_flags` and
:func:`audit_from_flags` turn them into a scenario and an open audit log, with
bad values as one-line usage errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from device.e1000 import EngineMode
from sandbox.argtypes import bounded_number, check_output_path, int_range
from sandbox.errors import UsageError
from verifier.audit.durability import (
    DEFAULT_INTERVAL_MS,
    DEFAULT_RECORDS,
    MAX_INTERVAL_MS,
    MAX_RECORDS,
    MIN_INTERVAL_MS,
    GroupCommit,
    describe,
)
from verifier.audit.log import (
    FSYNC_POLICIES,
    MAX_BYTES,
    SCHEMA_V2,
    SCHEMA_VERSION,
    SCHEMAS,
    VIRTUAL_EPOCH_NS,
    AuditError,
    AuditLog,
)
from verifier.audit.read import check_appendable
from verifier.modes.protection import PROTECTION_HELP, Protection
from world import scenario
from world.traffic import MAX_SIZE, MIN_SIZE

P = TypeVar("P", bound=argparse.ArgumentParser)
DEFAULT_AUDIT_LOG = "out/audit.jsonl"
#: ``--audit-clock``: ``wall`` is the real time (the default); ``virtual`` the deterministic clock of
#: reproducible tests and demos (``VIRTUAL_EPOCH_NS`` plus 1 µs per record, :func:`deterministic_clock`).
AUDIT_CLOCKS = ("wall", "virtual")
_SIZE = re.compile(r"^(\d+)\s*([kmgt]?)(i?b)?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def byte_size(text: str) -> int | None:
    """``--audit-max-bytes``: ``256M``, ``1G``, ``500000`` (K/M/G/T are powers of 1024), or ``0``/``none``: no limit."""
    if text.strip().lower() in ("0", "none", "unlimited"):
        return None
    m = _SIZE.match(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(
            f"--audit-max-bytes wants a size such as 256M or 1G (or 0: no limit), got {text!r}"
        )
    size = int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if size < 4096:
        raise argparse.ArgumentTypeError(f"--audit-max-bytes must be at least 4K (or 0: no limit), got {text}")
    return size


def flags_given(args: argparse.Namespace, names: Iterable[str]) -> list[str]:
    """The flags among ``names`` (argparse dests) that the user set, spelled as typed: ``no_pcap`` -> ``--no-pcap``.

    For flags that exclude each other in ways argparse cannot say (``demo ping --serve`` sends nothing,
    so it takes none of the flags about what to send).
    """
    return [f"--{k.replace('_', '-')}" for k in names if getattr(args, k, None) not in (None, False)]


def add_kernel_flags(parser: argparse.ArgumentParser) -> None:
    modes = "; ".join(f"{m.value}: {PROTECTION_HELP[m]}" for m in Protection)
    parser.add_argument(
        "--protection",
        choices=[m.value for m in Protection],
        help=f"who checks descriptors (default: the scenario's). {modes}",
    )
    parser.add_argument(
        "--audit-log",
        metavar="PATH",
        default=DEFAULT_AUDIT_LOG,
        help=f"append rejections to this hash-chained JSON Lines log (default {DEFAULT_AUDIT_LOG})",
    )
    parser.add_argument(
        "--fsync",
        choices=list(FSYNC_POLICIES),
        default="batch",
        help="audit durability: always (fsync per record), batch (one fsync per doorbell, default; "
        "with --fsync-batch/--fsync-interval: group commit), never",
    )
    add_group_commit_flags(parser)
    add_audit_flags(parser)


def add_group_commit_flags(parser: argparse.ArgumentParser) -> None:
    """``--fsync-batch N``, ``--fsync-interval MS``: group commit of ``--fsync batch`` (verifier/audit/durability)."""
    parser.add_argument(
        "--fsync-batch",
        type=int_range(1, MAX_RECORDS, "--fsync-batch"),
        metavar="N",
        help=f"group commit: fsync once N audit records wait (default {DEFAULT_RECORDS} when --fsync-interval "
        "is given; without either flag: once per doorbell); needs --fsync batch",
    )
    parser.add_argument(
        "--fsync-interval",
        type=bounded_number(float, "--fsync-interval", MIN_INTERVAL_MS, MAX_INTERVAL_MS),
        metavar="MS",
        help=f"group commit: fsync once the oldest waiting record has waited MS milliseconds, whichever of the "
        f"two comes first (default {DEFAULT_INTERVAL_MS:g} when --fsync-batch is given); needs --fsync batch",
    )


def group_from_flags(args: argparse.Namespace) -> GroupCommit | None:
    """The group commit ``--fsync-batch``/``--fsync-interval`` ask for (None: one fsync per doorbell).

    Either flag with ``--fsync always`` or ``never`` is a usage error: neither policy has groups to size.
    """
    given = flags_given(args, ("fsync_batch", "fsync_interval"))
    if not given:
        return None
    if args.fsync != "batch":
        raise UsageError(f"{given[0]} sizes group commit, which needs --fsync batch (got --fsync {args.fsync})")
    records = DEFAULT_RECORDS if args.fsync_batch is None else int(args.fsync_batch)
    interval = DEFAULT_INTERVAL_MS if args.fsync_interval is None else float(args.fsync_interval)
    return GroupCommit(records, interval)


#: The schema of a new audit log that ``nic-sandbox fuzz`` writes: v2, one hash per doorbell (a campaign's log is a
#: flood of refusals, and v1's hash per record made the log, not the verifier, the bottleneck: issue 12).
FUZZ_AUDIT_SCHEMA = SCHEMA_V2


def add_audit_flags(parser: argparse.ArgumentParser, schema: int = SCHEMA_VERSION) -> None:
    """``--audit-clock``, ``--audit-max-bytes`` and ``--audit-schema``: what time the audit log records, its disk
    budget, and whether it chains every record (v1) or every batch (v2, docs/audit-log.md).

    ``schema`` is the command's default: a demo's few refusals keep v1's hash per record (a check names the
    record); the fuzzer's flood of them gets v2 (one hash per doorbell: the log stops being the bottleneck).
    """
    parser.add_argument(
        "--audit-clock",
        choices=AUDIT_CLOCKS,
        default="wall",
        help="time stamps of audit records: wall (real UTC time, default) or virtual (2023-11-14T22:13:20Z "
        "plus 1 µs per record: byte-identical logs for reproducible tests and demos)",
    )
    parser.add_argument(
        "--audit-max-bytes",
        type=byte_size,
        default=MAX_BYTES,
        metavar="SIZE",
        help=f"disk budget of the audit log and its rotated files (default {MAX_BYTES >> 20}M; 0: no limit); "
        "the oldest rotated files are deleted past it",
    )
    parser.add_argument(
        "--audit-schema",
        type=int,
        choices=SCHEMAS,
        default=schema,
        help=f"schema of a new audit log (default {schema}): 1 chains every record (a check names the altered "
        "record), 2 chains a checkpoint per batch (one hash per doorbell, ~2x faster to write and verify; a check "
        "names the batch); an existing log is continued in its own schema",
    )


def add_scenario_flags(parser: argparse.ArgumentParser) -> None:
    """``--scenario``, ``--seed``, ``--engine``: the simulated machine, and what to override in it."""
    parser.add_argument("--scenario", metavar="FILE", help="scenario TOML (default: the embedded one of the demo)")
    parser.add_argument("--seed", type=int_range(0, 2**63 - 1, "--seed"), help="override the scenario's seed")
    parser.add_argument(
        "--engine",
        choices=[m.value for m in EngineMode],
        help="inline: the device runs inside the doorbell write (deterministic); threaded: on its own thread",
    )


def add_demo_kind(
    kinds: argparse._SubParsersAction[P],
    name: str,
    summary: str,
    description: str,
    examples: str,
    epilog: str = "",
) -> P:
    """One ``demo`` kind: its one-line ``summary`` in ``demo --help``, and a ``--help`` of its own whose
    description and examples keep their line breaks (``epilog``, when given, follows the examples)."""
    return kinds.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"examples:\n{examples}" + (f"\n\n{epilog}" if epilog else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_frame_size_flag(parser: argparse.ArgumentParser, default: str) -> None:
    """``--size``: a frame's size on the wire, FCS included, within Ethernet's bounds (world.traffic)."""
    parser.add_argument(
        "--size",
        type=int_range(MIN_SIZE, MAX_SIZE, "--size"),
        help=f"frame size on the wire, FCS included, {MIN_SIZE}-{MAX_SIZE} (default {default})",
    )


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")


def scenario_from_flags(args: argparse.Namespace, embedded: str) -> scenario.Scenario:
    """The scenario (``--scenario`` or the embedded one) with ``--seed``, ``--engine``, ``--protection`` applied."""
    scen = scenario.load(args.scenario, embedded=embedded)
    if args.seed is not None:
        scen = dataclasses.replace(scen, seed=args.seed)
    if args.engine is not None:
        scen = dataclasses.replace(scen, engine=EngineMode(args.engine))
    if args.protection is not None:
        scen = dataclasses.replace(scen, protection=Protection(args.protection))
    return scen


def audit_from_flags(args: argparse.Namespace, scen: scenario.Scenario) -> AuditLog:
    """The ``--audit-log`` for this scenario's protection and engine; an unusable path is a usage error."""
    check_output_path(args.audit_log, "--audit-log")
    group = group_from_flags(args)
    try:
        return open_audit(
            args.audit_log,
            scen.protection,
            args.fsync,
            clock=args.audit_clock,
            max_bytes=args.audit_max_bytes,
            group=group,
            schema=args.audit_schema,
        )
    except ValueError as err:
        raise UsageError(str(err)) from None


def deterministic_clock() -> Callable[[], tuple[int, int]]:
    """Audit time stamps that depend only on the order of records (inline engine: invariant 7).

    Record ``n`` is stamped ``VIRTUAL_EPOCH_NS + n`` µs, with
    ``mono_ns`` = ``n`` µs: a virtual record always has ``wall`` =
    2023-11-14T22:13:20Z + ``mono_ns``, which is how a reader tells this
    clock from the real one (``verifier.audit.log.clock_of``).
    """
    ticks = itertools.count()

    def clock() -> tuple[int, int]:
        n = next(ticks) * 1_000
        return VIRTUAL_EPOCH_NS + n, n

    return clock


def open_audit(
    path: str,
    protection: Protection,
    fsync: str,
    *,
    clock: str = "wall",
    max_bytes: int | None = MAX_BYTES,
    group: GroupCommit | None = None,
    schema: int = SCHEMA_VERSION,
) -> AuditLog:
    """Open (append to) the audit log with the real clock, or the virtual one (``clock="virtual"``).

    The virtual clock continues from the log's next seq, so a run appended
    to a log goes on counting instead of restarting at the epoch.  Which clock
    is a flag, not a consequence of the engine: a log records real time
    unless a test or a demo asks for reproducible bytes.  An unusable path or
    log is a ``ValueError`` naming it (checked before the folders are made).
    """
    if clock not in AUDIT_CLOCKS:
        raise ValueError(f"audit clock must be one of {', '.join(AUDIT_CLOCKS)}, got {clock!r}")
    try:
        check_output_path(path, "--audit-log")
    except UsageError as err:
        raise ValueError(str(err)) from None
    offset = [0]
    virtual = deterministic_clock()

    def continued() -> tuple[int, int]:
        wall, mono = virtual()
        return wall + offset[0], mono + offset[0]

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        check_appendable(path)
        log = AuditLog(
            path,
            protection=protection.value,
            fsync=fsync,
            clock=continued if clock == "virtual" else None,
            max_bytes=max_bytes,
            group=group,
            schema=schema,
        )
    except (AuditError, OSError) as err:
        raise ValueError(f"cannot use audit log {path}: {err}") from None
    offset[0] = log.next_seq * 1_000
    return log


def durability_line(audit: AuditLog) -> str:
    """The one line a demo prints about the durability setting it ran with (``--fsync`` and its group commit)."""
    return f"audit durability: {describe(audit.fsync, audit.group)}"


def durability_json(audit: AuditLog) -> dict[str, object]:
    """The same setting for ``--json``: the policy, and the group commit (null: per doorbell, or not batch)."""
    group = audit.group
    return {
        "fsync": audit.fsync,
        "fsync_batch": None if group is None else group.records,
        "fsync_interval_ms": None if group is None else group.interval_ms,
    }
