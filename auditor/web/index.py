"""An index of every line of a (growing, rotating) audit log: what the web view filters, counts and pages over.

``audit serve`` must answer the first page of a large log quickly and keep
up with a live one, so it does not hold records: per line it keeps a row of
small integers in numpy columns (the file, the byte offset and length of the
line, seq, time, and interned reason / tenant / queue / kind ids) and reads
the line back from its file when a page or a record is asked for.  Filters
and counts are then vectorised masks over those columns.

Every line is hostile (tests/hostile/): each becomes one row, and a line
that is not a canonical v1 record with a sound hash becomes a *bad* row with
the reason (``parse_line``, ``schema_problem``, ``record_hash_ok`` of
verifier/audit/): it is shown as bad, the rest still serve.  A line longer
than ``MAX_LINE`` is never held in memory: it is counted as one bad row and
skipped to its newline.  Chain problems across records (missing, out of
order, repeated) are the verifier's job (``verify``, run beside this index by
auditor/web/chain.py).

Growth is followed as ``audit follow`` does (``tail -F``): files are known by
device and inode, so a file the writer renames to ``LOG.1`` keeps its rows
and its open handle, and the new ``LOG`` is indexed from its first byte.  The
newest file's unfinished last line is *pending* (a write in progress) until
its newline arrives; an older file that ends mid-line is torn (bad row).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from verifier.audit.log import (
    CHECKPOINT_FIELDS,
    CHECKPOINT_START,
    SCHEMA_V2,
    AuditError,
    parse_line,
    record_hash_ok,
)
from verifier.audit.read import (
    CHUNK_LINES,
    PathLike,
    fast_batch,
    fast_chunk,
    log_files,
    order_files,
    parse_wall,
    schema_problem,
)
from verifier.audit.sets import logs_in

#: The longest line kept as a possible record; a longer one is a bad row (a writer's record is a few hundred bytes).
MAX_LINE = 1 << 20
#: How much of a file is read at once while indexing.
READ_CHUNK = 4 << 20
#: The label of a bad row's reason, tenant and queue (no reason code has lower case letters or spaces).
BAD_LABEL = "(bad record)"


def _read_line(fd: int, offset: int) -> bytes | None:
    """The line at ``offset`` with its newline; None when none ends within ``MAX_LINE`` (the file changed)."""
    data = b""
    step = 4096
    while len(data) <= MAX_LINE:
        more = os.pread(fd, step, offset + len(data))
        if not more:
            return None
        end = more.find(b"\n")
        if end >= 0:
            return data + more[: end + 1]
        data += more
        step *= 4
    return None


class _Interned:
    """Strings numbered in order of first sight: the columns hold the numbers."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.ids: dict[str, int] = {}

    def id(self, name: str) -> int:
        found = self.ids.get(name)
        if found is None:
            found = self.ids[name] = len(self.names)
            self.names.append(name)
        return found


@dataclass
class _File:
    """One file of the log: its handle stays open, so a rotated or pruned file's rows still read back."""

    path: Path
    handle: BinaryIO
    key: tuple[int, int]  # (device, inode): the file whatever its name becomes
    offset: int = 0  # bytes indexed (up to the last complete line)
    lines: int = 0  # lines indexed
    skipping: bool = False  # inside a line longer than MAX_LINE
    torn: bool = False  # the file ended mid-line and is no longer the one being written
    seq_base: int | None = None  # the seq of its first good record: its rows' ``seq`` column is relative to it


@dataclass
class Row:
    """One line of the log as the web view shows it in a table."""

    row: int
    file: str
    line: int
    status: str  # "ok" or "bad"
    problem: str | None
    record: dict[str, Any] | None  # the record, when the line is a good one
    raw: str | None  # the line as text (bad rows; cut to RAW_SHOWN characters)


#: Characters of a bad line shown (escaped by the browser, never interpreted).
RAW_SHOWN = 4096

#: Rows per block of the columns.  The index grows a block at a time (``np.zeros``: pages nobody wrote are not
#: resident, and nothing is ever copied to grow), and every mask and count is computed a block at a time, so a
#: request's temporaries are a few MB whatever the log's size (issue 15 section 4: 10,000,000 records in 500 MB).
BLOCK_ROWS = 1 << 18
#: The ``kind`` of a bad row (a good row's kind is the id of one of the five ``KINDS``).
BAD_KIND = 255

