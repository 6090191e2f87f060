"""Follow a file-backed audit log as it grows: the records appended since the last look.

Why: a campaign writing its audit log to disk used to judge that log only at
the end (``AuditWatch.finish``), so a wrong reason or a lost record was found
late and by no batch, and had no reproducer.  After each step the campaign's
``AuditWatch`` asks this follower for the step's records (the sink has
committed them: a doorbell commits its own) and matches and judges them as
it does an in-memory sink's.  A line that is not JSON is dropped here, so the
watch reports its record lost; the canonical form and the chain are checked
once, at the end, by ``verify``.  A schema v2 log's checkpoint lines
(docs/audit-log.md) are the chain's, not records: they are left out here.

Two ways to take the records.  ``follower()`` gives one dict per record (the
step's lines parsed as one JSON array: one C call).  ``follower.items()``
gives the same records with each run of consecutive descriptor records of
one queue as one ``LoggedSpan`` of columns (fuzz/oracle/logged.py), parsed
by msgspec into a narrow struct of the fields the oracle reads: what
costs per-record Python as dicts (grouping runs, building columns) is then
done once per chunk.  A chunk that is not plain (a damaged line, a field of
an odd type, a descriptor record that names no slot) is taken as dicts,
exactly as ``follower()`` takes it.

The end check needs to know that the file on disk holds exactly the records
followed (so it need not re-read them one by one): every byte read is hashed
per file (SHA-256), and ``holds(files)`` re-hashes the files from where the
follower began reading each and compares.

A rotation (the writer renames the file to ``PATH.N`` and opens a new
``PATH``) is followed: the old file is read to its end through the handle
already open, then every file rotated after it (``PATH.N+1``, ... : a step
that writes more than ``rotate_bytes`` rotates several times between two
reads), then the new ``PATH`` from its start.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import numpy as np

from fuzz import log_columns
from fuzz.oracle import audit
from fuzz.oracle.logged import LoggedSpan
from fuzz.oracle.reasons import EVENT_PREDICATES
from ring.descriptors import TXD_CMD_EOP
from verifier.audit.log import read_pruned, rotated_siblings

#: Bytes re-read at a time by ``holds``.
_READ = 1 << 20


@dataclass
class _Segment:
    """The bytes read from one file (by inode): from ``start``, ``size`` of them, hashed into ``digest``."""

    device: int
    inode: int
    start: int
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


class LogFollower:
    """The records appended to the log at ``path`` since the last call (the first call: since construction)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: BinaryIO | None = None
        self._rest = b""
        self._segments: list[_Segment] = []
        #: the highest rotation number (``PATH.N``) that existed when the file open here was opened at ``PATH``:
        #: the files rotated since are the ones numbered above it
        self._base = 0
        self._open(at_end=True)

    def _open(self, at_end: bool) -> None:
        siblings = rotated_siblings(self.path)
        self._base = siblings[-1][0] if siblings else 0
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            self._file = None
            return
        if at_end:
            handle.seek(0, os.SEEK_END)
        self._file = handle
        self._rest = b""
        st = os.fstat(handle.fileno())
        self._segments.append(_Segment(st.st_dev, st.st_ino, handle.tell()))

    def _rotated(self) -> bool:
        """The writer opened a new file at ``path`` since ours was opened."""
        if self._file is None:
            return self.path.exists()
        try:
            return os.stat(self.path).st_ino != os.fstat(self._file.fileno()).st_ino
        except FileNotFoundError:
            return False

    def _rotated_since(self) -> list[Path]:
        """The files rotated after the one open here, oldest first: those numbered above ``_base`` but that one
        (already read through its handle).  The log's disk budget may have deleted some (``pruned_through``)."""
        mine = os.fstat(self._file.fileno()) if self._file is not None else None
        later = []
        for number, path in rotated_siblings(self.path):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            if number > self._base and (mine is None or (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino)):
                later.append(path)
        return later

    def pruned_through(self) -> int:
        """The last seq the log's disk budget deleted (its prune marker), -1 when none was: records the follower
        may never have read, as a bounded store evicts its oldest."""
        marker = read_pruned(self.path)
        return -1 if marker is None else marker[0]

    def _read_whole(self, path: Path) -> bytes:
        """Every byte of a rotated file, hashed as a segment of its own for ``holds``."""
        try:
            with path.open("rb") as handle:
                st = os.fstat(handle.fileno())
                whole = handle.read()
        except FileNotFoundError:  # pruned meanwhile: its records are lost to the follower, as to any reader
            return b""
        segment = _Segment(st.st_dev, st.st_ino, 0, len(whole))
        segment.digest.update(whole)
        self._segments.append(segment)
        return whole

    def _chunk(self) -> bytes:
        """The complete lines appended since the last call, newline-ended (an incomplete last line waits for the
        rest of it)."""
        data = b""
        while True:
            if self._file is not None:
                new = self._file.read()
                segment = self._segments[-1]
                segment.digest.update(new)
                segment.size += len(new)
                data += self._rest + new
                self._rest = b""
            if not self._rotated():
                break
            later = self._rotated_since()
            if self._file is not None:
                self._file.close()
            for path in later:  # complete files: the writer renamed each away before it opened the next
                data += self._read_whole(path)
            self._open(at_end=False)
        cut = data.rfind(b"\n") + 1
        self._rest = data[cut:]
        return data[:cut]

    def __call__(self) -> list[dict[str, Any]]:
        """The new records, one dict each."""
        return _dicts(self._chunk().split(b"\n")[:-1])

    def items(self) -> list[dict[str, Any] | LoggedSpan]:
        """The new records: runs of plain descriptor records as ``LoggedSpan`` columns, the others as dicts."""
        chunk = self._chunk()
        if not chunk:
            return []
        spans = logged_chunk(chunk)
        return _dicts(chunk.split(b"\n")[:-1]) if spans is None else spans  # type: ignore[return-value]

    def holds(self, files: Iterable[Path]) -> bool:
        """Whether ``files`` hold, from where this follower began reading each of the files it read, exactly the
        bytes it read and no more, and no line it read waits for its end.  False when a file it read is gone."""
        if self._rest:
            return False
        by_inode: dict[tuple[int, int], Path] = {}
        for file in files:
            try:
                st = os.stat(file)
            except OSError:
                continue
            by_inode[(st.st_dev, st.st_ino)] = file
        for segment in self._segments:
            path = by_inode.get((segment.device, segment.inode))
            if path is None:
                return False
            digest = hashlib.sha256()
            size = 0
            try:
                with path.open("rb") as handle:
                    handle.seek(segment.start)
                    while chunk := handle.read(_READ):
                        digest.update(chunk)
                        size += len(chunk)
            except OSError:
                return False
            if size != segment.size or digest.digest() != segment.digest.digest():
                return False
        return True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _dicts(lines: list[bytes]) -> list[dict[str, Any]]:
    if not lines:
        return []
    try:
        records = json.loads(b"[" + b",".join(lines) + b"]")
    except (ValueError, RecursionError):  # a damaged line: take the others one by one
        records = [_loads(line) for line in lines]
    # schema v2: a batch's checkpoint line is the chain's, not a record (verify checks it at the end)
    return [r for r in records if isinstance(r, dict) and "checkpoint" not in r]


