"""``nic-sandbox audit``: summarise, show, verify, seal, plot and follow audit logs.

Each LOG argument is the active log file; its rotated siblings
(``LOG.1``, ``LOG.2``, ...) are read with it, as ``journalctl`` reads every
journal file of a machine.  Bad input ends as everywhere in ``nic-sandbox``:
one line on stderr and exit code 2.  ``verify`` exits 1 when the chain is
broken (tampering or truncation), so scripts can tell "not a log" from
"a log that was altered".  ``seal`` writes the head of an intact log to an
anchor file kept elsewhere (HMAC-SHA256 under a key from ``--key-file`` or
``NIC_SANDBOX_AUDIT_KEY``); ``verify --anchor`` then also catches a cut at a
line boundary and a re-hashed chain (verifier/audit/seal.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from rich.console import Console
from rich.table import Table

from sandbox.argtypes import bounded_number, check_output_path
from sandbox.commands import audit_bench, audit_query, audit_serve
from sandbox.errors import UsageError
from sandbox.parser import Parser
from verifier.audit.log import (
    AuditError,
    clock_of,
    encode,
    format_wall,
    is_checkpoint,
    parse_line,
    record_schema,
    rotated_siblings,
)
from verifier.audit.read import (
    Anchor,
    VerifyResult,
    head_hash,
    log_files,
    order_files,
    parse_wall,
    read_records,
    schema_problem,
    sniff,
    verify,
)
from verifier.audit.seal import read_anchor, seal
from verifier.audit.sets import log_sets

P = TypeVar("P", bound=argparse.ArgumentParser)
Command = Callable[[argparse.Namespace, Console], int]
EXIT_TAMPERED = 1
#: Where ``seal`` and ``verify`` find the anchor key when ``--key-file`` is not given (never written anywhere).
KEY_ENV = "NIC_SANDBOX_AUDIT_KEY"
#: How often ``follow`` looks for new records, in seconds (tail -f polls every second; this is snappier).
FOLLOW_POLL = 0.05
#: How often a long read (summary, verify) redraws its progress line on a terminal, in seconds.
PROGRESS_S = 0.5
#: How far back ``follow`` looks for the start of a record being written when it starts at the end.
FOLLOW_WINDOW = 1 << 20
_AGO = re.compile(r"^(\d{1,10}(?:\.\d{1,9})?)([smhd]?)$")  # ten digits of seconds: three centuries
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


# -- argument types -------------------------------------------------------------------
def since_ns(text: str, now_ns: int | None = None) -> int:
    """``--since``: ISO-8601 (UTC if no zone given) or an age such as ``90``, ``30s``, ``10m``, ``2h``, ``1d``."""
    now = time.time_ns() if now_ns is None else now_ns
    m = _AGO.match(text.strip())
    if m is not None:
        return now - int(float(m.group(1)) * _UNIT_SECONDS[m.group(2)] * 1_000_000_000)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since wants an ISO-8601 time (2024-05-01T12:00:00Z) or an age (30s, 10m, 2h, 1d), got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


#: Flag bounds: a bar is at least a microsecond wide (records carry nanoseconds, a narrower bar shows nothing
#: more) and a plot has at most ``MAX_BUCKETS`` bars; a follow waits a millisecond at least (its poll is coarser)
#: and a year at most.
MIN_BUCKET_S, MAX_BUCKET_S = 1e-6, 10 * 365 * 86400.0
MAX_BUCKETS = 100_000
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 1e-3, 365 * 86400.0
MAX_COUNT = 10**12


# -- the parser -------------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction[P]) -> None:
    """Add ``audit`` and its actions to the ``nic-sandbox`` sub-command set ``sub``."""
    raw = argparse.RawDescriptionHelpFormatter
    audit = sub.add_parser(
        "audit",
        help="summarise, show, verify, plot or follow the audit log of refused descriptors",
        description=(
            "The kernel writes one hash-chained JSON line per refused descriptor, refused register write, "
            "IOMMU fault or deferred unpin.  These actions read such logs; each LOG is the active file and "
            "its rotated siblings LOG.1, LOG.2, ... are read with it."
        ),
        epilog=(
            "examples:\n"
            "  nic-sandbox audit summary out/audit.jsonl\n"
            "  nic-sandbox audit show out/audit.jsonl --reason ADDR_NOT_PINNED --tenant mallory --since 10m\n"
            "  nic-sandbox audit verify out/audit.jsonl       exit 0 intact, 1 tampered, 2 not a log\n"
            "  nic-sandbox audit seal out/audit.jsonl -o /safe/audit.anchor --key-file /safe/key\n"
            "  nic-sandbox audit verify out/audit.jsonl --anchor /safe/audit.anchor --key-file /safe/key\n"
            "  nic-sandbox audit plot out/audit.jsonl -o rejections.png\n"
            "  nic-sandbox audit follow out/audit.jsonl       like tail -f; Ctrl-C stops\n"
            "  nic-sandbox audit bench --png durability.png   fsync group commit: latency model vs measurement"
        ),
        formatter_class=raw,
    )
    actions = audit.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=Parser)
    actions.required = True

    summary = actions.add_parser(
        "summary",
        help="counts by reason, tenant and queue; time span and rate",
        description=(
            "Count records by reason x tenant x queue and by protection mode, with the time span the log "
            "covers, records per second and the hash of the newest record (keep it elsewhere to anchor the chain)."
        ),
        epilog="example: nic-sandbox audit summary out/audit.jsonl other/audit.jsonl",
        formatter_class=raw,
    )
    summary.add_argument(
        "logs", nargs="+", metavar="LOG", help="audit log file(s), or a directory of them (per-worker logs: a set)"
    )
    summary.add_argument("--json", action="store_true", help="print the summary as JSON")
    summary.set_defaults(func=_guarded(cmd_summary))

    show = actions.add_parser(
        "show",
        help="list records, decoded, with filters",
        description="List the records of a log, decoded, as a table or as JSON Lines (the stored bytes).",
        epilog=(
            "examples:\n"
            "  nic-sandbox audit show out/audit.jsonl --reason ADDR_NOT_PINNED\n"
            "  nic-sandbox audit show out/audit.jsonl --tenant 2 --since 2024-05-01T12:00:00Z --json | jq .detail"
        ),
        formatter_class=raw,
    )
    show.add_argument("log", metavar="LOG", help="audit log file")
    show.add_argument("--reason", action="append", metavar="R", help="only this reason code (repeatable)")
    show.add_argument("--tenant", metavar="T", help="only this tenant, by id or by name")
    show.add_argument(
        "--since", type=since_ns, metavar="TIME", help="only records at or after TIME: ISO-8601, or an age (30s, 10m)"
    )
    show.add_argument(
        "--limit", type=bounded_number(int, "--limit", 1, MAX_COUNT), metavar="N", help="print at most N records"
    )
    show.add_argument("--json", action="store_true", help="print matching records as JSON Lines, byte for byte")
    show.set_defaults(func=_guarded(cmd_show))

    check = actions.add_parser(
        "verify",
        help="check the hash chain: exit 0 intact, 1 tampered or cut",
        description=(
            "Walk the SHA-256 chain over all files of the log.  Prints 'OK: N records, chain intact' and exits 0, "
            "or one 'TAMPERED: <problem> (<file>:<line>) at seq N' line per problem -- every problem, not only "
            "the first: altered, missing, out of order, repeated, torn -- and exits 1.  With --anchor, the log "
            "must still hold the sealed head: a cut at a line boundary or a re-hashed chain is found too.  A file "
            "that is not an audit log at all is an error (exit 2)."
        ),
        epilog=(
            "examples:\n"
            "  nic-sandbox audit verify out/audit.jsonl || echo 'do not trust this log'\n"
            "  nic-sandbox audit verify out/audit.jsonl --anchor /safe/audit.anchor --key-file /safe/key --json"
        ),
        formatter_class=raw,
    )
    check.add_argument(
        "logs",
        nargs="+",
        metavar="LOG",
        help="audit log file(s), in any order, or a directory; per-worker logs (PATH.jobN) are verified as a set",
    )
    check.add_argument(
        "--anchor", metavar="FILE", help="an anchor written by 'audit seal': the head must still be there"
    )
    _add_key_flag(check)
    check.add_argument("--json", action="store_true", help="print the verdict and every problem as JSON")
    check.set_defaults(func=_guarded(cmd_verify))

    sealing = actions.add_parser(
        "seal",
        help="write the head of an intact log to an anchor file kept elsewhere",
        description=(
            "Verify the log and write its head (seq, hash, records, bytes) to FILE, with an HMAC-SHA256 under "
            f"the key of --key-file or ${KEY_ENV} when one is given.  Keep FILE where the log's writer cannot "
            "write; 'audit verify --anchor FILE' then finds a log cut at a line boundary or re-hashed.  Exit 1 "
            "(nothing written) when the log does not verify."
        ),
        epilog="example: nic-sandbox audit seal out/audit.jsonl -o /safe/audit.anchor --key-file /safe/key",
        formatter_class=raw,
    )
    sealing.add_argument("logs", nargs="+", metavar="LOG", help="audit log file(s), in any order")
    sealing.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the anchor")
    _add_key_flag(sealing)
    sealing.set_defaults(func=_guarded(cmd_seal))

    plot = actions.add_parser(
        "plot",
        help="PNG of rejections over time by reason (needs matplotlib)",
        description="Draw rejections over time, stacked by reason, into a PNG (matplotlib, Agg backend).",
        epilog="example: nic-sandbox audit plot out/audit.jsonl -o rejections.png --bucket 0.5",
        formatter_class=raw,
    )
    plot.add_argument("log", metavar="LOG", help="audit log file")
    plot.add_argument("-o", "--output", required=True, metavar="FILE.png", help="where to write the PNG")
    plot.add_argument(
        "--bucket",
        type=bounded_number(float, "--bucket", MIN_BUCKET_S, MAX_BUCKET_S),
        metavar="S",
        help="bar width in seconds (default: automatic)",
    )
    plot.set_defaults(func=_guarded(cmd_plot))

    follow = actions.add_parser(
        "follow",
        help="print new records as they are written, like tail -f",
        description=(
            "Print each new record of the active log file, decoded, one line per record, following rotations. "
            "Ctrl-C stops (exit 0)."
        ),
        epilog="example: nic-sandbox audit follow out/audit.jsonl --from-start --max-records 100 --timeout 30",
        formatter_class=raw,
    )
    follow.add_argument("log", metavar="LOG", help="active audit log file")
    follow.add_argument("--from-start", action="store_true", help="print the records already in the file first")
    follow.add_argument(
        "--max-records",
        type=bounded_number(int, "--max-records", 1, MAX_COUNT),
        metavar="N",
        help="stop after N records",
    )
    follow.add_argument(
        "--timeout",
        type=bounded_number(float, "--timeout", MIN_TIMEOUT_S, MAX_TIMEOUT_S),
        metavar="S",
        help="stop after S seconds",
    )
    follow.set_defaults(func=_guarded(cmd_follow))
    audit_bench.add_parser(actions)
    audit_query.add_parser(actions)
    audit_serve.add_parser(actions)


def _add_key_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key-file",
        metavar="FILE",
        help=f"HMAC key of the anchor (default: ${KEY_ENV}, if set); never written to the log or the anchor",
    )


def anchor_key(key_file: str | None) -> bytes | None:
    """The anchor key: the bytes of ``--key-file`` (one trailing newline dropped), else ``$NIC_SANDBOX_AUDIT_KEY``."""
    if key_file is not None:
        try:
            key = Path(key_file).read_bytes()
        except OSError as e:
            raise UsageError(f"--key-file {key_file}: {e.strerror or e}") from None
        key = key[:-1] if key.endswith(b"\n") else key
        if not key:
            raise UsageError(f"--key-file {key_file}: the key file is empty")
        return key
    env = os.environ.get(KEY_ENV)
    return env.encode() if env else None


def _guarded(command: Command) -> Command:
    """Turn audit and file errors into ``UsageError`` (one line, exit 2), as ``cli.main`` prints them."""

    def run(args: argparse.Namespace, out: Console) -> int:
        try:
            return command(args, out)
        except AuditError as e:
            raise UsageError(str(e)) from None
        except BrokenPipeError:
            raise
        except FileNotFoundError as e:
            raise UsageError(f"no such audit log: {e.filename}") from None
        except OSError as e:
            raise UsageError(f"{e.filename or 'audit'}: {e.strerror or e}") from None

    return run


def expand_logs(names: list[str]) -> list[Path]:
    """Each named log and its rotated siblings (``verifier.audit.read.log_files``); a name matching nothing: usage."""
    try:
        return log_files(names)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None


def expand_sets(names: list[str]) -> list[list[Path]]:
    """The named logs as separate chains (per-worker logs, verifier/audit/sets.py) or as one chain's files."""
    try:
        return log_sets(names)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None


