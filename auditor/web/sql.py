"""The web view's ``sql`` filter: ``audit query``'s locked DuckDB session (auditor/session.py), one per chain.

The SQL is the user's (any page the browser visits can send it), so it runs
exactly where ``audit query`` runs it: the log loaded into a private DuckDB
database, reopened read-only with external access off and every setting
locked (no file read or written, no network, no extension).  On top of that
a server needs two things a command line does not: a query is interrupted
after ``QUERY_S`` seconds (a cross join of ten million rows would otherwise
hold the server), and the load of a large log happens in a thread of its
own, so the first SQL request answers at once with "loading" (202 Accepted and
``retry``: the page asks again) instead of holding a request for minutes.

What a filter selects is a set of seqs per chain (the records the query
returned), kept as a bitmap over the chain's seq range (one byte a seq) or,
for a sparse hostile range, as sorted seqs; ``block_mask`` turns it into the
rows of an index block.  The load is a snapshot of the files: when they grew
(a live log), the next SQL request starts a reload (at most every
``RELOAD_S``) and meanwhile answers from the last load, saying how many
records it covers.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from auditor.deps import MissingLibrary
from auditor.session import Records
from auditor.web.filters import FilterError
from auditor.web.index import Block, Snapshot
from verifier.audit.log import AuditError
from verifier.audit.read import PathLike, log_files
from verifier.audit.sets import log_sets

#: A query that runs longer is interrupted (its answer: 400 naming the limit).
QUERY_S = 30.0
#: Shortest time between two loads of a growing log, in seconds.
RELOAD_S = 10.0
#: DuckDB's memory for each query in the server (the server holds its index beside it: 230 MB at 10,000,000
#: records; at 128MB a filter over 10,000,000 records took the server to 505 MB, measured).  The load takes
#: ``audit query``'s 256MB, in a child process of its own (``Records(isolated=True)``): typing and checking every
#: JSON value needs more than 128MB, and the server need not keep that peak.  Beyond the limit DuckDB spills.
QUERY_MEMORY_LIMIT = "64MB"
#: Rows fetched from DuckDB at once while collecting the seqs a query returned.
FETCH_ROWS = 1 << 18
#: A query that is not a SELECT is taken as the condition of ``SELECT seq FROM records WHERE ...``.
_QUERY_START = re.compile(r"^\s*\(*\s*(select|with|from|values|table)\b", re.IGNORECASE)


class NotReady(Exception):
    """The log is still being loaded into DuckDB: try again shortly (the server answers 202 with ``retry``)."""


@dataclass(frozen=True)
class _Chain:
    records: Records
    files: frozenset[tuple[int, int]]  # (device, inode) of each file loaded
    low: int  # lowest and highest seq loaded
    high: int


@dataclass(frozen=True)
class Selection:
    """The seqs an SQL filter returned, per chain: ``block_mask`` gives the rows of a block that hold one."""

    snap: Snapshot
    chain_of_file: np.ndarray[Any, np.dtype[np.int64]]  # index file -> chain (-1: a file the load did not hold)
    chosen: list[tuple[int, np.ndarray[Any, Any], bool]]  # per chain: (low seq, bitmap or sorted seqs, is bitmap)
    records: int  # records the load held

    def block_mask(self, block: Block) -> np.ndarray[Any, np.dtype[np.bool_]]:
        files = block.files()
        seq = self.snap.seq_base[files] + block.columns["seq"]
        chain = self.chain_of_file[files]
        keep = np.zeros(block.stop - block.start, dtype=bool)
        for number, (low, chosen, bitmap) in enumerate(self.chosen):
            rows = np.flatnonzero(chain == number) if len(self.chosen) > 1 else np.arange(keep.size)
            seqs = seq[rows]
            if bitmap:
                inside = (seqs >= low) & (seqs < low + chosen.size)
                hit = np.zeros(seqs.size, dtype=bool)
                hit[inside] = chosen[seqs[inside] - low]
            else:
                at = np.minimum(np.searchsorted(chosen, seqs), max(chosen.size - 1, 0))
                hit = chosen[at] == seqs if chosen.size else np.zeros(seqs.size, dtype=bool)
            keep[rows] = hit
        return keep & block.good


class SqlFilter:
    """The ``sql`` parameter's engine for one web view: loads in the background, runs a query per chain."""

    def __init__(self, names: Iterable[PathLike]) -> None:
        self.names = list(names)
        self._lock = threading.Lock()  # the state below
        self._query_lock = threading.Lock()  # one query at a time (a DuckDB connection is not shared by threads)
        self._chains: list[_Chain] | None = None
        self._signature: tuple[tuple[int, int, int], ...] | None = None  # the files as the last load saw them
        self._loading: threading.Thread | None = None
        self._loaded_at = 0.0
        self._error: str | None = None
        self._note = "starting"
        self._closed = False

    # -- loading ------------------------------------------------------------------------
    def _files(self) -> tuple[list[list[Path]], tuple[tuple[int, int, int], ...]]:
        sets = log_sets(self.names)
        stats = []
        for files in sets:
            for path in files:
                st = path.stat()
                stats.append((st.st_dev, st.st_ino, st.st_size))
        return sets, tuple(sorted(stats))

    def _load(self) -> None:
        chains: list[_Chain] = []
        signature = None
        try:
            sets, signature = self._files()
            for number, files in enumerate(sets, 1):
                keys = frozenset((s.st_dev, s.st_ino) for s in (os.stat(p) for p in log_files(files)))

                def said(text: str, number: int = number) -> None:
                    self._note = text if len(sets) == 1 else f"log {number} of {len(sets)}: {text}"

                records = Records(files, threads=1, progress=said, isolated=True, query_memory_limit=QUERY_MEMORY_LIMIT)
                [(low, high)] = records.con.execute("SELECT min(seq), max(seq) FROM records").fetchall()
                chains.append(_Chain(records, keys, int(low or 0), int(high if high is not None else -1)))
            error = None
        except (AuditError, MissingLibrary, OSError) as e:
            error = str(e)
        except Exception as e:  # DuckDB's own errors (a disk full under the load): the filter says so, the view serves
            error = f"the load into DuckDB failed: {' '.join(str(e).split())[:300]}"
        with self._lock:
            old, self._chains = self._chains, (chains if error is None else self._chains)
            if error is None:
                self._signature = signature
            self._error = error
            self._loaded_at = time.monotonic()
            self._loading = None
            closed = self._closed
        if error is not None:
            for chain in chains:
                chain.records.close()
        elif old is not None or closed:
            with self._query_lock:
                for chain in old or ():
                    chain.records.close()
                if closed:
                    for chain in chains:
                        chain.records.close()

    def _start_load(self) -> None:
        """Under ``_lock``: start a load unless one runs."""
        if self._loading is None and not self._closed:
            self._note = "starting"
            self._loading = threading.Thread(target=self._load, name="audit-serve-sql-load", daemon=True)
            self._loading.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            chains, self._chains = self._chains, None
            loading = self._loading
        with self._query_lock:
            for chain in chains or ():
                chain.records.close()
        if loading is not None:
            loading.join(timeout=1)  # a load in progress closes what it made when it ends (``_closed``)

    # -- selecting ----------------------------------------------------------------------
    def select(self, sql: str, snap: Snapshot, file_keys: list[tuple[int, int]]) -> Selection:
        """The records ``sql`` returns, for ``snap``'s rows; ``NotReady`` while the first load runs."""
        try:
            _, signature = self._files()
        except (OSError, AuditError) as e:
            raise FilterError(f"sql: {e}") from None
        with self._lock:
            stale = signature != self._signature and time.monotonic() - self._loaded_at >= RELOAD_S
            if (self._chains is None or stale) and (self._error is None or signature != self._signature):
                self._start_load()
            chains, error, note = self._chains, self._error, self._note
        if chains is None:
            if error is not None:
                raise FilterError(f"sql: {error}")
            raise NotReady(f"sql: loading the log into DuckDB for SQL ({note}); the page asks again")
        with self._query_lock:
            chosen = [_run(chain, sql) for chain in chains]
        where = {key: number for number, chain in enumerate(chains) for key in chain.files}
        chain_of_file = np.array([where.get(key, -1) for key in file_keys] or [-1], dtype=np.int64)
        total = sum(chain.records.count for chain in chains)
        return Selection(snap, chain_of_file, chosen, total)


