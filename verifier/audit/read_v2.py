"""Reading and verifying schema v2 audit logs: records in batches, each batch closed by a chained checkpoint.

A v2 file is batches: record lines (v1's keys without ``prev`` and
``hash``) followed by one checkpoint line
``{"v":2,"checkpoint":LAST,"records":N,"prev":"..","hash":".."}`` whose
``hash`` is SHA-256 of ``prev`` (the previous checkpoint's hash, or
``GENESIS``), the batch's record lines as written (newlines included) and
the checkpoint's own canonical JSON without ``hash``
(``verifier.audit.log.checkpoint_hash``).  So verifying costs one hash per
batch over raw bytes, plus one compiled decode of the batch's lines for the
schema and canonical form (``fast_read.fast_batch``); a batch that fails
that fast check is walked line by line by the reference here, which decides
every problem and names it.

What the chain sees, and at which grain (docs/audit-log.md): a byte
changed anywhere in a batch, or in its checkpoint, fails that batch's hash;
a batch deleted, reordered or spliced in from another log breaks the next
checkpoint's ``prev``; a record deleted or added inside a batch fails the
hash and the checkpoint's count; a file cut inside a batch leaves records
with no checkpoint.  What it cannot say: *which* record of a failing batch
was edited -- there is no per-record hash, so a problem names the batch
(its seqs and the checkpoint's line).  Records cut off the end at a batch
boundary leave a valid chain, as in v1: an anchor (``audit seal``) rules it
out.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from verifier.audit import check
from verifier.audit.log import (
    CHECKPOINT_START,
    GENESIS,
    SCHEMA_V2,
    AuditError,
    checkpoint_body,
    checkpoint_hash,
    is_checkpoint,
    parse_line,
)

#: Bytes read from a file at a time; a batch longer than this waits for the next read.
BLOCK_BYTES = 4 << 20
#: A run of record lines with no checkpoint longer than this is reported, not held (bounded memory).
MAX_BATCH_BYTES = 64 << 20


@dataclass
class Batch:
    """One batch as read: its record lines, its checkpoint line (None: the file ended first), where it stands."""

    path: Path
    file_order: int
    first_line: int  # line number of the batch's first line in its file
    view: bytes | memoryview  # the record lines, newlines included, as read (a view: not copied on the fast path)
    count: int  # how many lines ``records`` holds
    checkpoint: bytes | None

    @property
    def checkpoint_line(self) -> int:
        return self.first_line + self.count

    @functools.cached_property
    def records(self) -> bytes:
        """The record lines as bytes, for the line-by-line walk (copied once, when asked)."""
        return self.view if isinstance(self.view, bytes) else bytes(self.view)


def batches(files: list[Path]) -> Iterator[Batch]:
    """Every batch of every file, in order; a file's tail after its last checkpoint comes as a batch without one.

    Each batch is a view of the block it was read in.  The batch that spans two blocks is the only one copied:
    the unfinished tail of the last block is joined with the head of the next up to the end of a checkpoint line
    (``_join_cut``), and the rest of that block is read in place -- not the whole block copied behind the tail,
    which cost about a tenth of a microsecond a record."""
    for order, path in enumerate(files):
        line = 1
        rest = b""
        with path.open("rb") as f:
            while True:
                block = f.read(BLOCK_BYTES)
                cut = _join_cut(rest, block)
                pieces = (
                    [(rest + block[:cut], 0), (block, cut)] if cut else [(rest + block, 0)] if rest else [(block, 0)]
                )
                for data, start in pieces:
                    if rest and data is block:  # the joined head left a tail (it cannot: it ends with a checkpoint)
                        data, start = rest + block[start:], 0
                    view = memoryview(data)
                    while (found := _checkpoint_after(data, start))[0] >= 0:
                        at, count = found
                        end = data.find(b"\n", at)
                        if end < 0:
                            break  # the checkpoint line itself continues in the next block
                        yield Batch(path, order, line, view[start:at], count, data[at : end + 1])
                        line += count + 1
                        start = end + 1
                    rest = data[start:]
                if not block:
                    break
                if len(rest) > MAX_BATCH_BYTES:  # no checkpoint in sight: hand it over as a batch without one
                    cut = rest.rfind(b"\n") + 1 or len(rest)
                    count = rest.count(b"\n", 0, cut)
                    yield Batch(path, order, line, rest[:cut], count, None)
                    line += count
                    rest = rest[cut:]
        if rest:
            yield Batch(path, order, line, rest, rest.count(b"\n") + (not rest.endswith(b"\n")), None)


def _join_cut(rest: bytes, block: bytes) -> int:
    """How much of ``block`` to join behind ``rest`` (the unfinished tail of the block before): just past the
    first checkpoint line that starts after a newline of ``block`` and ends in it, so the joined piece ends with a
    whole batch; 0 when ``rest`` is empty or no such line is in ``block`` (then the two are joined whole)."""
    if not rest:
        return 0
    at = block.find(b"\n" + CHECKPOINT_START)
    if at < 0:
        return 0
    end = block.find(b"\n", at + 1)
    return 0 if end < 0 or end + 1 == len(block) else end + 1


def _checkpoint_after(data: bytes, start: int) -> tuple[int, int]:
    """Where the first checkpoint line of ``data`` at or after ``start`` (a line start) begins (-1: none), and the
    newlines from ``start`` to there: the compiled scan when there is one (check.c), else a search and a count."""
    found = check.find_line(data, start, CHECKPOINT_START)
    if found is not None:
        return found
    at = _next_checkpoint(data, start)
    return at, data.count(b"\n", start, at) if at >= 0 else 0


def _next_checkpoint(data: bytes, start: int) -> int:
    """Where the first checkpoint line of ``data`` at or after ``start`` (a line start) begins (-1: none)."""
    if data.startswith(CHECKPOINT_START, start):
        return start
    at = data.find(b"\n" + CHECKPOINT_START, start)
    return -1 if at < 0 else at + 1


#: A checkpoint line as ``checkpoint_line`` writes it, read without a JSON decoder (a JSON decode and re-encode per
#: batch cost a tenth of a microsecond a record); any other line is left to ``parse_line``.
_CHECKPOINT_LINE = re.compile(
    re.escape(CHECKPOINT_START)
    + rb'(0|[1-9][0-9]{0,18}),"records":([1-9][0-9]{0,18}),"prev":"([0-9a-f]{64})","hash":"([0-9a-f]{64})"\}\n'
)


def parse_checkpoint(line: bytes) -> dict[str, Any] | None:
    """A checkpoint from its line (newline included), or None when it is not one in canonical form."""
    if (m := _CHECKPOINT_LINE.fullmatch(line)) is not None:
        last, records = int(m[1]), int(m[2])
        if last < 2**63 and records < 2**63:  # else: ``is_checkpoint`` below refuses it
            prev, digest = m[3].decode(), m[4].decode()
            return {"v": SCHEMA_V2, "checkpoint": last, "records": records, "prev": prev, "hash": digest}
    if not line.endswith(b"\n"):
        return None
    parsed = parse_line(line)
    return parsed if parsed is not None and is_checkpoint(parsed) else None


def batch_hash_ok(checkpoint: dict[str, Any], records: bytes | memoryview) -> bool:
    """True when the checkpoint's ``hash`` chains ``records`` to its ``prev``."""
    body = checkpoint_body(checkpoint["checkpoint"], checkpoint["records"], checkpoint["prev"])
    # hashlib reads any buffer: a view of the block the batch was read in is hashed without a copy
    return checkpoint_hash(checkpoint["prev"], cast(bytes, records), body) == checkpoint["hash"]