#: Each row's columns, at their narrowest.  A column WIDENS (every block re-cast, one at a time) when a value does
#: not fit: a log with more than 65,535 tenant names, a file past 4 GB, a seq more than 2**31 from its file's
#: first.  Never a wrong value, never an error: a hostile log pays memory, not correctness.  23 bytes a row.
#:
#: ``offset`` is within the file, ``seq`` is relative to the file's first good record's seq
#: (``Snapshot.seq_base``), ``wall`` is ns since the epoch.  A bad row has ``kind`` ``BAD_KIND``, its problem's
#: id in ``reason`` (``Snapshot.problems``), 0 for seq, wall, tenant and queue.  Which file and line a row is
#: are not columns: rows come in runs of consecutive lines of one file (``_Runs``), a few per file.  Nor is
#: the line's length: a row is read back up to its newline.
_COLUMNS: dict[str, type[np.integer[Any]]] = {
    "offset": np.uint32,
    "seq": np.int32,
    "wall": np.int64,
    "reason": np.uint16,
    "tenant": np.uint16,
    "queue": np.uint16,
    "kind": np.uint8,
}


class _Columns:
    """Integer columns in blocks of ``BLOCK_ROWS``, appended to under the index's lock, each as narrow as its values."""

    def __init__(self) -> None:
        self.dtypes = {name: np.dtype(t) for name, t in _COLUMNS.items()}
        self.blocks: list[dict[str, np.ndarray[Any, Any]]] = []
        self.rows = 0

    def _fit(self, name: str, low: int, high: int) -> None:
        """Widen column ``name`` so that ``low`` and ``high`` fit (a no-op when they do)."""
        dtype = self.dtypes[name]
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return
        wider = np.result_type(dtype, np.min_scalar_type(low), np.min_scalar_type(high))
        if wider.kind not in "iu":  # uint64 and a negative value: int64 holds every value an index stores
            wider = np.dtype(np.int64)
        self.dtypes[name] = wider
        for block in self.blocks:
            block[name] = block[name].astype(wider)

    def append(self, values: dict[str, np.ndarray[Any, Any]]) -> None:
        """Append rows: ``values`` holds one int64 array per column, all of one length."""
        m = len(values["offset"])
        for name, column in values.items():
            if m:
                self._fit(name, int(column.min()), int(column.max()))
        done = 0
        while done < m:
            number, within = divmod(self.rows, BLOCK_ROWS)
            if number == len(self.blocks):
                self.blocks.append({name: np.zeros(BLOCK_ROWS, dtype) for name, dtype in self.dtypes.items()})
            take = min(m - done, BLOCK_ROWS - within)
            block = self.blocks[number]
            for name, column in values.items():
                block[name][within : within + take] = column[done : done + take]
            self.rows += take
            done += take

    def get(self, row: int, name: str) -> int:
        number, within = divmod(row, BLOCK_ROWS)
        return int(self.blocks[number][name][within])

    def views(self, rows: int, runs: _RunsView) -> list[Block]:
        """The blocks holding rows ``0..rows-1``, as views cut to those rows."""
        out = []
        for number, block in enumerate(self.blocks):
            start = number * BLOCK_ROWS
            if start >= rows:
                break
            stop = min(rows, start + BLOCK_ROWS)
            out.append(Block(start, stop, {name: column[: stop - start] for name, column in block.items()}, runs))
        return out

    def nbytes(self) -> int:
        """Bytes of the rows in use (what the index costs a row, times the rows)."""
        return self.rows * sum(dtype.itemsize for dtype in self.dtypes.values())