def query_text(sql: str) -> str:
    """The query to run: ``sql`` itself when it is a query, else ``SELECT seq FROM records WHERE (sql)``."""
    text = sql.strip().rstrip(";").strip()
    if _QUERY_START.match(text):
        return text
    return f"SELECT seq FROM records WHERE ({text})"


def _run(chain: _Chain, sql: str) -> tuple[int, np.ndarray[Any, Any], bool]:
    """The seqs the query returns on one chain, as a bitmap over ``low..high`` or (sparse) sorted."""
    con, duckdb = chain.records.con, chain.records.duckdb
    timer = threading.Timer(QUERY_S, con.interrupt)
    timer.start()
    try:
        relation = con.sql(query_text(sql))
        if relation is None:
            raise FilterError("sql: a query that returns rows, with a seq column (SELECT seq FROM records WHERE ...)")
        if "seq" not in [c.lower() for c in relation.columns]:
            names = ", ".join(relation.columns)[:80]
            raise FilterError(f"sql: the query must return a column named seq (it returns: {names})")
        seqs = relation.project('TRY_CAST("seq" AS BIGINT) AS s').filter("s IS NOT NULL")
        span = chain.high - chain.low + 1
        bitmap = 0 < span <= 8 * max(chain.records.count, 1) + 4096
        found = np.zeros(span if bitmap else 0, dtype=bool)
        parts: list[np.ndarray[Any, Any]] = []
        reader = seqs.to_arrow_reader(FETCH_ROWS)
        try:
            for batch in reader:
                values = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
                if bitmap:
                    values = values[(values >= chain.low) & (values <= chain.high)]
                    found[values - chain.low] = True
                else:
                    parts.append(np.unique(values))
        finally:
            reader.close()
        if bitmap:
            return chain.low, found, True
        return chain.low, np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64), False
    except duckdb.InterruptException:
        raise FilterError(f"sql: stopped after {QUERY_S:.0f} s (a filter must answer sooner)") from None
    except duckdb.Error as e:
        raise FilterError(f"sql: {' '.join(str(e).split())[:300]}") from None
    finally:
        timer.cancel()
