"""Reading and verifying audit logs written by ``verifier/audit/log.py``.

``read_records`` is for looking (summary, show, plot): it checks that each
line is a well-formed record of this schema, not the chain.  ``verify`` is
for trusting: it walks the whole chain across rotated files and names every
record that is not what the writer wrote, each by its file, line and a true
name:

* a changed byte: the line is no longer canonical JSON, or its hash no longer
  matches;
* deleted records: a seq gap that no later line fills (*missing*); a seq
  that turns up after a later one is *out of order*, one seen twice *repeated*;
* a cut file: a last line without its newline -- reported at the torn
  record's seq (last good seq + 1);
* a schema error: missing or extra keys, wrong types, ``v`` other than 1.

What a chain cannot show: records cut off the end exactly at a line
boundary, or a tail rewritten with freshly computed hashes.  An ``Anchor``
(``audit seal``, verifier/audit/seal.py) kept elsewhere rules those out.
A chain whose oldest files the writer's disk budget deleted starts at the
head named by ``<log>.pruned``, and verifies from there.

A schema v2 log (records in batches, a chained checkpoint per batch) is
told by its first line and read and verified by verifier/audit/read_v2.py:
the same results, problems named per batch.

Input that is not an audit log at all (a pcap, random text) raises
``AuditFormatError`` with a one-line message instead of a list of problems.
Files may be given in any order: they are ordered by their first seq.
"""

from __future__ import annotations

import bisect
import calendar
import functools
import hashlib
import itertools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, overload

from verifier.audit import check, runs
from verifier.audit.log import (
    CHECKPOINT_FIELDS,
    FIELDS,
    FIELDS_V2,
    GENESIS,
    KINDS,
    MAGIC,
    MAX_REASON,
    REASON_RE,
    SCHEMA_V2,
    SCHEMA_VERSION,
    AuditError,
    _tail_lines,
    chain_hash,
    parse_line,
    read_pruned,
    rotated_siblings,
)

#: How much of a file is inspected to tell an audit log from anything else.
SNIFF_BYTES = 64 << 10
#: What follows the body of every canonical line: ``,"hash":"<64 hex>"}`` and the newline.
_HASH_TAIL = ',"hash":"' + "0" * 64 + '"}\n'
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DESC_HEX = re.compile(r"^[0-9a-f]{32}$")
_WALL = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(?:Z|\+00:00)$")

PathLike = str | Path
#: Each integer field's range: what the writer can produce (a sequence number and a monotonic clock in 64 bits, a
#: tenant id or -1 for a domain without owner, a queue number, and a ring slot or the 32-bit tail register value a
#: refused doorbell wrote).  A value outside it is damage, whatever its hash says: never shown as a record.
RANGES: dict[str, tuple[int, int]] = {
    "seq": (0, 2**63 - 1),
    "mono_ns": (0, 2**64 - 1),
    "tenant": (-1, 2**32 - 1),
    "queue": (0, 2**32 - 1),
    "ring_index": (0, 2**32 - 1),
}


class AuditFormatError(AuditError):
    """The input is not an audit log of this schema (wrong kind of file)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a log: the seq it concerns, what it is, and ``file:line``."""

    seq: int
    what: str
    where: str

    @property
    def text(self) -> str:
        return f"{self.what} ({self.where})"


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of ``verify``: ``records`` is how many records were verified before any problem.

    ``problem`` and ``first_bad_seq`` are the first of ``problems`` (in file
    and line order; at most ``PROBLEM_LIMIT`` of them, ``more_problems``
    counts the rest); ``first_seq`` is where the kept chain starts (after a
    pruned head, else 0); ``lines`` how many record lines were read (not v2 checkpoints); ``notes`` what
    could not be checked; ``head_seq`` the seq whose hash is ``head`` (the
    highest seq whose hash could be trusted, which in a log that does not
    verify may lie past the first problem; ``first_seq - 1`` with no record).
    """

    ok: bool
    records: int
    first_bad_seq: int | None
    problem: str | None
    head: str = GENESIS
    files: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()
    first_seq: int = 0
    lines: int = 0
    notes: tuple[str, ...] = ()
    more_problems: int = 0
    head_seq: int = -1


def parse_wall(text: str) -> int:
    """Nanoseconds since the epoch from a record's ``wall`` (``...T12:00:00.123456789Z``)."""
    m = _WALL.match(text)
    if m is None:
        raise ValueError(f"not an ISO-8601 UTC time: {text!r}")
    return _epoch_seconds(m.group(1)) * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))


