"""Exports of a verified log: Parquet (columnar, typed, zstd) and OCSF JSON Lines (for a SIEM).

Both read the ``records`` table of auditor/session.py (the same typed
columns as ``audit query``) and are written by DuckDB, streaming, within its
memory limit.  Only the records the chain verified are exported (seq from
``first_seq`` to ``head_seq``): records appended to the log after ``verify``
read it are left out, so the head an export names is its last record.
Each export is written to ``OUT.tmp`` and renamed when complete, so an
interrupted export leaves no half file under the name.  Rows leave in log
order (seq order, for a log that verifies) without an ``ORDER BY``: the
table was loaded in that order and DuckDB keeps insertion order
(``preserve_insertion_order``, on by default).  A sort of a million wide
OCSF rows ran out of the 256 MB memory limit; a scan streams.

A log that verified is exported straight from its files (``Direct``): the
chain walk has already checked every record against the schema (canonical,
typed, in range), so the load's own check and the database it writes would
only repeat that (at 10,000,000 records the load is most of the time; see
docs/auditing.md).  A log exported with ``--force`` goes through the load
(``Records``), which names the records that do not fit the schema.  The
count a command reports is the one ``COPY`` returns: no second pass.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from auditor import deps, ocsf
from auditor.provenance import Provenance
from auditor.session import DEFAULT_MEMORY_LIMIT, DEFAULT_THREADS, Records
from auditor.table import COLUMNS, SELECT_SQL, quote, read_json_sql
from verifier.audit.read import PathLike, order_files

#: Parquet key-value metadata key holding the provenance (JSON): the chain's verdict, head and anchor.
PARQUET_KEY = "nic_sandbox.audit.provenance"
#: Rows per Parquet row group (DuckDB's default; a reader skips groups by their min/max statistics).
ROW_GROUP_ROWS = 122_880


class Direct:
    """The typed records of a verified log, read straight from its files by DuckDB (file access on, our SQL only).

    ``table`` is what the export selects from; DuckDB's spill goes to a temporary folder in ``$TMPDIR``.
    """

    def __init__(
        self, paths: Iterable[PathLike], memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int = DEFAULT_THREADS
    ) -> None:
        self.duckdb = deps.duckdb()
        files = [str(p) for p in order_files(paths)]
        self.folder = Path(tempfile.mkdtemp(prefix="nic-sandbox-export-"))
        config: dict[str, Any] = {"memory_limit": memory_limit, "threads": threads}
        config["temp_directory"] = str(self.folder / "spill")
        self.con = self.duckdb.connect(":memory:", config=config)
        self.table = f"(SELECT {SELECT_SQL} FROM {read_json_sql(files)})"

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Direct:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Source = Records | Direct


def _rows(source: Source, provenance: Provenance) -> str:
    table = source.table if isinstance(source, Direct) else "records"
    if provenance.verified:
        return f"SELECT * FROM {table} WHERE seq BETWEEN {provenance.first_seq} AND {provenance.head_seq}"
    return f"SELECT * FROM {table}"  # --force: everything readable, marked unverified


def _finish(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)


def parquet(records: Source, provenance: Provenance, target: Path) -> int:
    """Write ``target``; the number of rows written."""
    tmp = target.with_name(target.name + ".tmp")
    names = ", ".join(f'"{c.name}"' for c in COLUMNS)
    try:
        [(written,)] = records.con.execute(
            f"COPY (SELECT {names} FROM ({_rows(records, provenance)})) TO {quote(str(tmp))} "
            f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS}, "
            f"KV_METADATA {{{quote(PARQUET_KEY)}: {quote(provenance.as_json())}}})"
        ).fetchall()
        _finish(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return int(written)


def ocsf_jsonl(records: Source, provenance: Provenance, target: Path | None) -> int:
    """Write the OCSF events to ``target`` (None: standard output); the number of events."""
    select = ocsf.select_sql(provenance.as_json()).replace("FROM records", f"FROM ({_rows(records, provenance)})")
    out = Path("/dev/stdout") if target is None else target.with_name(target.name + ".tmp")
    try:
        # One thread: with two, DuckDB holds the wide rows that are ready out of order to keep insertion order, and
        # a million of them went past the 256 MB limit (OCSF of 1,025,976 records: out of memory at 2 threads; 14 s,
        # 331 MB peak RSS at one).  The JSON writer is not the slow part: the load before it is.
        records.con.execute("SET threads = 1")
        [(written,)] = records.con.execute(f"COPY ({select}) TO {quote(str(out))} (FORMAT json)").fetchall()
        if target is not None:
            _finish(out, target)
    finally:
        if target is not None:
            out.unlink(missing_ok=True)
    return int(written)