#: A batch's record lines (bytes, or a view of the block they were read in), how many, the first seq: their records.
Decoder = Callable[[bytes | memoryview, int, int], list[Any] | None]
Reference = Callable[[dict[str, Any]], str | None]


@dataclass
class WalkV2:
    """The state of one v2 ``verify`` pass: where the chain is, the trusted head, every problem found.

    ``prev`` is the hash the next checkpoint must name (None: unknown, after
    a damaged checkpoint -- the next one is then taken at its word, so one
    damage is not reported twice); ``pos`` the seq the next record should hold.
    """

    pos: int
    prev: str | None
    head: str
    head_seq: int
    problems: list[tuple[tuple[int, int], int, str, str]] = field(default_factory=list)
    clean: int = 0
    total: int = 0
    more: int = 0
    limit: int = 1000
    anchor_seq: int | None = None  # the seq an anchor names, and the hash of its checkpoint once verified
    anchor_seen: str | None = None

    def problem(self, order: tuple[int, int], seq: int, what: str, where: str) -> None:
        if len(self.problems) < self.limit:
            self.problems.append((order, seq, what, where))
        else:
            self.more += 1


@dataclass(frozen=True)
class Precheck:
    """What ``walk_batch`` asks of a batch that does not depend on the walk, asked ahead (on a worker thread):
    its checkpoint parsed, the first seq it names, the decode of its lines from that seq, whether its hash holds."""

    checkpoint: dict[str, Any] | None
    first: int
    decoded: list[Any] | None
    hash_ok: bool


