"""``nic-sandbox audit query`` and ``audit export``: SQL over the trail with DuckDB, and exports that carry the chain.

``query LOG... SQL`` loads the records (rotated siblings included) into the
table ``records`` and runs the user's SQL on a read-only database that can
reach no file and no network (auditor/session.py).  ``export`` verifies the
chain first and refuses a log that does not verify (exit 1) unless
``--force``; the export names the head and anchor it was made from.  The
engine is in auditor/; this module is the command line only.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from auditor.deps import MissingLibrary
from sandbox.argtypes import bounded_number, check_output_path
from sandbox.errors import UsageError
from verifier.audit.log import AuditError
from verifier.audit.read import Anchor, log_files

P = TypeVar("P", bound=argparse.ArgumentParser)
Command = Callable[[argparse.Namespace, Console], int]
EXIT_TAMPERED = 1
#: Rows a table shows at most (CSV and JSON Lines stream every row).
DEFAULT_TABLE_ROWS = 1000
MAX_ROWS = 10**12
_MEMORY = r"^\d{1,6}(\.\d{1,3})?\s*(KB|MB|GB|KiB|MiB|GiB)$"

QUERY_EXAMPLES = """The records are the table 'records', one row per record, in log order.  Its columns:
  seq UBIGINT, wall TIMESTAMP_NS (UTC), mono_ns UBIGINT, tenant BIGINT, tenant_name, nic, queue UINTEGER,
  kind (tx rx register iommu pin), ring_index UINTEGER, reason, protection, desc_hex,
  desc_addr UBIGINT, desc_length, desc_cmd, desc_status, desc_cso, desc_css, desc_special, desc_csum, desc_errors,
  rule, first_bad_byte UBIGINT, frame UBIGINT, owner (kernel, tenantN, free, own, own-unpinned),
  checked_bytes, new_tail, register, reg_offset UBIGINT, reg_value UBIGINT, iova UBIGINT, access, handle,
  vaddr UBIGINT, detail (the whole object, JSON text), prev, hash.
The SQL is read-only: the database reaches no file and no network (COPY, ATTACH, read_csv, INSTALL refused).

examples:
  top reasons per tenant per minute:
    nic-sandbox audit query out/audit.jsonl "SELECT date_trunc('minute', wall) AS minute, tenant_name, reason,
      count(*) AS n FROM records GROUP BY 1, 2, 3 QUALIFY row_number() OVER (PARTITION BY minute, tenant_name
      ORDER BY n DESC) <= 3 ORDER BY minute, tenant_name, n DESC"
  every refusal that named kernel memory:
    nic-sandbox audit query out/audit.jsonl "SELECT seq, wall, tenant_name, reason, printf('%#x', first_bad_byte)
      AS byte, frame FROM records WHERE owner = 'kernel' ORDER BY seq" --format csv > kernel.csv
  the first refusal after seq 1000:
    nic-sandbox audit query out/audit.jsonl "SELECT * FROM records WHERE seq > 1000 ORDER BY seq LIMIT 1" --format jsonl
  addresses: nic-sandbox audit query LOG "SELECT printf('%#x', desc_addr) AS addr, count(*) FROM records GROUP BY 1"
"""

EXPORT_EXAMPLES = """The chain is verified first (as 'audit verify'): a log that does not verify is not exported
(exit 1, each problem named, nothing written) unless --force, and every export names the head (seq, hash)
and the anchor it was made from: Parquet key-value metadata 'nic_sandbox.audit.provenance'; OCSF:
metadata.correlation_uid (the head hash) and unmapped.export of every event.

examples:
  nic-sandbox audit export out/audit.jsonl --parquet audit.parquet
  nic-sandbox audit export out/audit.jsonl --format ocsf -o audit.ocsf.jsonl --anchor /safe/audit.anchor
  nic-sandbox audit export out/audit.jsonl --format ocsf | your-siem-ingest      (stdout without -o)
  duckdb -c "SELECT reason, count(*) FROM 'audit.parquet' GROUP BY 1"
