"""The auditor at scale (issue 15 section 4): each tool on one large log, records/s and peak RSS against 500 MB.

``python -m bench.audit_scale --records 10000000 --dir /big/disk`` writes a
log of that many records with the real writer (bench/scale_log.py: ~620
bytes a record, so 10,000,000 are ~6 GB in 64 MB rotated files; it is kept
in DIR and reused by the next run with the same count), then runs each
command end to end in a fresh process, as a user runs it, and prints its
wall time, records per second and the process's peak resident set size
(``wait4``'s ``ru_maxrss``: the high-water mark of the process, or of its
largest child if that was larger, never a sum) against ``BOUND_MB``:

- ``audit summary --json``, ``audit verify``,
- ``audit query`` (load into DuckDB + a GROUP BY),
- ``audit export --parquet`` and ``--format ocsf`` (verify, load, write; into DIR),
- ``audit serve``: seconds to listening, to the first page of records (the
  rate is log records / those seconds), to the whole log indexed; then a
  filtered page, the chart, and a page filtered by SQL, timed as requests;
  its peak RSS is taken after all of them.

DuckDB spills to ``$TMPDIR`` (auditor/session.py); set it to a disk with
room for about half the log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

#: Issue 15 section 4: resident memory of each tool on a 10,000,000-record log.
BOUND_MB = 500
QUERY = "SELECT reason, count(*) AS n FROM records GROUP BY ALL ORDER BY n DESC"
#: What the serve measurement filters by (bench/scale_log.py writes these names).
FILTERED = "reason=ADDR_NOT_PINNED&tenant=tenant-3&limit=50"
SQL_FILTER = "SELECT seq FROM records WHERE owner = 'kernel' AND desc_length > 8000"


@dataclass
class Measured:
    name: str
    seconds: float
    rss_mb: float
    records: int
    note: str = ""

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def _rss_mb(ru_maxrss_kb: int) -> float:
    return ru_maxrss_kb / 1024


def _nic_sandbox(*argv: str) -> list[str]:
    return [sys.executable, "-m", "sandbox", *argv]


def run(name: str, argv: list[str], records: int, stdout: Path | None = None) -> Measured:
    """``argv`` in a fresh process: its wall time and peak RSS (it must exit 0)."""
    with open(stdout or os.devnull, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}: {err.decode(errors='replace')[-500:]}")
    return Measured(name, seconds, _rss_mb(usage.ru_maxrss), records)


def _get(url: str, timeout: float = 600.0) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _timed(url: str, ok: Callable[[int, dict[str, object]], bool] = lambda code, _: code == 200) -> float:
    start = time.perf_counter()
    code, body = _get(url)
    if not ok(code, body):
        raise SystemExit(f"{url}: {code} {str(body)[:300]}")
    return time.perf_counter() - start


def start_serve(log: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """``audit serve LOG --port 0`` started: the process, its address, seconds until it said it listens."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        _nic_sandbox("audit", "serve", str(log), "--port", "0"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().decode()
    listening = time.perf_counter() - start
    found = re.search(r"http://[^/]+/", first)
    if found is None:
        proc.kill()
        proc.wait()
        raise SystemExit(f"audit serve did not say where it listens: {first!r}")
    return proc, found.group(0), listening


def first_page(base: str) -> None:
    """Wait until ``base``'s first page of records answers with rows."""
    while True:
        code, body = _get(base + "api/records?limit=50")
        if code == 200 and body.get("rows"):
            return
        time.sleep(0.05)


def serve_first_page(log: Path) -> float:
    """Seconds from starting ``audit serve`` on ``log`` until its first page of records answers (then it stops)."""
    start = time.perf_counter()
    proc, base, _ = start_serve(log)
    try:
        first_page(base)
        return time.perf_counter() - start
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait()