@functools.lru_cache(maxsize=4096)
def _epoch_seconds(text: str) -> int:
    """``calendar.timegm`` of ``YYYY-MM-DDTHH:MM:SS``: a log's records share their second by the thousand."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def _wall_ok(text: object) -> bool:
    """A ``wall`` of the writer's form that names a real instant (month 13 or February 30 do not)."""
    if type(text) is not str or _WALL.match(text) is None:
        return False
    return _second_ok(text[:19])


@functools.lru_cache(maxsize=4096)
def _second_ok(second: str) -> bool:
    """``YYYY-MM-DDTHH:MM:SS`` names a real second since 1970: asked once per second of log, not per batch."""
    try:
        return datetime.strptime(second, "%Y-%m-%dT%H:%M:%S").year >= 1970
    except ValueError:
        return False


def _in_range(record: dict[str, Any]) -> str | None:
    """The first integer field of ``record`` outside ``RANGES`` (None: all in range, or null where allowed)."""
    for name, (low, high) in RANGES.items():
        value = record[name]
        if value is not None and type(value) is int and not low <= value <= high:
            return name
    return None


def _reason_ok(reason: object) -> bool:
    return type(reason) is str and len(reason) <= MAX_REASON and REASON_RE.match(reason) is not None


def schema_problem(record: dict[str, Any], version: int = SCHEMA_VERSION) -> str | None:
    """Why ``record`` is not a record of schema ``version`` (None when it is one): v1 carries ``prev`` and
    ``hash``, v2 does not (its batch's checkpoint does)."""
    if record.get("v") != version or type(record.get("v")) is not int:
        return f"schema: v={record.get('v')!r} is not supported (this reader knows v={version})"
    fields = FIELDS if version == SCHEMA_VERSION else FIELDS_V2
    keys = tuple(record)
    if keys != fields:
        missing = [k for k in fields if k not in record]
        extra = [k for k in keys if k not in fields]
        if missing:
            return f"schema: missing key {missing[0]!r}"
        if extra:
            return f"schema: unexpected key {extra[0]!r}"
        return "schema: keys out of order"

    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    checks: list[tuple[str, bool]] = [
        ("seq", is_int(record["seq"]) and record["seq"] >= 0),
        ("wall", _wall_ok(record["wall"])),
        ("mono_ns", is_int(record["mono_ns"])),
        ("tenant", is_int(record["tenant"])),
        ("tenant_name", isinstance(record["tenant_name"], str)),
        ("nic", record["nic"] is None or isinstance(record["nic"], str)),
        ("queue", record["queue"] is None or is_int(record["queue"])),
        ("kind", record["kind"] in KINDS),
        ("ring_index", record["ring_index"] is None or is_int(record["ring_index"])),
        ("desc_hex", record["desc_hex"] is None or bool(_DESC_HEX.match(str(record["desc_hex"])))),
        ("desc", record["desc"] is None or isinstance(record["desc"], dict)),
        ("reason", _reason_ok(record["reason"])),
        ("detail", isinstance(record["detail"], dict)),
        ("protection", isinstance(record["protection"], str)),
    ]
    if version == SCHEMA_VERSION:
        checks += [
            ("prev", isinstance(record["prev"], str) and bool(_HEX64.match(record["prev"]))),
            ("hash", isinstance(record["hash"], str) and bool(_HEX64.match(record["hash"]))),
        ]
    for name, ok in checks:
        if not ok:
            return f"schema: bad value for {name!r}"
    wide = _in_range(record)
    if wide is not None:
        low, high = RANGES[wide]
        return f"schema: {wide!r} out of range {low}..{high}"
    return None


#: The most records of a v2 log's last batch ``check_appendable`` reads (a writer's batch is at most ``max_pending``).
MAX_CHECKED = 1 << 16


def check_appendable(path: PathLike) -> None:
    """Raise ``AuditError`` when an existing log's last record is well-formed JSON with a sound hash but values
    no writer produces (out of range, wrong type): appending would continue a chain that no reader accepts.

    The writer checks the rest when it opens the file (foreign file, torn last line, altered hash).
    """
    p = Path(path)
    if not p.is_file():
        return
    lines, ends_clean = _tail_lines(p)
    record = parse_line(lines[-1]) if lines and ends_clean else None
    problem = schema_problem(record) if record is not None and tuple(record) == FIELDS else None
    if record is not None and tuple(record) == CHECKPOINT_FIELDS and type(record["records"]) is int:
        batch, _ = _tail_lines(p, min(record["records"], MAX_CHECKED) + 1)  # v2: the last batch's records
        parsed = [parse_line(line) for line in batch[:-1]]
        problems = ["not canonical JSON" if r is None else schema_problem(r, SCHEMA_V2) for r in parsed]
        problem = next((x for x in problems if x is not None), None)
    if problem is not None:
        raise AuditError(
            f"{p}: last record damaged ({problem}); refusing to append: check it with 'nic-sandbox audit verify {p}'"
        )