@dataclass(frozen=True)
class _RunsView:
    """Runs up to some row: ``start[i]`` is the first row of run ``i``, ``file[i]`` its file, ``line[i]`` its line."""

    start: np.ndarray[Any, np.dtype[np.int64]]
    file: np.ndarray[Any, np.dtype[np.int64]]
    line: np.ndarray[Any, np.dtype[np.int64]]

    def at(self, row: int) -> tuple[int, int]:
        """The file and line of ``row``."""
        i = int(np.searchsorted(self.start, row, side="right")) - 1
        return int(self.file[i]), int(self.line[i]) + row - int(self.start[i])

    def files(self, start: int, stop: int) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The file of each row ``start..stop-1``."""
        first = int(np.searchsorted(self.start, start, side="right")) - 1
        last = int(np.searchsorted(self.start, stop, side="left"))
        bounds = np.clip(np.append(self.start[first + 1 : last], stop), start, stop)
        begins = np.clip(self.start[first:last], start, stop)
        return np.repeat(self.file[first:last], bounds - begins)


class _Runs:
    """Rows as runs of consecutive lines of one file: what the file and line of every row take, a few per file.

    A run is added when a row is not the next line of the previous row's
    file: at each file's start, and where a directory's logs interleave.
    """

    def __init__(self) -> None:
        self._start = np.zeros(64, np.int64)
        self._file = np.zeros(64, np.int64)
        self._line = np.zeros(64, np.int64)
        self.count = 0
        self._next: tuple[int, int, int] = (-1, -1, -1)  # (row, file, line) that would continue the last run

    def add(self, row: int, file: int, line: int, rows: int) -> None:
        """Rows ``row..row+rows-1`` are lines ``line..`` of ``file``."""
        if (row, file, line) != self._next:
            if self.count == self._start.size:
                for name in ("_start", "_file", "_line"):
                    setattr(self, name, np.concatenate([getattr(self, name), np.zeros_like(getattr(self, name))]))
            self._start[self.count], self._file[self.count], self._line[self.count] = row, file, line
            self.count += 1
        self._next = (row + rows, file, line + rows)

    def view(self) -> _RunsView:
        n = self.count
        return _RunsView(self._start[:n], self._file[:n], self._line[:n])


@dataclass(frozen=True)
class Block:
    """Rows ``start..stop-1`` of the index: a view of each column."""

    start: int
    stop: int
    columns: dict[str, np.ndarray[Any, Any]]
    runs: _RunsView

    @property
    def good(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        return self.columns["kind"] != BAD_KIND

    def files(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The file of each row (an index into ``Snapshot.seq_base`` and ``keys``)."""
        return self.runs.files(self.start, self.stop)


@dataclass
class Snapshot:
    """The index up to ``rows``, in blocks (the index only appends, so a snapshot never changes under a reader).

    ``blocks`` hold the columns of ``_COLUMNS``; ``reasons``, ``tenants``,
    ``queues`` and ``kinds`` are the names their ids stand for (``problems``
    for a bad row's ``reason``); ``seq_base[f]`` is what file ``f``'s
    ``seq`` column is relative to, ``keys[f]`` its (device, inode).
    """

    rows: int
    blocks: list[Block]
    reasons: list[str]
    tenants: list[str]
    tenant_keys: list[tuple[int, str]]
    queues: list[str]
    kinds: list[str]
    problems: list[str]
    seq_base: np.ndarray[Any, np.dtype[np.int64]]
    keys: list[tuple[int, int]]


@dataclass
class Progress:
    rows: int = 0
    bad: int = 0
    pending_bytes: int = 0
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def queue_label(record: dict[str, Any]) -> str:
    """``nic0/tx0``, ``nic1/rx3``, ``nic0`` (register, IOMMU) or ``-`` (pin): as ``audit summary`` groups them."""
    nic = record["nic"] or "-"
    if record["queue"] is None:
        return nic
    kind = record["kind"] if record["kind"] in ("tx", "rx") else "q"
    return f"{nic}/{kind}{record['queue']}"


