"""Reading and verifying audit logs written by ``verifier/audit/log.py``.

``read_records`` is for looking (summary, show, plot): it checks that each
line is a well-formed record of this schema, not the chain.  ``verify`` is
for trusting: it walks the whole chain across rotated files and names the
first record that is not what the writer wrote:

* a changed byte: the line is no longer canonical JSON, or its hash no longer
  matches -- reported at that record's seq;
* a deleted record: a seq gap, or a ``prev`` that is not the hash of the
  record before -- reported at the first seq missing from the chain;
* a cut file: a last line without its newline -- reported at the torn
  record's seq (last good seq + 1);
* a schema error: missing or extra keys, wrong types, ``v`` other than 1.

What a chain cannot show: records cut off the end exactly at a line
boundary, or a tail rewritten with freshly computed hashes.  Compare the last
hash (``VerifyResult.head``) with a copy kept elsewhere to rule those out.

Input that is not an audit log at all (a pcap, random text) raises
``AuditFormatError`` with a one-line message instead of a list of problems.
Files may be given in any order: they are ordered by their first seq.
"""

from __future__ import annotations

import calendar
import itertools
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from verifier.audit.log import (
    FIELDS,
    GENESIS,
    KINDS,
    MAGIC,
    REASON_RE,
    SCHEMA_VERSION,
    AuditError,
    _tail_lines,
    chain_hash,
    parse_line,
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
#: Longest reason code (they are short stable names, verifier/rules/reasons.py).
MAX_REASON = 64


class AuditFormatError(AuditError):
    """The input is not an audit log of this schema (wrong kind of file)."""


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of ``verify``: ``records`` is how many records were verified before any problem."""

    ok: bool
    records: int
    first_bad_seq: int | None
    problem: str | None
    head: str = GENESIS
    files: tuple[str, ...] = ()


def parse_wall(text: str) -> int:
    """Nanoseconds since the epoch from a record's ``wall`` (``...T12:00:00.123456789Z``)."""
    m = _WALL.match(text)
    if m is None:
        raise ValueError(f"not an ISO-8601 UTC time: {text!r}")
    seconds = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))


def _wall_ok(text: object) -> bool:
    """A ``wall`` of the writer's form that names a real instant (month 13 or February 30 do not)."""
    if type(text) is not str or _WALL.match(text) is None:
        return False
    try:
        return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").year >= 1970
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


def schema_problem(record: dict[str, Any]) -> str | None:
    """Why ``record`` is not a v1 record (None when it is one)."""
    if record.get("v") != SCHEMA_VERSION:
        return f"schema: v={record.get('v')!r} is not supported (this reader knows v={SCHEMA_VERSION})"
    keys = tuple(record)
    if keys != FIELDS:
        missing = [k for k in FIELDS if k not in record]
        extra = [k for k in keys if k not in FIELDS]
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
    with p.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    if head.startswith(MAGIC) or MAGIC.startswith(head) or b"\n" + MAGIC in head:  # MAGIC[:n]: cut early
        return
    kind = _describe_foreign(head)
    raise AuditFormatError(f"{p}: not an audit log (JSON Lines records starting with {MAGIC.decode()}), but {kind}")


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


def _lines(files: list[Path]) -> Iterator[tuple[Path, int, bytes]]:
    """Every line of every file, as ``(file, 1-based line number, bytes)``."""
    for path in files:
        with path.open("rb") as f:
            for number, line in enumerate(f, 1):
                yield path, number, line


def read_records(paths: Iterable[PathLike]) -> Iterator[dict[str, Any]]:
    """The records of one or several files (any order), oldest first.  Not a chain check: see ``verify``.

    Raises ``AuditFormatError`` for a file that is not an audit log and
    ``AuditError`` for a damaged or torn line.
    """
    last_seq: int | None = None
    for path, number, line in _lines(order_files(paths)):
        where = f"{path}:{number}"
        after = f"after seq {last_seq}" if last_seq is not None else "before any good record"
        if not line.endswith(b"\n"):
            raise AuditError(f"{where}: torn record {after} (file cut mid-line); run 'nic-sandbox audit verify'")
        record = parse_line(line)
        if record is None:
            raise AuditError(f"{where}: damaged record {after} (not canonical JSON); run 'nic-sandbox audit verify'")
        problem = schema_problem(record)
        if problem is not None:
            raise AuditError(f"{where}: damaged record {after} ({problem})")
        last_seq = int(record["seq"])
        yield record


#: Lines ``verify`` checks at once on its fast path: one canonical re-encode per chunk.
CHUNK_LINES = 2048
_CANONICAL = json.JSONEncoder(separators=(",", ":"), sort_keys=False, ensure_ascii=True, allow_nan=False)


