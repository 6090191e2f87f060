"""``make bench``'s auditing section: query, summary, verify, exports and serve's first page over a campaign's log.

The log is written once by a verifier-mode fuzz campaign on the virtual
clock (the same 210,519 records every run, ~125 MB of JSON Lines), then
each command is run end to end as a user runs it (a fresh process: start,
load, answer), so the figure includes DuckDB's load of the log, which is
most of a query's time.  200k records rather than the million of
docs/auditing.md keep ``make bench`` short; the rate per record is what
compares.  ``python -m bench.audit_query_bench`` prints the section alone.
Issue 15 section 4 asks for records/s of summary, verify, export and the
first page of ``audit serve`` (records / seconds from starting the server
until its first page answers); ``python -m bench.audit_scale`` measures the
same commands on 10,000,000 records, with their peak memory.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.audit_scale import serve_first_page

#: ~210,000 records (239 per iteration at batch 255 with these classes).
ITERATIONS = 880
CAMPAIGN = [
    "fuzz", "--protection", "verifier", "--iterations", str(ITERATIONS), "--batch", "255", "--seed", "3",
    "--classes", "kernel-tx,other-tenant,straddle,wrap,bad-length", "--audit-clock", "virtual",
    "--audit-max-bytes", "0",
]  # fmt: skip
QUERY = "SELECT reason, tenant_name, count(*) AS n, max(seq) AS last FROM records GROUP BY 1, 2 ORDER BY n DESC"


def _run(argv: list[str]) -> float:
    """Seconds ``nic-sandbox ARGV`` takes, end to end (it must succeed)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sandbox", *argv], check=True, stdout=subprocess.DEVNULL, timeout=1800)
    return time.perf_counter() - start


def section(out: Console, seconds: float) -> None:
    """Time ``audit query`` and ``audit summary`` on a ~200k-record log.

    Each is repeated while its runs total less than ``2 * seconds`` (once at least); the median is shown.
    """
    try:
        import duckdb  # noqa: F401  (the audit extra)
    except ImportError:
        out.print("audit query not measured: DuckDB is not installed (pip install 'nic-sandbox[audit]')")
        return
    with tempfile.TemporaryDirectory(prefix="bench-audit-query-") as folder:
        _run([*CAMPAIGN, "--out", folder])
        log = Path(folder) / "audit.jsonl"
        records = sum(p.read_bytes().count(b"\n") for p in Path(folder).glob("audit.jsonl*"))
        table = Table(title=f"auditing a campaign's log: {records:,} records, end to end (a fresh process each)")
        for col in ("command", "runs", "median s", "records/s"):
            table.add_column(col, justify="left" if col == "command" else "right")
        out_file = str(Path(folder) / "export.out")
        commands: list[tuple[str, Callable[[], float]]] = [
            (name, functools.partial(_run, argv))
            for name, argv in (
                ("audit query (load + GROUP BY)", ["audit", "query", str(log), QUERY, "--format", "csv"]),
                ("audit summary", ["audit", "summary", str(log), "--json"]),
                ("audit verify", ["audit", "verify", str(log)]),
                ("audit export --parquet", ["audit", "export", str(log), "--parquet", out_file]),
                ("audit export --format ocsf", ["audit", "export", str(log), "--format", "ocsf", "-o", out_file]),
            )
        ]
        commands.append(("audit serve: first page", lambda: serve_first_page(log)))
        for name, measure in commands:
            times = [measure()]
            while sum(times) < 2 * seconds:
                times.append(measure())
            median = statistics.median(times)
            table.add_row(name, str(len(times)), f"{median:.2f}", f"{records / median:,.0f}")
        out.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_query_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="half the repeating budget per command")
    args = parser.parse_args()
    section(Console(width=120), args.seconds)


if __name__ == "__main__":
    main()