"""


def _memory(text: str) -> str:
    import re

    if re.match(_MEMORY, text.strip()) is None:
        raise argparse.ArgumentTypeError(f"--memory wants a size such as 256MB or 1GB, got {text!r}")
    return text.strip()


def add_parser(actions: argparse._SubParsersAction[P]) -> None:
    """Add ``query`` and ``export`` to the actions of ``nic-sandbox audit``."""
    raw = argparse.RawDescriptionHelpFormatter
    query = actions.add_parser(
        "query",
        help="SQL over the records with DuckDB (table 'records'); needs the audit extra",
        description=(
            "Run SQL over one or more logs (each with its rotated siblings) with DuckDB.  The records are "
            "the table 'records' with typed columns; output as a table, CSV or JSON Lines."
        ),
        epilog=QUERY_EXAMPLES,
        formatter_class=raw,
    )
    query.add_argument("logs", nargs="+", metavar="LOG", help="audit log file(s); the last argument is the SQL")
    query.add_argument("--format", choices=("table", "csv", "jsonl"), default="table", help="output (default: a table)")
    query.add_argument(
        "--max-rows",
        type=bounded_number(int, "--max-rows", 1, MAX_ROWS),
        metavar="N",
        help=f"rows a table shows (default {DEFAULT_TABLE_ROWS}; csv and jsonl print every row)",
    )
    _add_engine_flags(query)
    query.set_defaults(func=_guarded(cmd_query))

    export = actions.add_parser(
        "export",
        help="Parquet or OCSF JSON Lines of a verified log; needs the audit extra",
        description=(
            "Export the records as Parquet (columnar, typed, zstd) or as OCSF 1.2.0 Detection Findings, "
            "one JSON object per line, ready for a SIEM."
        ),
        epilog=EXPORT_EXAMPLES,
        formatter_class=raw,
    )
    export.add_argument("logs", nargs="+", metavar="LOG", help="audit log file(s)")
    export.add_argument("--parquet", metavar="OUT", help="write Parquet to OUT (same as --format parquet -o OUT)")
    export.add_argument("--format", choices=("parquet", "ocsf"), help="what to write")
    export.add_argument("-o", "--output", metavar="OUT", help="where (OCSF: standard output when not given)")
    export.add_argument("--force", action="store_true", help="export a log that does not verify (marked unverified)")
    export.add_argument("--anchor", metavar="FILE", help="an anchor of 'audit seal': the head must still be there")
    export.add_argument("--key-file", metavar="FILE", help="HMAC key of the anchor (as 'audit verify')")
    _add_engine_flags(export)
    export.set_defaults(func=_guarded(cmd_export))


def _add_engine_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--memory", type=_memory, default="256MB", metavar="SIZE", help="DuckDB memory_limit (default 256MB)"
    )


def _guarded(command: Command) -> Command:
    """Audit, library and file errors as one line and exit 2 (``UsageError``)."""

    def run(args: argparse.Namespace, out: Console) -> int:
        try:
            return command(args, out)
        except (AuditError, MissingLibrary) as e:
            memory = " (--memory SIZE gives it more)" if "memory limit" in str(e) else ""
            raise UsageError(f"{e}{memory}") from None
        except FileNotFoundError as e:
            raise UsageError(str(e) if e.filename is None else f"no such audit log: {e.filename}") from None
        except BrokenPipeError:
            raise
        except OSError as e:
            raise UsageError(f"{e.filename or 'audit'}: {e.strerror or e}") from None

    return run


def progress_line() -> Callable[[str], None]:
    """Progress lines on stderr when it is a terminal (a script's stderr keeps only errors)."""
    if not sys.stderr.isatty():
        return lambda _: None
    start = time.monotonic()

    def say(text: str) -> None:
        sys.stderr.write(f"\r\x1b[K[{time.monotonic() - start:6.1f} s] {text}")
        sys.stderr.flush()

    return say


def end_progress_line() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


def cmd_query(args: argparse.Namespace, out: Console) -> int:
    from auditor import deps
    from auditor.output import write_csv, write_jsonl
    from auditor.session import Records

    deps.pyarrow()  # the rows come out of DuckDB as Arrow batches: say so before a long load
    if len(args.logs) < 2:
        raise UsageError('audit query: give LOG... and then the SQL, e.g. "SELECT count(*) FROM records"')
    *names, sql = args.logs
    if not sql.strip():
        raise UsageError("audit query: the SQL is empty")
    files = log_files(names)
    with Records(files, memory_limit=args.memory, progress=progress_line()) as records:
        end_progress_line()
        try:
            relation: Any = records.con.sql(sql)
        except records.duckdb.Error as e:
            raise UsageError(f"audit query: {_one_line(e)}") from None
        except KeyboardInterrupt:
            return 130
        if relation is None:
            return 0
        try:
            if args.format == "csv":
                write_csv(relation, sys.stdout)
            elif args.format == "jsonl":
                write_jsonl(relation, sys.stdout)
            else:
                _table(relation, args.max_rows or DEFAULT_TABLE_ROWS, out)
        except records.duckdb.Error as e:
            raise UsageError(f"audit query: {_one_line(e)}") from None
        except KeyboardInterrupt:  # what was printed stays printed
            sys.stdout.flush()
            return 130
    return 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:500]