def precheck(batch: Batch, decode: Decoder) -> Precheck:
    """``batch`` checked as ``walk_batch`` would check it if the walk stood where its checkpoint says it starts
    (the common case: then ``walk_batch`` takes these answers instead of asking again)."""
    checkpoint = parse_checkpoint(batch.checkpoint) if batch.checkpoint is not None else None
    if checkpoint is None:
        return Precheck(None, -1, None, False)
    first = checkpoint["checkpoint"] - batch.count + 1
    decoded = decode(batch.view, batch.count, first) if first >= 0 else None
    return Precheck(checkpoint, first, decoded, decoded is not None and batch_hash_ok(checkpoint, batch.view))


#: Batches checked ahead at once, shared among the threads (about 8,000 records of a fuzzer's log, some 3 ms of
#: work: a thread's hand-over, tens of microseconds, is a percent of it).
PRECHECK_BATCHES = 32


def prechecked(
    found: Iterator[Batch], decode: Decoder, threads: int, pool: Callable[[], Any], min_bytes: int
) -> Iterator[tuple[Batch, Precheck | None]]:
    """The batches of ``found``, in order, each with its ``precheck`` done ahead on up to ``threads`` threads (the
    calling one and ``pool()``'s workers), ``PRECHECK_BATCHES`` at a time; a group of fewer than ``min_bytes`` per
    thread is left to ``walk_batch`` on the calling thread (None: a small log starts no thread).

    ``precheck`` is a pure function of a batch's bytes (the C line check and hashlib release the GIL for their
    work), so the answers are those ``walk_batch`` would get itself; it uses them only where the walk stands
    where the checkpoint said.  Python's own part (the checkpoint's regex, the calls) still takes turns on the GIL.
    """
    while group := list(itertools.islice(found, PRECHECK_BATCHES)):
        size = sum(len(batch.view) for batch in group)
        count = min(threads, len(group), size // max(1, min_bytes))
        if count <= 1:
            yield from ((batch, None) for batch in group)
            continue
        cuts = [len(group) * k // count for k in range(count + 1)]
        jobs = [
            pool().submit(lambda part: [precheck(batch, decode) for batch in part], group[cuts[k] : cuts[k + 1]])
            for k in range(1, count)
        ]
        answers = [precheck(batch, decode) for batch in group[: cuts[1]]]
        for job in jobs:
            answers += job.result()
        yield from zip(group, answers, strict=True)


def walk_batch(
    walk: WalkV2,
    batch: Batch,
    decode: Decoder,
    schema_problem: Reference,
    on_record: Callable[[dict[str, Any]], object] | None,
    as_dict: Callable[[Any], dict[str, Any]],
    ahead: Precheck | None = None,
) -> None:
    """Check one batch against the chain so far and advance it; problems name the batch's lines.  ``ahead``: the
    batch's ``precheck``, done on another thread (the same answers, not asked again)."""
    name = batch.path.name
    walk.total += batch.count  # record lines: a checkpoint is the chain's, not a record (`audit verify` counts records)
    first = walk.pos
    if batch.checkpoint is None:
        _reference_lines(walk, batch, schema_problem)
        span = _span(first, walk.pos - 1)
        torn = "" if batch.records.endswith(b"\n") else " (the last line is torn)"
        walk.problem(
            (batch.file_order, batch.first_line),
            first,
            f"file cut mid-batch: {span} have no checkpoint{torn}",
            f"{name}:{batch.first_line}",
        )
        return
    where = f"{name}:{batch.checkpoint_line}"
    order = (batch.file_order, batch.checkpoint_line)
    checkpoint = parse_checkpoint(batch.checkpoint) if ahead is None else ahead.checkpoint
    clean_before = not walk.problems
    if ahead is not None and ahead.first == first:  # asked ahead from where the walk stands
        decoded = ahead.decoded
    else:
        decoded = decode(batch.view, batch.count, first) if checkpoint is not None else None
        ahead = None
    if (
        decoded is not None
        and checkpoint is not None
        and checkpoint["records"] == batch.count
        and checkpoint["checkpoint"] == first + batch.count - 1
        and checkpoint["prev"] == walk.prev
        and (ahead.hash_ok if ahead is not None else batch_hash_ok(checkpoint, batch.view))
    ):  # the common case: all of it verifies at once
        walk.pos = first + batch.count
        _trust(walk, checkpoint)
        if clean_before:
            walk.clean += batch.count
            if on_record is not None:
                for each in decoded:
                    on_record(as_dict(each))
        return
    # something is wrong: the reference names it, line by line, then the checkpoint
    records = _reference_lines(walk, batch, schema_problem)
    if checkpoint is None:
        walk.problem(order, walk.pos, "checkpoint damaged: not a canonical v2 checkpoint", where)
        walk.prev = None
        return
    span = _span(max(0, checkpoint["checkpoint"] - max(1, checkpoint["records"]) + 1), checkpoint["checkpoint"])
    good = True
    if checkpoint["records"] != batch.count:
        walk.problem(
            order,
            first,
            f"batch of {span}: {batch.count} record lines, the checkpoint says {checkpoint['records']}",
            where,
        )
        good = False
    if walk.prev is not None and checkpoint["prev"] != walk.prev:
        walk.problem(
            order,
            first,
            f"chain broken: the checkpoint of {span} does not name the checkpoint before (a batch deleted, "
            "reordered or spliced in)",
            where,
        )
        good = False
    if not batch_hash_ok(checkpoint, batch.records):
        walk.problem(
            order,
            first,
            f"batch altered: checkpoint hash mismatch for {span} (v2 names the batch, not the record)",
            where,
        )
        good = False
    if checkpoint["checkpoint"] != walk.pos - 1:
        walk.problem(
            order,
            first,
            f"checkpoint names seq {checkpoint['checkpoint']}, its batch ends at seq {walk.pos - 1}",
            where,
        )
        good = False
    walk.pos = checkpoint["checkpoint"] + 1
    walk.prev = checkpoint["hash"]
    if good and records is not None:
        _trust(walk, checkpoint)
        if clean_before and not walk.problems:
            walk.clean += batch.count
            if on_record is not None:
                for record in records:
                    on_record(record)


def _trust(walk: WalkV2, checkpoint: dict[str, Any]) -> None:
    """A verified checkpoint: the chain's head moves to it."""
    walk.prev = walk.head = checkpoint["hash"]
    walk.head_seq = checkpoint["checkpoint"]
    if walk.head_seq == walk.anchor_seq:
        walk.anchor_seen = walk.head


def _span(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seqs {first}..{last}"


def _reference_lines(walk: WalkV2, batch: Batch, schema_problem: Reference) -> list[dict[str, Any]] | None:
    """Every record line of the batch checked alone (canonical JSON, schema, seq in order); its records, or None
    when any line failed (each failure is a problem naming its line)."""
    records: list[dict[str, Any]] | None = []
    lines = batch.records.splitlines(keepends=True)
    name = batch.path.name
    for number, line in enumerate(lines, batch.first_line):
        order, where = (batch.file_order, number), f"{name}:{number}"
        seq = walk.pos
        record = parse_line(line) if line.endswith(b"\n") else None
        problem = None
        if not line.endswith(b"\n"):
            problem = "file cut mid-record: the last line is torn"
        elif record is None:
            problem = "record damaged: not canonical JSON"
        else:
            problem = schema_problem(record)
        if problem is not None or record is None:
            walk.problem(order, seq, problem or "record damaged", where)
            walk.pos += 1
            records = None
            continue
        stated = record["seq"]
        if stated != seq:
            what = (
                f"records missing: expected seq {seq}, found {stated}"
                if stated > seq
                else f"records out of order: seq {stated} comes after seq {seq - 1}"
            )
            walk.problem(order, min(seq, stated), what, where)
            records = None
        walk.pos = max(stated, seq) + 1
        if records is not None:
            records.append(record)
    return records


def read_batches(
    files: list[Path], decode: Decoder, schema_problem: Reference, as_dict: Callable[[Any], dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """The records of a v2 log, oldest first; ``AuditError`` naming the line of the first damaged one.

    For looking, not trusting (``verify`` is that): a batch whose lines decode
    at once is taken whole; any other is read line by line.  Checkpoints are
    checked for their form, not their hash; records after the last checkpoint
    (a batch still being written) are read too.
    """
    last_seq: int | None = None
    for batch in batches(files):
        first = last_seq + 1 if last_seq is not None else _first_seq_of(batch.records)
        decoded = decode(batch.records, batch.count, first) if first is not None else None
        if decoded is not None:
            for each in decoded:
                yield as_dict(each)
            last_seq = first + batch.count - 1 if first is not None else last_seq
        else:
            for number, line in enumerate(batch.records.splitlines(keepends=True), batch.first_line):
                after = f"after seq {last_seq}" if last_seq is not None else "before any good record"
                where = f"{batch.path}:{number}"
                if not line.endswith(b"\n"):
                    raise AuditError(
                        f"{where}: torn record {after} (file cut mid-line); run 'nic-sandbox audit verify'"
                    )
                record = parse_line(line)
                if record is None:
                    raise AuditError(
                        f"{where}: damaged record {after} (not canonical JSON); run 'nic-sandbox audit verify'"
                    )
                problem = schema_problem(record)
                if problem is not None:
                    raise AuditError(f"{where}: damaged record {after} ({problem})")
                last_seq = int(record["seq"])
                yield record
        where = f"{batch.path}:{batch.checkpoint_line}"
        if batch.checkpoint is None:
            after = f"after seq {last_seq}" if last_seq is not None else "before any good record"
            raise AuditError(
                f"{where}: torn batch {after} (records with no checkpoint: the file was cut); "
                "run 'nic-sandbox audit verify'"
            )
        checkpoint = parse_checkpoint(batch.checkpoint)
        if checkpoint is None:
            raise AuditError(
                f"{where}: damaged checkpoint (not a canonical v2 checkpoint); run 'nic-sandbox audit verify'"
            )
        if (checkpoint["records"], checkpoint["checkpoint"]) != (batch.count, last_seq):
            raise AuditError(
                f"{where}: damaged checkpoint (it says {checkpoint['records']} records to seq "
                f"{checkpoint['checkpoint']}, its batch holds {batch.count} to seq {last_seq}); "
                "run 'nic-sandbox audit verify'"
            )


def _first_seq_of(records: bytes) -> int | None:
    """The seq the first record line states (None: not readable)."""
    end = records.find(b"\n")
    if end < 0:
        return None
    try:
        first = json.loads(records[: end + 1])
    except (ValueError, RecursionError):
        return None
    seq = first.get("seq") if isinstance(first, dict) else None
    return seq if type(seq) is int else None


__all__ = ["GENESIS", "Batch", "WalkV2", "batches", "read_batches", "walk_batch"]