def _schema_ok(record: dict[str, Any]) -> bool:
    """``schema_problem(record) is None`` for a parsed line, at a fraction of the cost (no message).

    ``prev`` and ``hash`` are left to the caller, who compares them with the
    chain's own (64 hex digits by construction).  Values come from
    ``json.loads``, so ``type(x) is int`` is ``isinstance(x, int)`` without bool.
    """
    r = record
    if tuple(r) != FIELDS or r["v"] != SCHEMA_VERSION:
        return False
    seq, queue, ring_index, desc_hex, desc, reason = (
        r["seq"], r["queue"], r["ring_index"], r["desc_hex"], r["desc"], r["reason"]
    )  # fmt: skip
    return (
        type(seq) is int
        and seq >= 0
        and _wall_ok(r["wall"])
        and type(r["mono_ns"]) is int
        and type(r["tenant"]) is int
        and type(r["tenant_name"]) is str
        and (r["nic"] is None or type(r["nic"]) is str)
        and (queue is None or type(queue) is int)
        and r["kind"] in KINDS
        and (ring_index is None or type(ring_index) is int)
        and (desc_hex is None or _DESC_HEX.match(str(desc_hex)) is not None)
        and (desc is None or type(desc) is dict)
        and _reason_ok(reason)
        and type(r["detail"]) is dict
        and type(r["protection"]) is str
        and _in_range(r) is None
    )


def _fast_chunk(lines: list[bytes], expected: int, prev: str) -> list[dict[str, Any]] | None:
    """The records of ``lines`` when every one passes every check of ``verify`` from ``expected``/``prev`` on.

    None when any line fails anything: ``verify`` then walks the chunk line by
    line for the exact problem.  Each line is parsed alone; the chunk is
    re-encoded in one call and compared with the lines joined by ``,``: equal
    only if each line is its record's canonical encoding (a line that parses
    alone is one whole JSON value, so a line cannot end inside or after its
    record's encoding and still compare equal).
    """
    records = []
    tail = len(_HASH_TAIL)
    for line in lines:
        if line[-1:] != b"\n":
            return None
        try:
            record = json.loads(line.decode("ascii"))
        except (ValueError, RecursionError):  # UnicodeDecodeError included: canonical lines are ASCII
            return None
        if type(record) is not dict or not _schema_ok(record) or record["seq"] != expected or record["prev"] != prev:
            return None
        digest = chain_hash(prev, line[:-tail] + b"}")
        if record["hash"] != digest:
            return None
        records.append(record)
        prev = digest
        expected += 1
    try:
        encoded = _CANONICAL.encode(records).encode("ascii")
    except (TypeError, ValueError, RecursionError):
        return None
    if encoded != b"[" + b",".join(line[:-1] for line in lines) + b"]":
        return None
    return records


def _chunks(files: list[Path]) -> Iterator[tuple[Path, int, list[bytes]]]:
    """Every file's lines in runs of up to ``CHUNK_LINES``, as ``(file, number of the first line, lines)``."""
    for path in files:
        with path.open("rb") as f:
            number = 1
            while True:
                lines = list(itertools.islice(f, CHUNK_LINES))
                if not lines:
                    break
                yield path, number, lines
                number += len(lines)


def verify(paths: Iterable[PathLike], on_record: Callable[[dict[str, Any]], object] | None = None) -> VerifyResult:
    """Walk the hash chain over ``paths`` (any order) and report the first record that breaks it.

    ``on_record``: called with each record that verified, in chain order (up to
    the first problem), so a caller that needs the records too (the fuzzer's
    oracle) reads the log once.  Checks per line, in this order: complete
    line, canonical JSON, schema, seq, prev, hash.  A fast path checks a chunk
    of lines at once and, on any failure, the chunk is checked line by line
    for the exact problem: the verdict is the same either way.
    """
    files = order_files(paths)
    names = tuple(str(p) for p in files)
    expected = 0
    prev = GENESIS

    def bad(problem: str, where: str) -> VerifyResult:
        return VerifyResult(False, expected, expected, f"{problem} ({where})", prev, names)

    for path, first, chunk in _chunks(files):
        checked = _fast_chunk(chunk, expected, prev)
        if checked is not None:
            expected += len(checked)
            prev = checked[-1]["hash"]
            if on_record is not None:
                for each in checked:
                    on_record(each)
            continue
        for number, line in enumerate(chunk, first):
            where = f"{path.name}:{number}"
            if not line.endswith(b"\n"):
                return bad("file cut mid-record: the last line is torn", where)
            record = parse_line(line)
            if record is None:
                return bad("record damaged: not canonical JSON", where)
            problem = schema_problem(record)
            if problem is not None:
                return bad(problem, where)
            seq = record["seq"]
            if seq != expected:
                if expected == 0 and seq > 0:
                    return bad(f"log starts at seq {seq}: records 0..{seq - 1} are missing", where)
                if seq > expected:
                    return bad(f"records missing: expected seq {expected}, found {seq}", where)
                return bad(f"records out of order: expected seq {expected}, found {seq}", where)
            if record["prev"] != prev:
                return bad("chain broken: prev is not the hash of the record before", where)
            # The line is canonical and ends with the hash (checked above), so the body is the line without it.
            body = line[: -len(_HASH_TAIL)] + b"}"
            if chain_hash(prev, body) != record["hash"]:
                return bad("record altered: hash mismatch", where)
            prev = record["hash"]
            expected += 1
            if on_record is not None:
                on_record(record)
    return VerifyResult(True, expected, None, None, prev, names)