def serve(log: Path, records: int) -> list[Measured]:
    """``audit serve`` on ``log``: to listening, first page, fully indexed, then three requests; peak RSS of all."""
    start = time.perf_counter()
    proc, base, listening = start_serve(log)
    out: list[Measured] = []
    try:
        first_page(base)
        first_page_s = time.perf_counter() - start
        while True:
            code, body = _get(base + "api/status")
            if code == 200 and not body.get("indexing"):
                break
            time.sleep(0.5)
        indexed = time.perf_counter() - start
        rows = int(body["rows"])  # type: ignore[call-overload]
        filtered = _timed(base + "api/records?" + FILTERED)
        chart = _timed(base + "api/chart?by=reason&buckets=60")
        sql_url = base + "api/records?limit=50&sql=" + urllib.parse.quote(SQL_FILTER)
        sql_first = time.perf_counter()
        while True:  # the first SQL filter loads the log into DuckDB in the background: 202 until it is there
            code, body = _get(sql_url)
            if code != 202:
                break
            time.sleep(1.0)
        sql_load = time.perf_counter() - sql_first
        sql_ok = code == 200
        sql_again = _timed(sql_url) if sql_ok else 0.0
        sql_note = "" if sql_ok else f"refused: {code} {str(body.get('error'))[:60]}"
        hwm = _vm_hwm_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        _, _, usage = os.wait4(proc.pid, 0)
    peak = max(hwm, _rss_mb(usage.ru_maxrss))
    out.append(Measured("audit serve: listening", listening, peak, records))
    out.append(Measured("audit serve: first page", first_page_s, peak, records))
    out.append(Measured("audit serve: all indexed", indexed, peak, rows))
    out.append(Measured("audit serve: filtered page", filtered, peak, rows, "reason + tenant"))
    out.append(Measured("audit serve: chart", chart, peak, rows, "60 buckets by reason"))
    out.append(Measured("audit serve: SQL page, first", sql_load, peak, rows, sql_note or "loads DuckDB first"))
    out.append(Measured("audit serve: SQL page, again", sql_again, peak, rows, sql_note))
    return out


def _vm_hwm_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(found.group(1)) / 1024 if found else 0.0


def ensure_log(folder: Path, records: int, say: Callable[[str], None]) -> Path:
    """``folder/audit.jsonl`` with ``records`` records, written once (a marker file says how many it holds)."""
    log = folder / "audit.jsonl"
    marker = folder / "records.txt"
    if marker.exists() and marker.read_text().strip() == str(records) and log.exists():
        return log
    from bench import scale_log

    for old in folder.glob("audit.jsonl*"):
        old.unlink()
    marker.unlink(missing_ok=True)
    start = time.perf_counter()
    scale_log.write(log, records, progress=lambda n: say(f"writing the log: {n:,} of {records:,} records"))
    marker.write_text(f"{records}\n")
    say(f"wrote {records:,} records in {time.perf_counter() - start:.0f} s")
    return log


def measure(log: Path, records: int, folder: Path, say: Callable[[str], None]) -> list[Measured]:
    out: list[Measured] = []
    steps: list[tuple[str, list[str], Path | None]] = [
        ("audit summary --json", _nic_sandbox("audit", "summary", str(log), "--json"), None),
        ("audit verify", _nic_sandbox("audit", "verify", str(log)), None),
        ("audit query (GROUP BY)", _nic_sandbox("audit", "query", str(log), QUERY, "--format", "csv"), None),
        (
            "audit export --parquet",
            _nic_sandbox("audit", "export", str(log), "--parquet", str(folder / "export.parquet")),
            None,
        ),
        (
            "audit export --format ocsf",
            _nic_sandbox("audit", "export", str(log), "--format", "ocsf", "-o", str(folder / "export.ocsf.jsonl")),
            None,
        ),
    ]
    for name, argv, stdout in steps:
        say(f"running {name}")
        out.append(run(name, argv, records, stdout))
        say(f"{name}: {out[-1].seconds:.1f} s, {out[-1].rss_mb:.0f} MB")
    for leftover in ("export.parquet", "export.ocsf.jsonl"):
        (folder / leftover).unlink(missing_ok=True)
    say("running audit serve")
    out += serve(log, records)
    return out


def table(results: list[Measured], records: int, size: int) -> Table:
    t = Table(title=f"the auditor at scale: {records:,} records ({size / 1e9:.1f} GB), a fresh process each")
    for col in ("command", "seconds", "records/s", "peak RSS MB", f"<= {BOUND_MB} MB", "note"):
        t.add_column(col, justify="left" if col in ("command", "note") else "right")
    for m in results:
        met = "met" if m.rss_mb <= BOUND_MB else "MISSED"
        t.add_row(m.name, f"{m.seconds:.2f}", f"{m.rate:,.0f}", f"{m.rss_mb:.0f}", met, m.note)
    return t


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000, help="records in the log (default 10,000,000)")
    parser.add_argument("--dir", type=Path, required=True, help="where the log is kept (~620 B/record)")
    args = parser.parse_args()
    if args.records < 1:
        parser.error(f"--records: at least 1, not {args.records}")
    args.dir.mkdir(parents=True, exist_ok=True)
    console = Console(width=140)
    start = time.perf_counter()

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {text}", file=sys.stderr, flush=True)

    log = ensure_log(args.dir, args.records, say)
    size = sum(p.stat().st_size for p in args.dir.glob("audit.jsonl*"))
    results = measure(log, args.records, args.dir, say)
    console.print(table(results, args.records, size))


if __name__ == "__main__":
    main()