def _loads(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


# -- a chunk of lines as columns ------------------------------------------------------------------------------------
class _Desc(msgspec.Struct, gc=False):
    """The descriptor fields a record states (``desc``) that the reason predicates read."""

    addr: int
    length: int = 0
    cmd: int = 0
    cso: int = 0
    css: int = 0


class _Detail(msgspec.Struct, gc=False):
    """The detail fields the reason predicates read (absent: their defaults; null: not plain)."""

    first_bad_byte: str | msgspec.UnsetType = msgspec.UNSET
    owner: str = ""
    checked_bytes: int = -1
    format: str | None = None


class _Line(msgspec.Struct, gc=False):
    """What the oracle reads of one line; any other field is skipped (and any field of another type fails the
    chunk over to the dicts)."""

    checkpoint: Any = msgspec.UNSET
    seq: int | None = None
    nic: str | None = None
    kind: str | None = None
    queue: int | None = None
    ring_index: int | None = None
    desc_hex: str | None = None
    desc: _Desc | None = None
    reason: str | None = None
    detail: _Detail | None = None


_DECODER = msgspec.json.Decoder(list[_Line])
_PLAIN_KINDS = ("tx", "rx")


class _Lines:
    """The lines of a newline-ended chunk, found by one vectorised scan for its newlines."""

    def __init__(self, chunk: bytes) -> None:
        self.chunk = chunk
        self.ends: list[int] = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == _NEWLINE).tolist()

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> bytes:
        return self.chunk[self.ends[i - 1] + 1 if i else 0 : self.ends[i]]


