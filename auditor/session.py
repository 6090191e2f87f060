"""A log loaded into DuckDB as the ``records`` table, then opened read-only and locked for the user's SQL.

Why a load, and not a view over ``read_json`` straight on the log: a view
needs the database to reach the log's files when the user's query runs, and
DuckDB's only way to allow that with external access off
(``allowed_paths``) lets a query *write* those paths too (``COPY ... TO
'audit.jsonl' (USE_TMP_FILE false)`` overwrote a log in a trial).  So the
records are loaded, by SQL of ours only, into a private database file in a
temporary folder; that database is then reopened ``read_only`` with
``enable_external_access = false`` and ``lock_configuration = true``.  The
user's SQL can then read ``records`` and nothing else: no file read or
written (``COPY``, ``read_csv``, ``ATTACH``, ``INSTALL`` are refused), no
network, no setting changed back, no table created.

Memory is bounded by DuckDB's ``memory_limit``: beyond it DuckDB spills to
the temporary folder (``temp_directory``), which is removed afterwards.  The
temporary folder is made in ``$TMPDIR`` (the system's temporary directory
otherwise): the database takes about half the log's size there.  The load
streams each file; rows keep the log's order (files ordered by first seq,
``verifier.audit.read.order_files``).

``isolated=True`` (``audit serve``) loads in a child process: the load's
peak (the typing and checking of every JSON value, ~330 MB at the default
limit, most of it DuckDB's JSON functions) leaves with it, and the server
keeps only the read-only connection, with ``query_memory_limit``.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from auditor import deps
from auditor.table import COLUMNS, PROBLEM_SQL, SCHEMA_SQL, SELECT_SQL, read_json_sql
from verifier.audit.log import AuditError
from verifier.audit.read import PathLike, order_files

#: DuckDB's memory ceiling for a load or a query (it spills to the temporary folder beyond it).
DEFAULT_MEMORY_LIMIT = "256MB"
#: Threads DuckDB may use (the machines here have two cores, shared).
DEFAULT_THREADS = 2
#: The table the user's SQL reads, and the one the load fills (with each row's problem and file).
TABLE = "records"
_LOAD = "_load"

#: What the user's SQL may not do, set once the records are loaded (the last one freezes every setting).
LOCKDOWN = (
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET lock_configuration = true",
)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


class Records:
    """The records of one log (its files) in a read-only, locked DuckDB database: ``con`` runs the user's SQL.

    Raises ``AuditError`` naming the file (and seq or line) when a record is
    damaged: not JSON, a torn last line, or a value of the wrong type or range.
    Use as a context manager: the temporary folder is removed on exit.
    ``lock=False`` (exports: SQL of ours that writes the export file) keeps
    the database read-only but leaves file access on.
    """

    def __init__(
        self,
        paths: Iterable[PathLike],
        *,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
        threads: int = DEFAULT_THREADS,
        progress: Progress = _quiet,
        lock: bool = True,
        isolated: bool = False,
        query_memory_limit: str | None = None,
    ) -> None:
        self.duckdb = deps.duckdb()
        self.files = order_files(paths)
        self.config: dict[str, Any] = {"threads": threads, "memory_limit": memory_limit}
        self.folder = Path(tempfile.mkdtemp(prefix="nic-sandbox-sql-"))
        self.config["temp_directory"] = str(self.folder / "spill")
        self.count = 0
        try:
            if isolated:
                self.count = _load_in_child(self.folder, self.files, self.config, progress)
            else:
                self.count = _load(self.duckdb, self.folder, self.files, self.config, progress)
            if query_memory_limit is not None:
                self.config["memory_limit"] = query_memory_limit
            self.con = self.duckdb.connect(str(self.folder / "records.duckdb"), read_only=True, config=self.config)
            for setting in (
                LOCKDOWN if lock else ()
            ):  # in this order: the temp_directory is set at connect, before access is cut
                self.con.execute(setting)
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Records:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _load(duckdb: Any, folder: Path, files: list[Path], config: dict[str, Any], progress: Progress) -> int:
    """Load ``files`` into ``folder/records.duckdb`` (the table ``_load`` and the view ``records``); the rows."""
    count = 0
    for path in files:
        _check_not_torn(path)
    con = duckdb.connect(str(folder / "records.duckdb"), config=config)
    try:
        con.execute(f"CREATE TABLE {_LOAD} ({SCHEMA_SQL}, _problem VARCHAR, _file VARCHAR)")
        for n, path in enumerate(files, 1):
            if path.stat().st_size == 0:
                continue
            progress(f"loading {path} ({n}/{len(files)}), {count:,} records so far")
            sql = f"INSERT INTO {_LOAD} SELECT {SELECT_SQL}, {PROBLEM_SQL}, _file FROM {read_json_sql([str(path)])}"
            try:
                con.execute(sql)
            except duckdb.OutOfMemoryException:
                limit = config["memory_limit"]
                raise AuditError(f"{path}: not loaded: DuckDB needs more than its memory limit {limit}") from None
            except duckdb.Error as e:
                raise AuditError(f"{path}: damaged record (not JSON Lines of records: {_first_line(e)})") from None
            count = con.execute(f"SELECT count(*) FROM {_LOAD}").fetchone()[0]
        bad = con.execute(
            f"SELECT _file, seq, _problem, rowid - min(rowid) OVER (PARTITION BY _file) + 1 AS line "
            f"FROM {_LOAD} QUALIFY _problem IS NOT NULL ORDER BY rowid LIMIT 1"
        ).fetchone()
        if bad is not None:
            file, seq, problem, nth = bad
            at = f" (seq {seq})" if seq is not None else ""
            raise AuditError(f"{file}:{_file_line(Path(file), nth)}: damaged record{at} ({problem})")
        names = ", ".join(f'"{c.name}"' for c in COLUMNS)
        con.execute(f"CREATE VIEW {TABLE} AS SELECT {names} FROM {_LOAD}")
        progress(f"loaded {count:,} records")
    finally:
        con.close()
    return count


def _file_line(path: Path, nth: int) -> int:
    """The line of ``path`` that holds its ``nth`` record (1-based), as an editor numbers lines.

    DuckDB numbers the rows it loaded, and a schema v2 log's checkpoint lines
    are not loaded (``read_json_sql`` leaves them out): the ``nth`` record sits
    below as many lines as checkpoints came before it.  A line is a checkpoint
    here exactly when DuckDB left it out: JSON with a ``checkpoint`` that is
    not null.  Read only when a damaged record is reported.
    """
    seen = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if b'"checkpoint"' in line and _is_checkpoint_row(line):
                continue
            seen += 1
            if seen == nth:
                return number
    return nth  # the file changed since it was loaded: DuckDB's own count


def _is_checkpoint_row(line: bytes) -> bool:
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(row, dict) and row.get("checkpoint") is not None


def _load_child(pipe: Any, folder: Path, files: list[Path], config: dict[str, Any]) -> None:
    """The child of ``_load_in_child``: progress, then the count or the error, sent up the pipe."""
    try:
        count = _load(deps.duckdb(), folder, files, config, lambda text: pipe.send(("progress", text)))
    except AuditError as e:
        pipe.send(("error", str(e)))
    except BaseException as e:  # DuckDB's own errors (a disk full): one line, as the parent would have said
        pipe.send(("error", f"the load into DuckDB failed: {_first_line(e)}"))
    else:
        pipe.send(("done", count))
    finally:
        pipe.close()


def _load_in_child(folder: Path, files: list[Path], config: dict[str, Any], progress: Progress) -> int:
    """``_load`` in a child process (spawned: no thread of the server is copied); ``AuditError`` as it raises."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe(duplex=False)
    child = context.Process(target=_load_child, args=(theirs, folder, files, config), name="nic-sandbox-sql-load")
    child.start()
    theirs.close()
    try:
        while True:
            try:
                what, value = ours.recv()
            except EOFError:
                child.join()
                raise AuditError(f"the load into DuckDB ended without an answer (exit {child.exitcode})") from None
            if what == "progress":
                progress(value)
            elif what == "error":
                raise AuditError(value)
            else:
                return int(value)
    finally:
        ours.close()
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
            child.join()


def _check_not_torn(path: Path) -> None:
    """A last line without its newline is a torn record (as ``read_records`` says), not a record."""
    with path.open("rb") as f:
        if f.seek(0, 2) == 0:
            return
        f.seek(-1, 2)
        if f.read(1) != b"\n":
            raise AuditError(f"{path}: torn record at the end (file cut mid-line); run 'nic-sandbox audit verify'")
