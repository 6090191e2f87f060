"""Flags shared by the commands that run the kernel, and what they turn into.

``--protection``, ``--audit-log`` and ``--fsync`` (every demo that runs the
kernel, :func:`add_kernel_flags`); ``--scenario``, ``--seed`` and ``--engine``
(every demo that builds a simulated machine from a scenario,
:func:`add_scenario_flags`).  :func:`scenario_from_flags` and
:func:`audit_from_flags` turn them into a scenario and an open audit log, with
bad values as one-line usage errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from collections.abc import Callable, Iterable
from pathlib import Path

from device.clock import EPOCH_NS
from device.e1000 import EngineMode
from sandbox.argtypes import check_output_path, int_range
from sandbox.errors import UsageError
from verifier.audit.log import FSYNC_POLICIES, AuditError, AuditLog
from verifier.audit.read import check_appendable
from verifier.modes.protection import PROTECTION_HELP, Protection
from world import scenario

DEFAULT_AUDIT_LOG = "out/audit.jsonl"


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
        help="audit durability: always (fsync per record), batch (one fsync per doorbell, default), never",
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
    try:
        return open_audit(args.audit_log, scen.protection, args.fsync, scen.engine)
    except ValueError as err:
        raise UsageError(str(err)) from None


def deterministic_clock() -> Callable[[], tuple[int, int]]:
    """Audit time stamps that depend only on the order of records (inline engine: invariant 7)."""
    ticks = itertools.count()

    def clock() -> tuple[int, int]:
        n = next(ticks) * 1_000
        return EPOCH_NS + n, n

    return clock


def open_audit(path: str, protection: Protection, fsync: str, engine: EngineMode) -> AuditLog:
    """Open (append to) the audit log; the inline engine gets a deterministic clock.

    An unusable path or log is a ``ValueError`` naming it (checked before the folders are made).
    """
    try:
        check_output_path(path, "--audit-log")
    except UsageError as err:
        raise ValueError(str(err)) from None
    clock = deterministic_clock() if engine is EngineMode.INLINE else None
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        check_appendable(path)
        return AuditLog(path, protection=protection.value, fsync=fsync, clock=clock)
    except (AuditError, OSError) as err:
        raise ValueError(f"cannot use audit log {path}: {err}") from None