class LogIndex:
    """The rows of the named logs (each with its rotated siblings), appended to by ``refresh``.

    ``refresh`` is called by one thread (the server's follower); readers take
    ``snapshot`` and ``read`` from any thread.  Raises ``AuditFormatError``
    at construction for a named file that is not an audit log at all.
    """

    def __init__(self, names: Iterable[PathLike]) -> None:
        self.names = [Path(n) for n in names]
        self._lock = threading.Lock()
        self._files: list[_File] = []
        self._by_inode: dict[tuple[int, int], int] = {}
        self._cols = _Columns()
        self._runs = _Runs()
        self._bad = 0
        self._reasons = _Interned()
        self._tenants = _Interned()
        self._tenant_keys: list[tuple[int, str]] = []
        self._queues = _Interned()
        self._kinds = _Interned()
        self._problems = _Interned()
        self._wall_cache: tuple[str, int] = ("", 0)
        self._notes: list[str] = []
        self._active: set[Path] = set()  # the files being written (the named ones), resolved
        self.generation = 0  # bumped whenever rows are added
        for path in order_files(log_files(self._named())):  # sniffs: a foreign file raises here, before serving
            self._open(path)

    def _named(self) -> list[Path]:
        """The named logs, a directory standing for every log in it (a campaign's per-worker logs)."""
        out: list[Path] = []
        for name in self.names:
            if name.is_dir():
                found = logs_in(name)
                if not found:
                    raise FileNotFoundError(f"{name}: a directory holding no audit log")
                out += found
            else:
                out.append(name)
        return out

    # -- following the files -----------------------------------------------------------
    def _open(self, path: Path) -> _File | None:
        try:
            handle = path.open("rb")
        except OSError:
            return None
        st = os.fstat(handle.fileno())
        key = (st.st_dev, st.st_ino)
        if key in self._by_inode:
            handle.close()
            return self._files[self._by_inode[key]]
        entry = _File(path, handle, key)
        with self._lock:
            self._by_inode[key] = len(self._files)
            self._files.append(entry)
        return entry

    def _discover(self) -> None:
        """Open files that appeared since the last look (a rotation made a new active file)."""
        try:
            named = self._named()
            paths = log_files(named)
        except FileNotFoundError:
            return  # the active file is being replaced right now: next time
        self._active = {p.resolve() for p in named if p.exists()}
        new = []
        for path in paths:
            try:
                st = path.stat()
            except OSError:
                continue
            known = self._by_inode.get((st.st_dev, st.st_ino))
            if known is None:
                new.append(path)
            else:
                self._files[known].path = path  # renamed by a rotation: same rows, new name
        if new:
            try:
                ordered = order_files(new)
            except (
                AuditError,
                OSError,
            ) as e:  # a foreign file appeared beside the log: not indexed, said in the status
                note = f"not indexed: {e}"
                if note not in self._notes:
                    self._notes.append(note)
                return
            for path in ordered:
                self._open(path)

    def refresh(self, budget_bytes: int = 64 << 20) -> int:
        """Index what the files gained since the last call (about ``budget_bytes`` at most); the rows added.

        Files are read oldest first, each to its end before the next, so rows are in log order.
        """
        self._discover()
        before = self._cols.rows
        spent = 0
        for index, entry in enumerate(self._files):
            at_end = False
            while spent < budget_bytes:
                entry.handle.seek(entry.offset)
                chunk = entry.handle.read(READ_CHUNK)
                if not chunk:
                    at_end = True
                    break
                spent += len(chunk)
                before_offset = entry.offset
                self._index_chunk(index, entry, chunk)
                if entry.offset == before_offset:  # only the start of a line being written: wait for the rest
                    at_end = True
                    break
            newest = entry is self._files[-1] or entry.path.resolve() in self._active
            tail = os.fstat(entry.handle.fileno()).st_size - entry.offset
            if at_end and not newest and tail > 0 and not entry.torn and not entry.skipping:
                entry.torn = True  # an older file never gets the rest of its last line
                self._bad_row(index, entry, entry.offset, "file cut mid-record: the last line is torn")
            if not at_end:
                break  # rows stay in log order: the next file waits until this one is read to its end
        if self._cols.rows != before:
            self.generation += 1
        return self._cols.rows - before

    def _index_chunk(self, index: int, entry: _File, chunk: bytes) -> None:
        """Index the complete lines of ``chunk`` (read at ``entry.offset``); an unfinished last line waits."""
        start = 0
        batch: list[bytes] = []
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._lines(index, entry, batch)
                rest = len(chunk) - start
                if entry.skipping or rest > MAX_LINE:  # no newline within MAX_LINE: a bad row, skipped to its end
                    if not entry.skipping:
                        self._bad_row(index, entry, entry.offset, f"line longer than {MAX_LINE:,} bytes")
                        entry.skipping = True
                    entry.offset += rest
                return
            line = chunk[start : end + 1]
            start = end + 1
            if entry.skipping or len(line) > MAX_LINE:
                self._lines(index, entry, batch)
                batch = []
                if entry.skipping:  # the end of an over-long line: its row is already there
                    entry.skipping = False
                else:
                    self._bad_row(index, entry, entry.offset, f"line longer than {MAX_LINE:,} bytes")
                entry.offset += len(line)
                continue
            batch.append(line)
            if len(batch) == CHUNK_LINES:
                self._lines(index, entry, batch)
                batch = []

    def _lines(self, index: int, entry: _File, lines: list[bytes]) -> None:
        """Rows for complete lines starting at ``entry.offset``: a chunk at once when all of it is intact.

        verify's fast path (verifier/audit/fast_read.py, msgspec) checks a run
        of lines in one call -- canonical, typed, in range, hashes sound and
        chained from the first line's own ``prev``; a run it does not vouch
        for is checked line by line with the reference (``parse_line``,
        ``schema_problem``, ``record_hash_ok``), which names each bad line.
        """
        if not lines:
            return
        first = parse_line(lines[0])
        if first is not None and first.get("v") == SCHEMA_V2:
            self._lines_v2(index, entry, lines)
            return
        checked = None
        if first is not None and type(first.get("seq")) is int and type(first.get("prev")) is str:
            checked = fast_chunk(lines, first["seq"], first["prev"])
        if checked is None:
            self._each_line(index, entry, lines)
            return
        self._rows(index, entry, lines, checked)

    def _lines_v2(self, index: int, entry: _File, lines: list[bytes]) -> None:
        """A schema v2 chunk: each run of record lines between checkpoints decoded at once (``fast_batch``: the
        compiled line check, then msgspec), a checkpoint line by the reference (one per batch); a run the fast
        path does not vouch for, line by line.  As for v1, the chain is ``verify``'s: a row is its record's."""
        run: list[bytes] = []
        for line in lines:
            if line.startswith(CHECKPOINT_START):
                self._run_v2(index, entry, run)
                run = []
                self._each_line(index, entry, [line])
            else:
                run.append(line)
        self._run_v2(index, entry, run)

    def _run_v2(self, index: int, entry: _File, run: list[bytes]) -> None:
        if not run:
            return
        first = parse_line(run[0])
        checked = None
        if first is not None and type(first.get("seq")) is int:
            checked = fast_batch(b"".join(run), len(run), first["seq"])
        if checked is None:
            self._each_line(index, entry, run)
        else:
            self._rows(index, entry, run, checked)

    def _each_line(self, index: int, entry: _File, lines: list[bytes]) -> None:
        for line in lines:
            self._line(index, entry, line)
            entry.offset += len(line)

    def _rows(self, index: int, entry: _File, lines: list[bytes], checked: list[Any]) -> None:
        """Rows for ``lines``, whose records the fast path decoded as ``checked``, as whole columns."""
        lengths = [len(line) for line in lines]
        m = len(lines)
        base = entry.seq_base = checked[0].seq if entry.seq_base is None else entry.seq_base
        tenants = []
        for r in checked:
            tenant_id = self._tenants.id(f"{r.tenant_name}({r.tenant})")
            if tenant_id == len(self._tenant_keys):
                self._tenant_keys.append((r.tenant, r.tenant_name))
            tenants.append(tenant_id)
        columns: dict[str, Iterable[int]] = {
            "offset": np.cumsum([entry.offset, *lengths[:-1]]).tolist(),
            "seq": [r.seq - base for r in checked],
            "wall": [self._wall_ns(r.wall) for r in checked],
            "reason": [self._reasons.id(r.reason) for r in checked],
            "tenant": tenants,
            "queue": [self._queues.id(queue_label({"nic": r.nic, "queue": r.queue, "kind": r.kind})) for r in checked],
            "kind": [self._kinds.id(r.kind) for r in checked],
        }
        first_line = entry.lines + 1
        entry.lines += m
        entry.offset += sum(lengths)
        with self._lock:
            self._runs.add(self._cols.rows, index, first_line, m)
            self._cols.append({name: np.fromiter(values, np.int64, count=m) for name, values in columns.items()})

    # -- rows ----------------------------------------------------------------------------
    def _wall_ns(self, wall: str) -> int:
        second, cached = self._wall_cache  # records come in time order: one strptime per second of log
        if wall[:19] == second:
            return cached + int((wall[20:-1] or "0").ljust(9, "0"))
        ns = parse_wall(wall)
        self._wall_cache = (wall[:19], ns - ns % 1_000_000_000)
        return ns

    def _line(self, index: int, entry: _File, line: bytes) -> None:
        record = parse_line(line)
        v2 = record is not None and record.get("v") == SCHEMA_V2
        if v2 and record is not None and tuple(record) == CHECKPOINT_FIELDS:
            entry.lines += 1  # a v2 checkpoint: no row of its own (the chain view checks its hash)
            return
        if record is None:
            problem: str | None = "record damaged: not canonical JSON"
        elif v2:  # a v2 record has no hash of its own: its batch's checkpoint is checked by verify
            problem = schema_problem(record, SCHEMA_V2)
        else:
            problem = schema_problem(record) or (None if record_hash_ok(record) else "record altered: hash mismatch")
        if record is None or problem is not None:
            self._bad_row(index, entry, entry.offset, problem or "bad record")
            return
        r = record
        self._good_row(
            index, entry, r["seq"], r["wall"], r["reason"], r["tenant"], r["tenant_name"], r["nic"],
            r["queue"], r["kind"],
        )  # fmt: skip

    def _good_row(
        self, index: int, entry: _File, seq: int, wall: str, reason: str, tenant: int,
        tenant_name: str, nic: str | None, queue: int | None, kind: str,
    ) -> None:  # fmt: skip
        tenant_id = self._tenants.id(f"{tenant_name}({tenant})")
        if tenant_id == len(self._tenant_keys):
            self._tenant_keys.append((tenant, tenant_name))
        if entry.seq_base is None:
            entry.seq_base = seq
        self._append(
            index,
            entry,
            entry.offset,
            seq=seq - entry.seq_base,
            wall=self._wall_ns(wall),
            reason=self._reasons.id(reason),
            tenant=tenant_id,
            queue=self._queues.id(queue_label({"nic": nic, "queue": queue, "kind": kind})),
            kind=self._kinds.id(kind),
        )

    def _bad_row(self, index: int, entry: _File, offset: int, problem: str) -> None:
        self._bad += 1
        problem_id = self._problems.id(problem)
        self._append(index, entry, offset, seq=0, wall=0, reason=problem_id, tenant=0, queue=0, kind=BAD_KIND)

    def _append(self, index: int, entry: _File, offset: int, **values: int) -> None:
        entry.lines += 1
        with self._lock:
            self._runs.add(self._cols.rows, index, entry.lines, 1)
            row = {"offset": offset, **values}
            self._cols.append({name: np.array([value], np.int64) for name, value in row.items()})

    # -- reading -------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self._lock:
            n = self._cols.rows
            return Snapshot(
                n,
                self._cols.views(n, self._runs.view()),
                list(self._reasons.names),
                list(self._tenants.names),
                list(self._tenant_keys),
                list(self._queues.names),
                list(self._kinds.names),
                list(self._problems.names),
                np.array([f.seq_base or 0 for f in self._files], np.int64),
                [f.key for f in self._files],
            )

    def nbytes(self) -> int:
        """Bytes the index holds for the rows indexed, columns and runs (unwritten tails of blocks are not resident)."""
        with self._lock:
            return self._cols.nbytes() + 24 * self._runs.count

    def dtypes(self) -> dict[str, np.dtype[Any]]:
        """Each column's type now (they widen when a log's values need it)."""
        with self._lock:
            return dict(self._cols.dtypes)

    def progress(self) -> Progress:
        with self._lock:
            pending = 0
            if self._files:
                last = self._files[-1]
                try:
                    pending = max(0, os.fstat(last.handle.fileno()).st_size - last.offset)
                except OSError:
                    pending = 0
            return Progress(self._cols.rows, self._bad, pending, [str(f.path) for f in self._files], list(self._notes))

    def read(self, row: int) -> Row:
        """Row ``row`` in full, read back from its file (``IndexError`` when there is no such row)."""
        with self._lock:
            if not 0 <= row < self._cols.rows:
                raise IndexError(row)
            c = self._cols
            file, line = self._runs.view().at(row)
            entry = self._files[file]
            offset, good = c.get(row, "offset"), c.get(row, "kind") != BAD_KIND
            problem = None if good else self._problems.names[c.get(row, "reason")]
        where = entry.path.name
        if good:
            data = _read_line(entry.handle.fileno(), offset)
            record = None if data is None else parse_line(data)
            if record is not None:
                return Row(row, where, line, "ok", None, record, None)
            problem = "record changed on disk since it was indexed"
        data = os.pread(entry.handle.fileno(), RAW_SHOWN, offset)
        data = data[: data.find(b"\n") + 1] if b"\n" in data else data
        raw = data[:RAW_SHOWN].decode("utf-8", "replace")
        return Row(row, where, line, "bad", problem, None, raw)

    def rows(self, indices: Iterable[int]) -> Iterator[Row]:
        for i in indices:
            yield self.read(int(i))

    def close(self) -> None:
        with self._lock:
            for entry in self._files:
                entry.handle.close()