def logged_chunk(chunk: bytes) -> list[dict[str, Any] | LoggedSpan] | None:
    """A newline-ended chunk of an audit log's lines as records: each run of consecutive plain descriptor records
    of one queue as a ``LoggedSpan``, any other record as its dict, checkpoints left out.

    None when the chunk is not plain (a line that is not JSON or not one value, a field of an unexpected type, a
    descriptor record without a reason, slot or ``desc_hex``): the caller takes it as dicts.  Runs are cut as
    fuzz/oracle/audit.py ``_runs`` cuts them (another queue, a seq that does not follow, ``audit.LOGGED_RUN``).
    """
    columns = log_columns.spans(chunk)  # the compiled reader, when it is sure of the chunk
    if columns is not None:
        return columns
    try:  # the lines as one JSON array: each newline becomes a comma
        parsed = _DECODER.decode(b"[" + chunk[:-1].replace(b"\n", b",") + b"]")
    except (msgspec.DecodeError, RecursionError):
        return None
    lines = _Lines(chunk)
    if len(parsed) != len(lines):
        return None  # a line that holds more than one value: record i is no longer line i
    out: list[dict[str, Any] | LoggedSpan] = []
    run: list[_Line] = []
    first = 0  # the line of the run's first record
    key: tuple[Any, Any, Any] = (None, None, None)
    follows = -2  # the seq the run's next record must have
    unset, plain_kinds, events = msgspec.UNSET, _PLAIN_KINDS, EVENT_PREDICATES
    for i, r in enumerate(parsed):
        if r.checkpoint is not unset:
            continue
        if r.desc is not None and r.kind in plain_kinds and r.reason not in events:
            detail = r.detail
            if detail is None or detail.format != "virtq":  # virtq: judged by fuzz/oracle/virtq.py, not in a run
                if not r.reason or r.desc_hex is None or r.ring_index is None or r.nic is None or r.queue is None:
                    return None  # the reference path says what is wrong with it (or judges it in its run)
                if run and (
                    r.seq != follows or (r.nic, r.kind, r.queue) != key or (len(run) >= audit.LOGGED_RUN and _full(run))
                ):
                    if not _add_span(out, run, lines[first]):
                        return None
                    run = []
                if not run:
                    key, first = (r.nic, r.kind, r.queue), i
                    if r.seq is None:
                        return None
                follows = r.seq + 1  # type: ignore[operator]
                run.append(r)
                continue
        if run:
            if not _add_span(out, run, lines[first]):
                return None
            run = []
        record = _loads(lines[i])
        if not isinstance(record, dict):
            return None
        out.append(record)
    if run and not _add_span(out, run, lines[first]):
        return None
    return out


def _full(run: list[_Line]) -> bool:
    """fuzz/oracle/audit.py ``_full`` on parsed lines: cut at ``LOGGED_RUN`` after a packet's end."""
    if len(run) < audit.LOGGED_RUN:
        return False
    last = run[-1]
    assert last.desc is not None
    return bool(last.desc.cmd & TXD_CMD_EOP) or last.kind != "tx" or len(run) >= 2 * audit.LOGGED_RUN


def _add_span(out: list[dict[str, Any] | LoggedSpan], run: list[_Line], head_line: bytes) -> bool:
    """Append ``run`` as a ``LoggedSpan``; False when it cannot be one (the caller falls back to the dicts)."""
    span = _span(run, head_line)
    if span is not None:
        out.append(span)
    return span is not None


def _span(run: list[_Line], head_line: bytes) -> LoggedSpan | None:
    """One run as columns, built as ``AuditWatch._run_rows`` builds them from the same records as dicts."""
    first = run[0]
    head = _loads(head_line)  # the first record's whole detail goes with the run
    if not isinstance(head, dict) or head.get("seq") != first.seq:
        return None
    descs: list[_Desc] = [r.desc for r in run]  # type: ignore[misc]
    details = [r.detail or _NO_DETAIL for r in run]
    kind = str(first.kind)
    codes_of: dict[str | None, int] = {}
    unset = msgspec.UNSET
    try:
        addr = np.array([d.addr for d in descs], dtype=np.uint64)
        cmd = cso = css = None
        if kind == "rx":
            lengths = np.array([d.checked_bytes for d in details], dtype=np.int64)
        else:
            lengths = np.array([d.length for d in descs], dtype=np.int64)
            cmd = np.array([d.cmd for d in descs], dtype=np.uint8)
            cso = np.array([d.cso for d in descs], dtype=np.int64)
            css = np.array([d.css for d in descs], dtype=np.int64)
        # first_bad_byte as its 64 bits (none: all ones, -1), read as int64 (``_signed_bad_byte``)
        bad = [_ALL_ONES if (b := d.first_bad_byte) is unset else int(b, 0) for d in details]
        bad_byte = np.array(bad, dtype=np.uint64).view(np.int64)
        reasons = [r.reason for r in run]
        codes_of = {name: code for code, name in enumerate(dict.fromkeys(reasons))}  # in order of first use
        codes = np.array(list(map(codes_of.__getitem__, reasons)), dtype=np.uint8)
        ring_index = np.array([r.ring_index for r in run], dtype=np.int64)
    except (ValueError, OverflowError, TypeError):  # a value out of its column's range: the reference path says
        return None
    return LoggedSpan(
        seq=int(first.seq),  # type: ignore[arg-type]
        nic=str(first.nic),
        kind=kind,
        queue=first.queue,
        ring_index=ring_index,
        reason=codes,
        names={code: str(name) for name, code in codes_of.items()},
        addr=addr,
        lengths=lengths,
        cmd=cmd,
        cso=cso,
        css=css,
        bad_byte=bad_byte,
        owner=np.array([d.owner for d in details], dtype=np.str_),
        detail=head.get("detail") or {},
    )


_ALL_ONES = (1 << 64) - 1
_NEWLINE = ord("\n")
_NO_DETAIL = _Detail()
