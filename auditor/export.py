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
"""

from __future__ import annotations

import os
from pathlib import Path

from auditor import ocsf
from auditor.provenance import Provenance
from auditor.session import Records
from auditor.table import COLUMNS, quote

#: Parquet key-value metadata key holding the provenance (JSON): the chain's verdict, head and anchor.
PARQUET_KEY = "nic_sandbox.audit.provenance"
#: Rows per Parquet row group (DuckDB's default; a reader skips groups by their min/max statistics).
ROW_GROUP_ROWS = 122_880


def _rows(provenance: Provenance) -> str:
    if provenance.verified:
        return f"SELECT * FROM records WHERE seq BETWEEN {provenance.first_seq} AND {provenance.head_seq}"
    return "SELECT * FROM records"  # --force: everything readable, marked unverified


def _finish(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)


def parquet(records: Records, provenance: Provenance, target: Path) -> int:
    """Write ``target``; the number of rows written."""
    tmp = target.with_name(target.name + ".tmp")
    names = ", ".join(f'"{c.name}"' for c in COLUMNS)
    try:
        records.con.execute(
            f"COPY (SELECT {names} FROM ({_rows(provenance)})) TO {quote(str(tmp))} "
            f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS}, "
            f"KV_METADATA {{{quote(PARQUET_KEY)}: {quote(provenance.as_json())}}})"
        )
        written = int(records.con.execute(f"SELECT count(*) FROM ({_rows(provenance)})").fetchone()[0])
        _finish(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return written


def ocsf_jsonl(records: Records, provenance: Provenance, target: Path | None) -> int:
    """Write the OCSF events to ``target`` (None: standard output); the number of events."""
    select = ocsf.select_sql(provenance.as_json()).replace("FROM records", f"FROM ({_rows(provenance)})")
    out = Path("/dev/stdout") if target is None else target.with_name(target.name + ".tmp")
    try:
        # One thread: with two, DuckDB holds the wide rows that are ready out of order to keep insertion order, and
        # a million of them went past the 256 MB limit (OCSF of 1,025,976 records: out of memory at 2 threads; 14 s,
        # 331 MB peak RSS at one).  The JSON writer is not the slow part: the load before it is.
        records.con.execute("SET threads = 1")
        records.con.execute(f"COPY ({select}) TO {quote(str(out))} (FORMAT json)")
        written = int(records.con.execute(f"SELECT count(*) FROM ({_rows(provenance)})").fetchone()[0])
        if target is not None:
            _finish(out, target)
    finally:
        if target is not None:
            out.unlink(missing_ok=True)
    return written
