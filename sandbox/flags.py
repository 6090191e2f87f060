"""Flags shared by every command that runs the kernel: --protection, --audit-log, --fsync."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from device.clock import EPOCH_NS
from device.e1000 import EngineMode
from verifier.audit.log import FSYNC_POLICIES, AuditError, AuditLog
from verifier.modes.protection import PROTECTION_HELP, Protection

DEFAULT_AUDIT_LOG = "out/audit.jsonl"


def bounded_number(kind: type[int] | type[float], what: str, low: float, high: float) -> Any:
    """An argparse type: a number (integers may be written 0x...) within ``[low, high]``, or a one-line error."""

    def convert(text: str) -> int | float:
        try:
            value = int(text, 0) if kind is int else float(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{what} must be {noun}, got {text!r}") from None
        if not low <= value <= high:
            lo, hi = (f"{low:,}", f"{high:,}") if kind is int else (f"{low:g}", f"{high:g}")
            raise argparse.ArgumentTypeError(f"{what} must be between {lo} and {hi}, got {text}")
        return value

    return convert


def flags_given(args: argparse.Namespace, names: Iterable[str]) -> list[str]:
    """The flags among ``names`` (argparse dests) that the user set, spelled as typed: ``no_pcap`` -> ``--no-pcap``.

    The demos share one parser; each refuses the others' flags with these names in a one-line error.
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


def deterministic_clock() -> Callable[[], tuple[int, int]]:
    """Audit time stamps that depend only on the order of records (inline engine: invariant 7)."""
    ticks = itertools.count()

    def clock() -> tuple[int, int]:
        n = next(ticks) * 1_000
        return EPOCH_NS + n, n

    return clock


def open_audit(path: str, protection: Protection, fsync: str, engine: EngineMode) -> AuditLog:
    """Open (append to) the audit log; the inline engine gets a deterministic clock."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    clock = deterministic_clock() if engine is EngineMode.INLINE else None
    try:
        return AuditLog(path, protection=protection.value, fsync=fsync, clock=clock)
    except (AuditError, OSError) as err:
        raise ValueError(f"cannot use audit log {path}: {err}") from None