# -- decoding for people ---------------------------------------------------------------
def queue_label(r: dict[str, Any]) -> str:
    """``nic0/tx0``, ``nic1/rx3``, ``nic0`` or ``-``."""
    nic = r["nic"] or "-"
    if r["queue"] is None:
        return nic
    kind = r["kind"] if r["kind"] in ("tx", "rx") else "q"
    return f"{nic}/{kind}{r['queue']}"


def _value(key: str, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and ("addr" in key or key.endswith("byte")):
        return hex(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def desc_text(r: dict[str, Any]) -> str:
    desc = r["desc"]
    if isinstance(desc, dict):
        return " ".join(f"{k}={_value(k, v)}" for k, v in desc.items() if k in ("addr", "length", "len", "cmd"))
    return r["desc_hex"] or "-"


def detail_text(r: dict[str, Any]) -> str:
    return " ".join(f"{k}={_value(k, v)}" for k, v in r["detail"].items()) or "-"


def tenant_text(r: dict[str, Any]) -> str:
    return f"{r['tenant_name']}({r['tenant']})"


def where_text(r: dict[str, Any]) -> str:
    """Where the event happened: ``nic0/tx0[17]`` for a descriptor, ``nic0 register``, ``nic0/q1 iommu``."""
    if r["kind"] in ("tx", "rx"):
        index = "" if r["ring_index"] is None else f"[{r['ring_index']}]"
        return f"{queue_label(r)}{index}"
    return f"{queue_label(r)} {r['kind']}"


def one_line(r: dict[str, Any]) -> str:
    """One record on one line (``follow``)."""
    return (
        f"#{r['seq']} {r['wall']} {tenant_text(r)} {where_text(r)} {r['reason']} "
        f"desc: {desc_text(r)} detail: {detail_text(r)} ({r['protection']})"
    )


# -- actions ---------------------------------------------------------------------------------
def _ticker(what: str) -> Callable[[int], None]:
    """Progress of a long read on stderr (a terminal only, as ``audit query``): ``what: N records``, twice a second."""
    say = audit_query.progress_line()
    last = time.monotonic()

    def tick(records: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_S:
            last = now
            say(f"{what}: {records:,} records")

    return tick


def cmd_summary(args: argparse.Namespace, out: Console) -> int:
    files = [p for group in expand_sets(args.logs) for p in group]  # per-worker logs and directories too
    tick = _ticker("reading")
    by_key: Counter[tuple[str, str, str]] = Counter()
    by_reason: Counter[str] = Counter()
    modes: dict[str, list[int]] = {}  # protection -> [records, first wall ns, last wall ns]
    clocks: Counter[str] = Counter()
    first: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    for read, r in enumerate(read_records(files), 1):
        first = first or r
        last = r
        if not read & 0xFFFF:
            tick(read)
        by_key[(r["reason"], tenant_text(r), queue_label(r))] += 1
        by_reason[r["reason"]] += 1
        clocks[clock_of(r["wall"], r["mono_ns"])] += 1
        wall = parse_wall(r["wall"])
        stats = modes.setdefault(r["protection"], [0, wall, wall])
        stats[0] += 1
        stats[1] = min(stats[1], wall)
        stats[2] = max(stats[2], wall)
    audit_query.end_progress_line()
    total = sum(by_reason.values())
    walls = [w for _, lo, hi in modes.values() for w in (lo, hi)]
    span = (max(walls) - min(walls)) / 1e9 if walls else 0.0  # several logs may interleave in time
    if args.json:
        summary = {
            "files": [str(p) for p in files],
            "records": total,
            "first_seq": first["seq"] if first else None,
            "last_seq": last["seq"] if last else None,
            "first_wall": format_wall(min(walls)) if walls else None,
            "last_wall": format_wall(max(walls)) if walls else None,
            "seconds": span,
            "records_per_second": total / span if span > 0 else None,
            "head": (last.get("hash") or head_hash(files)) if last else None,
            "clock": _clock_name(clocks),
            "by_reason": dict(by_reason.most_common()),
            "by_protection": {m: v[0] for m, v in modes.items()},
            "by_reason_tenant_queue": [
                {"reason": reason, "tenant": tenant, "queue": queue, "count": n}
                for (reason, tenant, queue), n in by_key.most_common()
            ],
        }
        print(json.dumps(summary, indent=2))
        return 0
    names = ", ".join(str(p) for p in files)
    out.print(f"audit log: {names}", markup=False, highlight=False)
    if first is None or last is None:
        out.print("no records")
        return 0
    out.print(f"records: {total:,} (seq {first['seq']}..{last['seq']})", highlight=False)
    rate = f"{total / span:,.1f} records/s" if span > 0 else "- records/s"
    clock = _clock_name(clocks)
    if clock != "wall":
        rate += " (virtual clock: not real time)"
    out.print(
        f"time span: {format_wall(min(walls))} .. {format_wall(max(walls))} ({span:.6f} s), {rate}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"head hash: {last.get('hash') or head_hash(files)}", highlight=False)
    out.print(f"clock: {_CLOCK_TEXT[clock]}", highlight=False, soft_wrap=True)

    table = Table(title="rejections by reason, tenant and queue")
    for col in ("reason", "tenant", "queue", "records", "share"):
        table.add_column(col, justify="right" if col in ("records", "share") else "left", no_wrap=True)
    for (reason, tenant, queue), n in sorted(by_key.items(), key=lambda kv: (-by_reason[kv[0][0]], kv[0][0], -kv[1])):
        table.add_row(reason, tenant, queue, f"{n:,}", f"{100 * n / total:.1f}%")
    out.print(table)

    modes_table = Table(title="by protection mode")
    for col in ("protection", "records", "seconds", "records/s"):
        modes_table.add_column(col, justify="left" if col == "protection" else "right", no_wrap=True)
    for mode, (n, lo, hi) in sorted(modes.items()):
        seconds = (hi - lo) / 1e9
        modes_table.add_row(mode, f"{n:,}", f"{seconds:.6f}", f"{n / seconds:,.1f}" if seconds > 0 else "-")
    out.print(modes_table)
    return 0


_CLOCK_TEXT = {
    "wall": "wall (real UTC time)",
    "virtual": "virtual (deterministic: 2023-11-14T22:13:20Z + 1 µs per record, for reproducible runs)",
    "mixed": "mixed (some runs on the real clock, some on the virtual one)",
}


def _clock_name(clocks: Counter[str]) -> str:
    """``wall``, ``virtual`` or ``mixed``: which clock stamped the records (``clock_of``); ``wall`` when none."""
    if len(clocks) > 1:
        return "mixed"
    return next(iter(clocks), "wall")


def _matches(args: argparse.Namespace) -> Callable[[dict[str, Any]], bool]:
    reasons = {r.upper() for r in args.reason} if args.reason else None
    tenant: str | None = args.tenant
    if tenant is not None and len(tenant) > 256:
        raise UsageError(f"--tenant: a tenant id or name, not {len(tenant):,} characters")
    tenant_id = int(tenant) if tenant is not None and tenant.lstrip("-").isdigit() else None

    def keep(r: dict[str, Any]) -> bool:
        if reasons is not None and r["reason"] not in reasons:
            return False
        if tenant is not None and r["tenant"] != tenant_id and r["tenant_name"] != tenant:
            return False
        return args.since is None or parse_wall(r["wall"]) >= args.since

    return keep


def cmd_show(args: argparse.Namespace, out: Console) -> int:
    keep = _matches(args)
    chosen: Iterator[dict[str, Any]] = (r for r in read_records(expand_logs([args.log])) if keep(r))
    if args.json:
        for n, r in enumerate(chosen):
            if args.limit is not None and n >= args.limit:
                break
            sys.stdout.write(encode(r).decode("ascii") + "\n")
        return 0
    rows: list[dict[str, Any]] = []
    for r in chosen:
        if args.limit is not None and len(rows) >= args.limit:
            break
        rows.append(r)
    one_day = len({r["wall"][:10] for r in rows}) == 1
    title = f"audit records: {args.log}" + (f" ({rows[0]['wall'][:10]}, UTC)" if one_day else "")
    table = Table(title=title)
    for col in ("seq", "time" if one_day else "time (UTC)", "tenant", "where", "reason", "descriptor", "detail"):
        folds = col in ("descriptor", "detail")
        table.add_column(col, justify="right" if col == "seq" else "left", overflow="fold", no_wrap=not folds)
    for r in rows:
        wall = r["wall"][11:-1] if one_day else r["wall"].replace("T", " ").rstrip("Z")
        table.add_row(str(r["seq"]), wall, tenant_text(r), where_text(r), r["reason"], desc_text(r), detail_text(r))
    if rows:
        out.print(table)
    out.print(f"{len(rows)} record{'s' if len(rows) != 1 else ''} shown", highlight=False)
    return 0


def cmd_verify(args: argparse.Namespace, out: Console) -> int:
    key = anchor_key(args.key_file)
    anchor: Anchor | None = None
    anchor_problems: list[str] = []
    notes: list[str] = []
    if args.anchor is not None:
        anchor, anchor_problems, notes = read_anchor(Path(args.anchor), key)
    sets = expand_sets(args.logs)
    if len(sets) > 1:
        if anchor is not None:
            raise UsageError(f"--anchor {args.anchor}: an anchor seals one log, not a set of {len(sets)}")
        return _verify_set(sets, args.json)
    result = verify(sets[0], anchor=anchor, on_lines=_ticker("verifying"))
    audit_query.end_progress_line()
    problems = [(None, text) for text in anchor_problems] + [(p.seq, p.text) for p in result.problems]
    notes += list(result.notes)
    if args.json:
        verdict = {
            "ok": not problems,
            "records": result.lines,
            "first_seq": result.first_seq,
            "head": result.head,
            "files": list(result.files),
            "anchor": None if anchor is None else {"seq": anchor.seq, "hash": anchor.hash},
            "problems": [{"seq": seq, "problem": text} for seq, text in problems],
            "more_problems": result.more_problems,
            "notes": notes,
        }
        print(json.dumps(verdict, indent=2))
        return EXIT_TAMPERED if problems else 0
    for note in notes:
        print(f"note: {note}")
    if not problems:
        start = f" from seq {result.first_seq} (older records pruned by the disk budget)" if result.first_seq else ""
        anchored = f", anchored at seq {anchor.seq}" if anchor is not None else ""
        print(f"OK: {result.records} records{start}, chain intact{anchored}")
        return 0
    for seq, text in problems:
        print(f"TAMPERED: {text}" + (f" at seq {seq}" if seq is not None else ""))
    if result.more_problems:
        print(f"TAMPERED: ... and {result.more_problems:,} more problems")
    return EXIT_TAMPERED


def _verify_set(sets: list[list[Path]], as_json: bool) -> int:
    """Several logs, each its own chain (the workers of a parallel campaign): each verified, one verdict."""
    verdicts = []
    for number, files in enumerate(sets, 1):
        result = verify(files, on_lines=_ticker(f"verifying log {number} of {len(sets)}"))
        audit_query.end_progress_line()
        verdicts.append((str(order_files(files)[-1]), result))
    ok = all(r.ok for _, r in verdicts)
    if as_json:
        print(
            json.dumps(
                {
                    "ok": ok,
                    "records": sum(r.lines for _, r in verdicts),
                    "logs": [
                        {
                            "log": name,
                            "ok": r.ok,
                            "records": r.lines,
                            "head": r.head,
                            "files": list(r.files),
                            "problems": [{"seq": p.seq, "problem": p.text} for p in r.problems],
                            "more_problems": r.more_problems,
                            "notes": list(r.notes),
                        }
                        for name, r in verdicts
                    ],
                },
                indent=2,
            )
        )
        return 0 if ok else EXIT_TAMPERED
    for name, r in verdicts:
        for note in r.notes:
            print(f"note: {name}: {note}")
        if r.ok:
            print(f"OK: {name}: {r.records} records, chain intact")
        for p in r.problems:
            print(f"TAMPERED: {name}: {p.text}" + (f" at seq {p.seq}" if p.seq is not None else ""))
        if r.more_problems:
            print(f"TAMPERED: {name}: ... and {r.more_problems:,} more problems")
    total = sum(r.records for _, r in verdicts)
    if ok:
        print(f"OK: {len(verdicts)} logs, {total} records, every chain intact")
        return 0
    return EXIT_TAMPERED


def cmd_seal(args: argparse.Namespace, out: Console) -> int:
    files = expand_logs(args.logs)
    result: VerifyResult = verify(files)
    if not result.ok:
        for p in result.problems:
            print(f"TAMPERED: {p.text} at seq {p.seq}")
        print(f"not sealed: {args.output} not written")
        return EXIT_TAMPERED
    last = result.first_seq + result.records - 1
    size = sum(p.stat().st_size for p in files)
    data = seal(last, result.head, result.records, size, time.time_ns(), anchor_key(args.key_file))
    target = Path(args.output)
    tmp = target.with_name(target.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as e:
        raise UsageError(f"{target}: cannot write the anchor: {e.strerror or e}") from None
    print(f"sealed seq {last} head {result.head} ({result.records} records, {size:,} bytes) in {target}")
    return 0


def _nice_bucket(span: float) -> float:
    """A 1-2-5 bucket width giving about 60 bars over ``span`` seconds."""
    if span <= 0:
        return 1.0
    target = span / 60
    scale = 10.0 ** int(f"{target:e}".split("e")[1])
    for step in (1, 2, 5, 10):
        if step * scale >= target:
            return step * scale
    return 10 * scale


def cmd_plot(args: argparse.Namespace, out: Console) -> int:
    try:  # matplotlib (the plot extra) and what needs it: only for this action, and optional
        import matplotlib
    except ImportError:
        raise UsageError("plot needs matplotlib, which is not installed (pip install 'nic-sandbox[plot]')") from None
    check_output_path(args.output, "-o")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    records = [(parse_wall(r["wall"]), r["reason"]) for r in read_records(expand_logs([args.log]))]
    if not records:
        raise UsageError(f"{args.log}: no records to plot")
    walls = np.array([w for w, _ in records], dtype=np.int64)
    start = int(walls.min())
    span = (int(walls.max()) - start) / 1e9
    bucket = args.bucket or _nice_bucket(span)
    if span / bucket >= MAX_BUCKETS:
        raise UsageError(f"--bucket {bucket:g}: {span:g} s of records would make more than {MAX_BUCKETS:,} bars")
    bucket_ns = max(1, round(bucket * 1e9))
    which = (walls - start) // bucket_ns  # integer nanoseconds: no float rounding at bucket edges
    nbuckets = int(which.max()) + 1
    totals = Counter(reason for _, reason in records)
    reasons = np.array([reason for _, reason in records])
    left = np.arange(nbuckets) * bucket

    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    bottom = np.zeros(nbuckets)
    for reason, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])):
        counts = np.bincount(which[reasons == reason], minlength=nbuckets)
        ax.bar(left, counts, width=bucket, bottom=bottom, align="edge", label=f"{reason} ({totals[reason]})")
        bottom += counts
    ax.set_xlabel(f"seconds since {format_wall(start)}")
    ax.set_ylabel(f"rejections per {bucket:g} s")
    ax.set_title(f"{Path(args.log).name}: {len(records):,} rejections by reason")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    try:
        fig.savefig(args.output, format="png")
    finally:
        plt.close(fig)
    out.print(f"wrote {args.output}", markup=False, highlight=False)
    return 0


def cmd_follow(args: argparse.Namespace, out: Console) -> int:
    path = Path(args.log)
    if not path.exists():
        raise UsageError(f"no such audit log: {path}")
    sniff(path)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    printed = 0
    buf = b""
    f: BinaryIO = path.open("rb")
    if not args.from_start:
        end = f.seek(0, os.SEEK_END)
        if end:  # start after the last complete line; a line being written right now is printed whole
            f.seek(max(0, end - FOLLOW_WINDOW))
            data = f.read(end - f.tell())
            buf = data[data.rfind(b"\n") + 1 :]

    def emit(chunk: bytes) -> bool:
        """Print the complete records in ``chunk``; True once ``--max-records`` are printed."""
        nonlocal buf, printed
        *lines, buf = (buf + chunk).split(b"\n")
        for line in lines:
            record = parse_line(line + b"\n")
            if record is not None and "checkpoint" in record:  # a v2 batch's checkpoint: the chain, not a record
                if not is_checkpoint(record):
                    raise UsageError(f"{path}: damaged checkpoint while following (not a canonical v2 checkpoint)")
                continue
            problem = "not canonical JSON" if record is None else schema_problem(record, record_schema(record))
            if record is None or problem is not None:
                raise UsageError(f"{path}: damaged record while following ({problem})")
            print(one_line(record), flush=True)
            printed += 1
            if args.max_records is not None and printed >= args.max_records:
                return True
        return False

    try:
        while True:
            chunk = f.read()
            if chunk:
                if emit(chunk):
                    return 0
                continue
            successor = _successor(path, f)
            if successor is not None:
                done = emit(f.read())  # what the writer wrote before it renamed the file
                f.close()
                f, buf = successor, b""
                if done:
                    return 0
                continue
            if deadline is not None and time.monotonic() >= deadline:
                return 0
            time.sleep(FOLLOW_POLL)
    except KeyboardInterrupt:
        return 0
    finally:
        f.close()


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _successor(path: Path, current: BinaryIO) -> BinaryIO | None:
    """The file after ``current`` once the writer has rotated ``current`` away (opened), else None.

    That is the next rotated file if the writer rotated more than once
    between two polls (tail -F would skip it), otherwise the new active file.
    """
    inode = os.fstat(current.fileno()).st_ino
    if _inode(path) in (inode, None):  # not rotated, or rotating right now (new file not there yet)
        return None
    siblings = rotated_siblings(path)
    number = next((n for n, p in siblings if _inode(p) == inode), None)
    if number is None:  # our file was removed, not rotated: go on with the active file
        number = siblings[-1][0] if siblings else 0
    later = [p for n, p in siblings if n > number]
    try:
        if later:
            return later[0].open("rb")
        active = path.open("rb")
    except FileNotFoundError:
        return None
    # A rotation between listing and opening would skip the file it produced: look again.
    later = [p for n, p in rotated_siblings(path) if n > number]
    if later and _inode(later[0]) != os.fstat(active.fileno()).st_ino:
        active.close()
        return later[0].open("rb")
    return active
