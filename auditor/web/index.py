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

from verifier.audit.log import AuditError, parse_line, record_hash_ok
from verifier.audit.read import (
    CHUNK_LINES,
    PathLike,
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
#: Row status: a canonical v1 record with a sound hash, or not.
GOOD, BAD = 0, 1
#: The label of a bad row's reason, tenant and queue (no reason code has lower case letters or spaces).
BAD_LABEL = "(bad record)"


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
    offset: int = 0  # bytes indexed (up to the last complete line)
    lines: int = 0  # lines indexed
    skipping: bool = False  # inside a line longer than MAX_LINE
    torn: bool = False  # the file ended mid-line and is no longer the one being written


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

_COLUMNS = {
    "file": np.int32,
    "offset": np.int64,
    "length": np.int64,
    "line": np.int64,
    "seq": np.int64,
    "wall": np.int64,
    "status": np.int8,
    "reason": np.int32,
    "tenant": np.int32,
    "queue": np.int32,
    "kind": np.int32,
    "problem": np.int32,  # a bad row's problem (interned text), -1 for a good row
}


@dataclass
class Snapshot:
    """The columns up to ``rows`` (views: the index only appends, so a snapshot never changes under a reader)."""

    rows: int
    columns: dict[str, np.ndarray[Any, Any]]
    reasons: list[str]
    tenants: list[str]
    tenant_keys: list[tuple[int, str]]
    queues: list[str]
    kinds: list[str]


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
        self._cols = {name: np.zeros(1024, dtype) for name, dtype in _COLUMNS.items()}
        self._rows = 0
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
        entry = _File(path, handle)
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
        before = self._rows
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
                self._bad_row(index, entry, entry.offset, tail, "file cut mid-record: the last line is torn")
            if not at_end:
                break  # rows stay in log order: the next file waits until this one is read to its end
        if self._rows != before:
            self.generation += 1
        return self._rows - before

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
                        self._bad_row(index, entry, entry.offset, rest, f"line longer than {MAX_LINE:,} bytes")
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
                    self._grow_last(len(line))
                else:
                    self._bad_row(index, entry, entry.offset, len(line), f"line longer than {MAX_LINE:,} bytes")
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
        checked = None
        if first is not None and type(first.get("seq")) is int and type(first.get("prev")) is str:
            checked = fast_chunk(lines, first["seq"], first["prev"])
        if checked is None:
            for line in lines:
                self._line(index, entry, line)
                entry.offset += len(line)
            return
        lengths = [len(line) for line in lines]
        m = len(lines)
        tenants = []
        for r in checked:
            tenant_id = self._tenants.id(f"{r.tenant_name}({r.tenant})")
            if tenant_id == len(self._tenant_keys):
                self._tenant_keys.append((r.tenant, r.tenant_name))
            tenants.append(tenant_id)
        columns: dict[str, Iterable[int]] = {
            "file": [index] * m,
            "offset": np.cumsum([entry.offset, *lengths[:-1]]).tolist(),
            "length": lengths,
            "line": range(entry.lines + 1, entry.lines + 1 + m),
            "status": [GOOD] * m,
            "seq": [r.seq for r in checked],
            "wall": [self._wall_ns(r.wall) for r in checked],
            "reason": [self._reasons.id(r.reason) for r in checked],
            "tenant": tenants,
            "queue": [self._queues.id(queue_label({"nic": r.nic, "queue": r.queue, "kind": r.kind})) for r in checked],
            "kind": [self._kinds.id(r.kind) for r in checked],
            "problem": [-1] * m,
        }
        entry.lines += m
        entry.offset += sum(lengths)
        with self._lock:
            n = self._rows
            while n + m > len(self._cols["file"]):
                self._cols = {k: np.concatenate([c, np.zeros_like(c)]) for k, c in self._cols.items()}
            for name, values in columns.items():
                self._cols[name][n : n + m] = np.fromiter(values, dtype=_COLUMNS[name], count=m)
            self._rows = n + m

    def _grow_last(self, extra: int) -> None:
        with self._lock:
            self._cols["length"][self._rows - 1] += extra

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
        if record is None:
            problem: str | None = "record damaged: not canonical JSON"
        else:
            problem = schema_problem(record) or (None if record_hash_ok(record) else "record altered: hash mismatch")
        if record is None or problem is not None:
            self._bad_row(index, entry, entry.offset, len(line), problem or "bad record")
            return
        r = record
        self._good_row(
            index, entry, len(line), r["seq"], r["wall"], r["reason"], r["tenant"], r["tenant_name"], r["nic"],
            r["queue"], r["kind"],
        )  # fmt: skip

    def _good_row(
        self, index: int, entry: _File, length: int, seq: int, wall: str, reason: str, tenant: int,
        tenant_name: str, nic: str | None, queue: int | None, kind: str,
    ) -> None:  # fmt: skip
        tenant_id = self._tenants.id(f"{tenant_name}({tenant})")
        if tenant_id == len(self._tenant_keys):
            self._tenant_keys.append((tenant, tenant_name))
        self._append(
            index,
            entry,
            entry.offset,
            length,
            GOOD,
            seq=seq,
            wall=self._wall_ns(wall),
            reason=self._reasons.id(reason),
            tenant=tenant_id,
            queue=self._queues.id(queue_label({"nic": nic, "queue": queue, "kind": kind})),
            kind=self._kinds.id(kind),
            problem=-1,
        )

    def _bad_row(self, index: int, entry: _File, offset: int, length: int, problem: str) -> None:
        self._bad += 1
        problem_id = self._problems.id(problem)
        self._append(
            index,
            entry,
            offset,
            length,
            BAD,
            seq=-1,
            wall=-1,
            reason=-1,
            tenant=-1,
            queue=-1,
            kind=-1,
            problem=problem_id,
        )

    def _append(self, index: int, entry: _File, offset: int, length: int, status: int, **values: int) -> None:
        entry.lines += 1
        with self._lock:
            n = self._rows
            if n == len(self._cols["file"]):
                self._cols = {k: np.concatenate([c, np.zeros_like(c)]) for k, c in self._cols.items()}
            cols = self._cols
            cols["file"][n] = index
            cols["offset"][n] = offset
            cols["length"][n] = length
            cols["line"][n] = entry.lines
            cols["status"][n] = status
            for name, value in values.items():
                cols[name][n] = value
            self._rows = n + 1

    # -- reading -------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self._lock:
            n = self._rows
            return Snapshot(
                n,
                {k: c[:n] for k, c in self._cols.items()},
                list(self._reasons.names),
                list(self._tenants.names),
                list(self._tenant_keys),
                list(self._queues.names),
                list(self._kinds.names),
            )

    def progress(self) -> Progress:
        with self._lock:
            pending = 0
            if self._files:
                last = self._files[-1]
                try:
                    pending = max(0, os.fstat(last.handle.fileno()).st_size - last.offset)
                except OSError:
                    pending = 0
            return Progress(self._rows, self._bad, pending, [str(f.path) for f in self._files], list(self._notes))

    def read(self, row: int) -> Row:
        """Row ``row`` in full, read back from its file (``IndexError`` when there is no such row)."""
        with self._lock:
            if not 0 <= row < self._rows:
                raise IndexError(row)
            c = self._cols
            entry = self._files[int(c["file"][row])]
            offset, length, line = int(c["offset"][row]), int(c["length"][row]), int(c["line"][row])
            good = int(c["status"][row]) == GOOD
            problem_id = int(c["problem"][row])
            problem = self._problems.names[problem_id] if problem_id >= 0 else None
            data = os.pread(entry.handle.fileno(), min(length, RAW_SHOWN if not good else length), offset)
        where = entry.path.name
        if good:
            record = parse_line(data)
            if record is not None:
                return Row(row, where, line, "ok", None, record, None)
            problem = "record changed on disk since it was indexed"
        raw = data[:RAW_SHOWN].decode("utf-8", "replace")
        return Row(row, where, line, "bad", problem, None, raw)

    def rows(self, indices: Iterable[int]) -> Iterator[Row]:
        for i in indices:
            yield self.read(int(i))

    def close(self) -> None:
        with self._lock:
            for entry in self._files:
                entry.handle.close()