def _table(relation: Any, limit: int, out: Console) -> None:
    from auditor.output import as_text_times, rows

    relation = as_text_times(relation)
    table = Table()
    for name, kind in zip(relation.columns, relation.types, strict=True):
        numeric = any(word in str(kind) for word in ("INT", "DOUBLE", "FLOAT", "DECIMAL"))
        table.add_column(name, justify="right" if numeric else "left", overflow="fold")
    shown = 0
    more = False
    for row in rows(relation.limit(limit + 1)):
        if shown == limit:
            more = True
            break
        table.add_row(*("NULL" if v is None else str(v) for v in row))
        shown += 1
    out.print(table)
    tail = f" (the first {limit:,}; --max-rows N or --format csv for more)" if more else ""
    out.print(f"{shown:,} row{'s' if shown != 1 else ''}{tail}", highlight=False)


def cmd_export(args: argparse.Namespace, out: Console) -> int:
    from auditor import export as exporting
    from auditor.provenance import chain_verdict
    from auditor.session import Records
    from sandbox.commands.audit import anchor_key  # late: audit.py imports this module to register its actions
    from verifier.audit.seal import read_anchor

    kind, target = _export_target(args)
    if target is not None:
        check_output_path(str(target), "--parquet" if args.parquet else "-o")
    files = log_files(args.logs)
    anchor: Anchor | None = None
    anchor_problems: list[str] = []
    if args.anchor is not None:
        anchor, anchor_problems, _ = read_anchor(Path(args.anchor), anchor_key(args.key_file))
    progress = progress_line()
    progress(f"verifying the chain of {len(files)} file(s)")
    provenance = chain_verdict(files, anchor, anchor_problems)
    end_progress_line()
    if not provenance.verified and not args.force:
        for problem in provenance.problems:
            print(f"TAMPERED: {problem}")
        if provenance.more_problems:
            print(f"TAMPERED: ... and {provenance.more_problems:,} more problems")
        print(f"not exported: {target or 'the OCSF events'} not written (--force exports it, marked unverified)")
        return EXIT_TAMPERED
    try:
        source = (
            exporting.Direct(files, memory_limit=args.memory)
            if provenance.verified  # every record checked by the walk: read straight from the files
            else Records(files, memory_limit=args.memory, progress=progress, lock=False)
        )
        with source as records:
            progress(f"writing {kind}")
            try:
                if kind == "parquet":
                    assert target is not None
                    written = exporting.parquet(records, provenance, target)
                else:
                    written = exporting.ocsf_jsonl(records, provenance, target)
            except records.duckdb.Error as e:  # out of memory, disk full: one line, nothing under the name
                what = _one_line(e)[:200]
                if "Out of Memory" in what:
                    what = f"DuckDB needs more than its memory limit {args.memory} (--memory SIZE gives it more)"
                raise UsageError(f"audit export: {target or 'the OCSF events'} not written: {what}") from None
    except KeyboardInterrupt:
        end_progress_line()
        print(f"interrupted: {target or 'the export'} not written", file=sys.stderr)
        return 130
    end_progress_line()
    if target is not None:
        state = "verified" if provenance.verified else "NOT verified (--force)"
        print(
            f"exported {written:,} records to {target} ({kind}); chain {state}, head seq {provenance.head_seq} "
            f"{provenance.head}" + (f", anchor seq {anchor.seq}" if anchor is not None else "")
        )
    return 0


def _export_target(args: argparse.Namespace) -> tuple[str, Path | None]:
    if args.parquet is not None:
        if args.format not in (None, "parquet") or args.output is not None:
            raise UsageError("audit export: --parquet OUT is --format parquet -o OUT; give one or the other")
        return "parquet", Path(args.parquet)
    if args.format is None:
        raise UsageError("audit export: say what to write: --parquet OUT or --format ocsf [-o OUT]")
    if args.format == "parquet" and args.output is None:
        raise UsageError("audit export: Parquet needs a file: --parquet OUT")
    return args.format, None if args.output in (None, "-") else Path(args.output)