def _describe_foreign(head: bytes) -> str:
    if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        return "a pcap capture"
    if head[:4] == b"\x0a\x0d\x0d\x0a":
        return "a pcapng capture"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "a PNG image"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    if b"\x00" in head:
        return "binary data"
    return "text that is not audit JSON Lines"


def sniff(path: PathLike) -> None:
    """Raise ``AuditFormatError`` unless ``path`` is empty or looks like an audit log.

    Every canonical record starts with ``{"v":``; a log whose first record
    is damaged still has such a line soon after, and a log cut inside its
    first bytes is a prefix of it: both are damaged logs, not foreign files.
    """
    p = Path(path)
    if p.is_dir():
        raise AuditFormatError(f"{p}: is a directory, not an audit log")
    try:
        with p.open("rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as e:  # a read's error does not name its file (open's does): the one line must
        raise OSError(e.errno, e.strerror, str(p)) if e.filename is None else e from None
    if head.startswith(MAGIC) or MAGIC.startswith(head) or b"\n" + MAGIC in head:  # MAGIC[:n]: cut early
        return
    kind = _describe_foreign(head)
    raise AuditFormatError(f"{p}: not an audit log (JSON Lines records starting with {MAGIC.decode()}), but {kind}")


def log_files(names: Iterable[PathLike]) -> list[Path]:
    """Each named log and its rotated siblings, without duplicates: the files ``audit verify LOG...`` reads.

    A name that matches no file raises ``FileNotFoundError`` naming it.
    """
    found: dict[Path, Path] = {}
    for name in names:
        path = Path(name)
        group = [p for _, p in rotated_siblings(path)]
        if path.exists():
            group.append(path)
        if not group:
            raise FileNotFoundError(f"no such audit log: {name}")
        for p in group:
            found.setdefault(p.resolve(), p)
    return list(found.values())


def _first_seq(path: Path) -> int | None:
    """The seq the file starts at, read from its first parseable line (for ordering files)."""
    with path.open("rb") as f:
        for index, line in enumerate(f):
            record = parse_line(line)
            if record is not None and isinstance(record.get("seq"), int):
                return int(record["seq"]) - index
            if index > 1000:
                break
    return None


def order_files(paths: Iterable[PathLike]) -> list[Path]:
    """The files sniffed and sorted by the seq they start at (empty or unreadable-start files last)."""
    files = [Path(p) for p in paths]
    for p in files:
        sniff(p)
    keyed = [(_first_seq(p), str(p), p) for p in files]
    keyed.sort(key=lambda k: (k[0] is None, k[0] or 0, k[1]))
    return [p for _, _, p in keyed]


def read_records(paths: Iterable[PathLike]) -> Iterator[dict[str, Any]]:
    """The records of one or several files (any order), oldest first.  Not a chain check: see ``verify``.

    Raises ``AuditFormatError`` for a file that is not an audit log and
    ``AuditError`` for a damaged or torn line.  Lines are read in chunks of
    ``CHUNK_LINES``: a chunk that ``verify``'s fast path accepts (each line
    canonical, of the schema, and the chunk a chain from its first record's
    seq and ``prev``) is decoded in one call, which is all of an intact log;
    any other chunk is read line by line by the reference below, which
    decides every error.  A fast chunk accepts only what the reference
    accepts (tests/verifier/test_audit_verify_fast.py), so the records and
    errors are the same either way, several times sooner
    (tests/verifier/test_audit_read_fast.py).
    """
    files = order_files(paths)
    if _schema_of(files) == SCHEMA_V2:
        from verifier.audit import read_v2

        yield from read_v2.read_batches(files, _decode_v2, _schema_v2, msgspec_dict)
        return
    last_seq: int | None = None
    for path, number, chunk in _chunks(files):
        start = parse_line(chunk[0])
        checked = None
        if start is not None and type(start.get("seq")) is int and type(start.get("prev")) is str:
            checked = fast_chunk(chunk, start["seq"], start["prev"])
        if checked is not None:
            for each in checked:
                yield msgspec_dict(each)
            last_seq = checked[-1].seq
            continue
        for index, line in enumerate(chunk):
            record = _reference_record(line, f"{path}:{number + index}", last_seq)
            last_seq = int(record["seq"])
            yield record


def _reference_record(line: bytes, where: str, last_seq: int | None) -> dict[str, Any]:
    """The record of one line, checked by ``parse_line`` and ``schema_problem``; ``AuditError`` naming ``where``."""
    after = f"after seq {last_seq}" if last_seq is not None else "before any good record"
    if not line.endswith(b"\n"):
        raise AuditError(f"{where}: torn record {after} (file cut mid-line); run 'nic-sandbox audit verify'")
    record = parse_line(line)
    if record is None:
        raise AuditError(f"{where}: damaged record {after} (not canonical JSON); run 'nic-sandbox audit verify'")
    problem = schema_problem(record)
    if problem is not None:
        raise AuditError(f"{where}: damaged record {after} ({problem})")
    return record


#: Lines ``verify`` checks at once on its fast path (verifier/audit/fast_read.py): one decode and re-encode per chunk.
CHUNK_LINES = 2048

try:
    from verifier.audit import fast_read as _fast
except ImportError:  # no msgspec: the lab guest runs the project from Debian packages, which do not have it
    _fast = None  # type: ignore[assignment]


def msgspec_dict(record: Any) -> dict[str, Any]:
    """A record of ``fast_chunk`` as ``json.loads`` gives it."""
    return _fast.as_dict(record)


@overload
def fast_chunk(lines: Sequence[bytes], expected: int, prev: str, records: Literal[True] = True) -> list[Any] | None: ...
@overload
def fast_chunk(
    lines: Sequence[bytes], expected: int, prev: str, records: bool, ahead: check.Ahead | None = None
) -> Sequence[Any] | None: ...
def fast_chunk(
    lines: Sequence[bytes], expected: int, prev: str, records: bool = True, ahead: check.Ahead | None = None
) -> Sequence[Any] | None:
    """The chunk's records when all of it verifies (``fast_read.fast_chunk``); None: walk it with the reference.

    ``records=False``: only each record's ``hash`` is needed (``verify`` without ``on_record``): a chunk the
    compiled line check passes (verifier/audit/check.py) is chained here without decoding a record, and its
    hashes are returned instead of its records.  Always None
    without msgspec or the check: every chunk then takes the reference walk, with the same verdict.
    """
    if not records:
        raw = lines.raw if isinstance(lines, runs.Run) else b"".join(lines)
        if ahead is not None:  # checked and chained ahead on another thread, from this seq and prev (``_ahead``)
            canonical, linked = ahead.answer(raw, _wall_ok)
        else:  # a large chunk: its parts on threads
            canonical, linked = check.lines_and_chain(raw, len(lines), expected, prev, _wall_ok)
        if canonical:
            if linked is None:  # no compiled chain walk or no libcrypto: hashlib, a call per line
                return _chained(list(lines), prev)
            return _Hashes(lines) if linked == len(lines) else None
    if _fast is None:
        return None
    return _fast.fast_chunk(list(lines), expected, prev, _wall_ok)


def fast_batch(raw: bytes, n: int, expected: int) -> list[Any] | None:
    """A v2 batch's ``n`` record lines ``raw`` (seqs from ``expected`` on) as records, when every line is its record's
    canonical encoding and of the schema (the compiled check, then msgspec); None: read it line by line with the
    reference.  The batch's chain (its checkpoint's hash) is not checked here: ``verify`` does that."""
    return _decode_v2(raw, n, expected)


#: Where a canonical v1 line (checked: ``...,"prev":"<64>","hash":"<64>"}\n``) holds ``prev`` and ``hash``.
_PREV_AT = slice(-len(_HASH_TAIL) - 1 - 64, -len(_HASH_TAIL) - 1)
_HASH_AT = slice(-len('"}\n') - 64, -len('"}\n'))


def _chained(lines: list[bytes], prev: str) -> list[str] | None:
    """Each line's hash when the chunk chains from ``prev`` (each ``prev`` the hash before, each ``hash``
    ``chain_hash`` of ``prev`` and the line without its hash, inlined here: a call per record costs a tenth of
    its time); None when a link fails."""
    sha256 = hashlib.sha256
    cut = -len(_HASH_TAIL)
    link = prev.encode("ascii")
    hashes = []
    for line in lines:
        if line[_PREV_AT] != link:
            return None
        link = sha256(link + line[:cut] + b"}").hexdigest().encode("ascii")
        if line[_HASH_AT] != link:
            return None
        hashes.append(link)
    return [h.decode("ascii") for h in hashes]


class _Hashes(Sequence[str]):
    """The hashes of a chunk's lines that ``check.chain`` linked, read from a line when asked: ``verify`` asks for
    the last (and an anchor's), not for each."""

    def __init__(self, lines: Sequence[bytes]) -> None:
        self._lines = lines

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [line[_HASH_AT].decode("ascii") for line in self._lines[index]]
        return self._lines[index][_HASH_AT].decode("ascii")


def _hash_of(checked: Any) -> str:
    """A record of ``fast_chunk``'s hash: a ``Line``'s, or the hash itself (``records=False``)."""
    return checked if isinstance(checked, str) else str(checked.hash)


#: v1 chunks ``verify`` checks ahead at once, shared among the threads (``check.ahead``): about 16,000 records, some
#: 13 ms of work a hand-over.
AHEAD_CHUNKS = 8


def _ahead(
    chunks: Iterator[tuple[Path, int, runs.Run]], where: Callable[[], tuple[int, str | None]]
) -> Iterator[tuple[Path, int, runs.Run, check.Ahead | None]]:
    """The chunks, ``AHEAD_CHUNKS`` at a time, each with its line check and chain walk asked ahead on threads
    (``check.ahead``) from where the walk will stand if every chunk before it in the group is good: the seq after
    them and the hash the last line before states.  ``where()`` is the walk's (seq, prev) as the group starts (the
    chunks before it all walked: this generator is read one chunk at a time).  ``verify`` takes an answer only
    when the walk did get there (else it asks again), so the verdicts are the serial ones."""
    while group := list(itertools.islice(chunks, AHEAD_CHUNKS)):
        expected, prev = where()
        asks: list[tuple[bytes | memoryview, int, int, str | None]] = []
        for _, _, run in group:
            asks.append((run.raw, len(run), expected, prev))
            expected += len(run)
            prev = run.last()[_HASH_AT].decode("latin-1") if len(run) else None
        answers = check.ahead(asks)
        yield from ((path, first, run, answer) for (path, first, run), answer in zip(group, answers, strict=True))


def _chunks(files: list[Path]) -> Iterator[tuple[Path, int, runs.Run]]:
    """Every file's lines in runs of up to ``CHUNK_LINES``, as ``(file, number of the first line, lines)``: read in
    blocks, each run's lines split only when asked (verifier/audit/runs.py)."""
    for path in files:
        number = 1
        for run in runs.runs(path, CHUNK_LINES):
            yield path, number, run
            number += len(run)


@dataclass(frozen=True)
class Anchor:
    """A head kept outside the log: the record ``seq`` had hash ``hash`` (``audit seal``, or the prune marker)."""

    seq: int
    hash: str


#: Problems ``verify`` keeps with their text (the rest are counted): a hostile log of shuffled lines cannot grow memory.
PROBLEM_LIMIT = 1000
#: Gaps waiting for a late record; past this the oldest is called missing at once (bounded memory and time).
HOLE_LIMIT = 4096


class _Walk:
    """The state of one ``verify`` pass: where the chain is, what is pending, and every problem found.

    ``pos`` is the seq the next line should hold (one past the highest seen);
    ``holes`` are seqs skipped so far, with the line where the gap was seen:
    a record that turns up later is *out of order*, one that never does is
    *missing* (reported at the gap when the walk ends).  ``known`` maps the
    latest seqs to their hashes, so each record's ``prev`` is checked against
    its predecessor wherever that stood; ``None`` marks a position whose
    hash cannot be trusted (a damaged line), so its successor is not blamed twice.
    """

    KNOWN_LIMIT = 4 * CHUNK_LINES

    def __init__(self, start: Anchor | None) -> None:
        self.pos = 0 if start is None else start.seq + 1
        self.start = start
        self.known: dict[int, str | None] = {} if start is None else {start.seq: start.hash}
        self.holes: list[tuple[int, int, str, tuple[int, int]]] = []  # (first, last, where, order)
        self.problems: list[tuple[tuple[int, int], int, str, str]] = []  # (order, seq, what, where)
        self.clean = 0  # records verified before the first problem
        self.total = 0  # lines read
        self.more = 0  # problems found past PROBLEM_LIMIT

    def prev(self) -> str | None:
        """The hash the next in-order record must name as ``prev`` (None: unknown)."""
        if self.pos == 0:
            return GENESIS
        return self.known.get(self.pos - 1)

    def problem(self, order: tuple[int, int], seq: int, what: str, where: str) -> None:
        if len(self.problems) < PROBLEM_LIMIT:
            self.problems.append((order, seq, what, where))
        else:
            self.more += 1

    def remember(self, seq: int, digest: str | None) -> None:
        self.known[seq] = digest
        if len(self.known) > self.KNOWN_LIMIT:
            newest = sorted(self.known)[-CHUNK_LINES:]
            self.known = {k: self.known[k] for k in newest}

    def add_hole(self, first: int, last: int, where: str, order: tuple[int, int]) -> None:
        """Seqs ``first..last`` skipped at ``where`` (holes stay sorted: ``pos`` only grows)."""
        self.holes.append((first, last, where, order))
        if len(self.holes) > HOLE_LIMIT:
            self._missing(*self.holes.pop(0))

    def take_hole(self, seq: int) -> bool:
        """Remove ``seq`` from the pending holes; True when it was one (the record came late)."""
        i = bisect.bisect_right(self.holes, seq, key=lambda hole: hole[0]) - 1
        if i < 0 or not self.holes[i][0] <= seq <= self.holes[i][1]:
            return False
        first, last, where, order = self.holes[i]
        parts = [(first, seq - 1), (seq + 1, last)]
        self.holes[i : i + 1] = [(a, b, where, order) for a, b in parts if a <= b]
        return True

    def _skip(self, order: tuple[int, int], what: str, where: str) -> None:
        """A line that is no trustworthy record: it takes the next position, whose hash is then unknown."""
        self.problem(order, self.pos, what, where)
        self.remember(self.pos, None)
        self.pos += 1

    def line(self, order: tuple[int, int], where: str, line: bytes) -> dict[str, Any] | None:
        """Check one line; return its record when it is the next record of an intact chain so far."""
        pos = self.pos
        if not line.endswith(b"\n"):
            self._skip(order, "file cut mid-record: the last line is torn", where)
            return None
        record = parse_line(line)
        if record is None:
            self._skip(order, "record damaged: not canonical JSON", where)
            return None
        problem = schema_problem(record)
        if problem is not None:
            self._skip(order, problem, where)
            return None
        seq, stated = record["seq"], record["prev"]
        # The line is canonical and ends with the hash (checked above), so the body is the line without it.
        if chain_hash(stated, line[: -len(_HASH_TAIL)] + b"}") != record["hash"]:
            self._skip(order, "record altered: hash mismatch", where)
            return None
        if seq < pos:
            if self.take_hole(seq):
                self.problem(order, seq, f"records out of order: seq {seq} comes after seq {pos - 1}", where)
            else:
                self.problem(order, seq, f"record repeated: seq {seq} appears a second time", where)
            self._link(order, seq, stated, where)
            return None
        if seq > pos:
            self.add_hole(pos, seq - 1, where, order)
            self.pos = seq + 1
            self._link(order, seq, stated, where)
            self.remember(seq, record["hash"])
            return None
        linked = self._link(order, seq, stated, where)
        self.pos = seq + 1
        self.remember(seq, record["hash"])
        return record if linked else None

    def _link(self, order: tuple[int, int], seq: int, stated: str, where: str) -> bool:
        """Check ``prev`` against the predecessor's hash when that is known; False when it is not the chain's."""
        if seq == 0:
            expected: str | None = GENESIS
        else:
            expected = self.known.get(seq - 1)
        if expected is None or stated == expected:
            return expected is not None or seq == 0
        self.problem(order, seq, "chain broken: prev is not the hash of the record before", where)
        return False

    def finish(self) -> None:
        """Every hole still open is records missing, named at the gap."""
        for hole in self.holes:
            self._missing(*hole)
        self.holes = []

    def _missing(self, a: int, b: int, where: str, order: tuple[int, int]) -> None:
        span = f"seq {a}" if a == b else f"seqs {a}..{b}"
        if a == (0 if self.start is None else self.start.seq + 1):
            what = (
                f"log starts at seq {b + 1}: records {a}..{b} are missing"
                if self.start is None
                else f"records missing after the pruned head (seq {self.start.seq}): {span}"
            )
        else:
            what = f"records missing: expected seq {a}, found {b + 1}" + ("" if a == b else f" ({span} missing)")
        self.problem(order, a, what, where)


def verify(
    paths: Iterable[PathLike],
    on_record: Callable[[dict[str, Any]], object] | None = None,
    *,
    start: Anchor | None = None,
    anchor: Anchor | None = None,
    on_lines: Callable[[int], object] | None = None,
) -> VerifyResult:
    """Walk the hash chain over ``paths`` (any order) and report every record that breaks it.

    ``on_record``: called with each record that verified, in chain order (up
    to the first problem), so a caller that needs the records too (the
    fuzzer's oracle) reads the log once.  Every problem is reported with its
    file, line and a true name: a changed record (not canonical, schema,
    hash mismatch), records missing (a seq gap no later line fills), records
    out of order (a seq that turns up after a later one), a repeated seq, a
    broken link (``prev``), a line cut short.  A fast path checks a chunk of
    lines at once and, on any failure, the chunk is checked line by line: the
    verdict is the same either way.

    ``start``: where the kept chain begins when older records were deleted
    by the writer's disk budget (default: the ``<log>.pruned`` marker next
    to the files, if any; else ``GENESIS`` at seq 0).  ``anchor``: a head
    kept elsewhere (``audit seal``); the log must still hold that record
    with that hash, which catches a cut at a line boundary and a rewritten,
    re-hashed chain up to the anchor.  ``on_lines``: told the lines read so
    far after each chunk (a command's progress on a large log).
    """
    files = order_files(paths)
    names = tuple(str(p) for p in files)
    if start is None:
        start = _pruned_start(files)
    if _schema_of(files) == SCHEMA_V2:
        return _verify_v2(files, on_record, start, anchor, on_lines)
    walk = _Walk(start)
    anchor_seen: str | None = None
    order = {path: index for index, path in enumerate(files)}
    chunks: Iterator[tuple[Path, int, runs.Run, check.Ahead | None]]
    if on_record is None and check.enabled() is not None and check.threads() > 1:  # C calls only: on threads
        chunks = _ahead(_chunks(files), lambda: (walk.pos, walk.prev()))
    else:
        chunks = ((path, first, chunk, None) for path, first, chunk in _chunks(files))
    for path, first, chunk, ahead in chunks:
        if on_lines is not None:
            on_lines(walk.total)
        expected, prev = walk.pos, walk.prev()
        # in order so far (or resynchronised after a problem): a chunk that is all good is checked at once
        if ahead is not None and (ahead.expected, ahead.prev) != (expected, prev):
            ahead = None  # asked for a walk that went otherwise
        checked = fast_chunk(chunk, expected, prev, on_record is not None, ahead) if prev is not None else None
        if checked is not None:
            walk.pos += len(checked)
            walk.remember(walk.pos - 1, _hash_of(checked[-1]))
            walk.total += len(checked)
            if anchor is not None and expected <= anchor.seq < walk.pos:
                anchor_seen = _hash_of(checked[anchor.seq - expected])
            if not walk.problems and not walk.holes:
                walk.clean += len(checked)
                if on_record is not None:
                    for each in checked:
                        on_record(msgspec_dict(each))
            continue
        for number, line in enumerate(chunk, first):
            walk.total += 1
            record = walk.line((order[path], number), f"{path.name}:{number}", line)
            if record is None:
                continue
            if anchor is not None and record["seq"] == anchor.seq:
                anchor_seen = record["hash"]
            if not walk.problems and not walk.holes:
                walk.clean += 1
                if on_record is not None:
                    on_record(record)
    walk.finish()
    trusted = [seq for seq, digest in walk.known.items() if digest is not None]
    head = walk.known[max(trusted)] or GENESIS if trusted else GENESIS
    first_seq = 0 if start is None else start.seq + 1
    head_seq = max(trusted) if trusted else first_seq - 1
    return _conclude(
        names,
        start,
        anchor,
        anchor_seen,
        walk.pos - 1,
        walk.problems,
        walk.clean,
        walk.total,
        walk.more,
        head,
        head_seq,
    )


def _verify_v2(
    files: list[Path],
    on_record: Callable[[dict[str, Any]], object] | None,
    start: Anchor | None,
    anchor: Anchor | None,
    on_lines: Callable[[int], object] | None,
) -> VerifyResult:
    """``verify`` of a v2 log: one hash per batch, a compiled decode of its lines (verifier/audit/read_v2.py)."""
    from verifier.audit import read_v2

    first_seq = 0 if start is None else start.seq + 1
    base = GENESIS if start is None else start.hash
    walk = read_v2.WalkV2(first_seq, base, base, first_seq - 1, limit=PROBLEM_LIMIT)
    walk.anchor_seq = None if anchor is None else anchor.seq
    decode = _decode_v2 if on_record is not None else _check_v2  # records are built only for whoever takes them
    found: Iterator[tuple[read_v2.Batch, read_v2.Precheck | None]]
    if on_record is None and check.enabled() is not None and check.threads() > 1:  # C and hashlib: on threads
        found = read_v2.prechecked(read_v2.batches(files), decode, check.threads(), check.pool, check.MIN_PART_BYTES)
    else:
        found = ((batch, None) for batch in read_v2.batches(files))
    for batch, ahead in found:
        if on_lines is not None:
            on_lines(walk.total)
        read_v2.walk_batch(walk, batch, decode, _schema_v2, on_record, msgspec_dict, ahead)
    head = walk.head  # the last verified checkpoint, else where the kept chain starts (as v1)
    return _conclude(
        tuple(str(p) for p in files),
        start,
        anchor,
        walk.anchor_seen,
        walk.pos - 1,
        walk.problems,
        walk.clean,
        walk.total,
        walk.more,
        head,
        walk.head_seq,
    )


def _decode_v2(raw: bytes | memoryview, n: int, first: int) -> list[Any] | None:
    """A v2 batch's records decoded at once; None: the reference reads it.

    Lines the compiled check passes (verifier/audit/check.py) are only decoded; any others are decoded, encoded
    again and compared by ``fast_read.fast_batch``.
    """
    if _fast is None:
        return None
    raw = bytes(raw)
    if check.lines_ok(raw, n, first, SCHEMA_V2, _wall_ok):
        records = _fast.batch_records(raw, n)
        if records is not None:
            return records
    return _fast.fast_batch(raw, n, first, _wall_ok)


def _check_v2(raw: bytes | memoryview, n: int, first: int) -> list[Any] | None:
    """``verify`` without ``on_record``: a batch whose lines the compiled check passes needs no records (an empty
    list: verified); any other is decoded and compared by ``fast_read.fast_batch`` (as ``_decode_v2`` does once the
    check has failed: not asked twice)."""
    if check.lines_ok(raw, n, first, SCHEMA_V2, _wall_ok):
        return []
    return None if _fast is None else _fast.fast_batch(bytes(raw), n, first, _wall_ok)


def _schema_v2(record: dict[str, Any]) -> str | None:
    return schema_problem(record, SCHEMA_V2)


def _conclude(
    names: tuple[str, ...],
    start: Anchor | None,
    anchor: Anchor | None,
    anchor_seen: str | None,
    last: int,
    found: list[tuple[tuple[int, int], int, str, str]],
    clean: int,
    total: int,
    more: int,
    head: str,
    head_seq: int,
) -> VerifyResult:
    """The anchor checked against what the walk saw, and the result (both schemas)."""
    first_seq = 0 if start is None else start.seq + 1
    notes: list[str] = []
    found = list(found)

    def problem(order: tuple[int, int], seq: int, what: str, where: str) -> None:
        nonlocal more
        if len(found) < PROBLEM_LIMIT:
            found.append((order, seq, what, where))
        else:
            more += 1

    if anchor is not None:
        at_end = (len(names), 0)
        if anchor_seen is None and anchor.seq < first_seq:  # before what the log holds: the pruned head, or none
            if start is not None and anchor.seq == start.seq:
                anchor_seen = start.hash
            elif start is not None:
                notes.append(f"the anchor's record (seq {anchor.seq}) was pruned by the disk budget: not checked")
            else:
                anchor_seen = anchor.hash if anchor.seq == -1 else None  # an empty log's seal holds nothing
        if anchor_seen is None and anchor.seq > last:
            cut = f"log cut: the anchor holds seq {anchor.seq}, the log ends at seq {last}"
            problem(at_end, last + 1, cut, "anchor")
        elif anchor_seen is not None and anchor_seen != anchor.hash:
            rewritten = f"chain rewritten: seq {anchor.seq} does not have the anchored hash"
            problem(at_end, anchor.seq, rewritten, "anchor")
        elif anchor_seen is None and not notes:
            problem(at_end, anchor.seq, f"the anchored record (seq {anchor.seq}) is not in the log", "anchor")
    problems = tuple(Problem(seq, what, where) for _, seq, what, where in sorted(found, key=lambda p: p[0]))
    if not problems:
        return VerifyResult(True, clean, None, None, head, names, (), first_seq, total, tuple(notes), 0, head_seq)
    one = problems[0]
    return VerifyResult(
        False, clean, one.seq, one.text, head, names, problems, first_seq, total, tuple(notes), more, head_seq
    )


def head_hash(paths: Iterable[PathLike]) -> str | None:
    """The hash the log's last line carries: its newest record's (v1) or checkpoint's (v2); None: none readable."""
    for path in reversed(order_files(paths)):
        lines, _ = _tail_lines(path, 1)
        last = parse_line(lines[-1]) if lines else None
        if last is not None and isinstance(last.get("hash"), str):
            return str(last["hash"])
        if lines:
            return None
    return None


def _schema_of(files: list[Path]) -> int:
    """The schema of the log these files make up: its first record's ``v`` (1 unless it says 2)."""
    for path in files:
        with path.open("rb") as f:
            start = f.read(len(MAGIC) + 2)
        if start:
            return SCHEMA_V2 if start == MAGIC + b"2," else SCHEMA_VERSION
    return SCHEMA_VERSION


def _pruned_start(files: list[Path]) -> Anchor | None:
    """The prune marker of the log these files belong to (``LOG.pruned`` beside ``LOG``/``LOG.N``), if any."""
    for path in files:
        base = path.with_suffix("") if path.suffix[1:].isdigit() else path
        found = read_pruned(base)
        if found is not None:
            return Anchor(*found)
    return None
