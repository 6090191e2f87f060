"""The audit log writer: one hash-chained JSON line per refusal (invariant 6).

Every rejected descriptor, refused register write, IOMMU fault and deferred
unpin becomes exactly one record.  The design follows what real
audit trails do:

* **One record per event, stable reason codes.**  Like Linux audit's
  ``type=`` and XDP's ``XDP_STATISTICS`` counters (``rx_invalid_descs``,
  ``tx_invalid_descs``), a reason is a fixed upper-case code such as
  ``ADDR_NOT_PINNED``; free text belongs in ``detail``.
* **Tamper evidence by hash chaining.**  Each record carries ``prev``, the
  SHA-256 of the record before it, and ``hash`` = SHA-256(``prev`` + the
  record's canonical JSON without ``hash``).  Editing, deleting or
  reordering a record breaks the chain at that record.  The chain is not
  keyed: whoever can write the file can recompute every hash after an edit,
  and records cut off the *end* at a line boundary leave a valid chain.
  Anchor it by keeping the last ``hash`` elsewhere (``AuditLog.head``,
  ``nic-sandbox audit seal``: verifier/audit/seal.py); Schneier and Kelsey's
  secure audit logs and journald's sealing add an evolving key for exactly
  this reason.
* **Schema v2: a chained checkpoint per batch** (``schema=2``).  Records
  carry no hash; each flush closes what it writes with one checkpoint line
  whose ``hash`` = SHA-256(previous checkpoint's hash + the batch's record
  lines as written + the checkpoint without ``hash``): one hash call per
  batch instead of per record.  An edit anywhere in a batch fails that
  batch's checkpoint; what is lost is naming the one record that changed
  (docs/audit-log.md says what each schema protects against).  A new log
  gets ``DEFAULT_SCHEMA``; an existing log is continued in its own.
* **Canonical bytes.**  Keys in the fixed order of ``FIELDS``, compact
  separators, ASCII only, no NaN: the same events give the same bytes, so a
  deterministic clock gives a byte-identical log run after run (invariant 7).

Durability (``fsync``) -- when is a record *acknowledged*, i.e. guaranteed
not to be lost?

``"always"``
    ``record()`` writes the line, flushes it to the OS and ``os.fsync``\\ s the
    file before it returns.  A record is acknowledged when ``record()``
    returns; it survives a process crash and a power loss.  One fsync per
    rejection: the safest and slowest policy (a flood of bad descriptors
    costs one disk flush each).
``"batch"`` (default)
    ``record()`` only appends the line to an in-memory buffer; ``commit()``
    (called by the kernel once per doorbell, after the batch is checked)
    writes the buffer and fsyncs once.  Records are acknowledged when
    ``commit()`` returns.  This is group commit, as databases do it: one
    fsync covers a whole doorbell batch, which raises throughput and raises
    the time until a given record is safe.  A crash before ``commit()`` loses
    the unacknowledged records of the current batch, never acknowledged
    ones.  If more than ``max_pending`` records are waiting, the buffer is
    written and fsynced early, so a flood of rejections between two commits
    cannot grow memory without bound (and those records are acknowledged at
    that point).
``"batch"`` with a ``GroupCommit(records=N, interval_ms=T)`` (``group=``)
    Group commit decoupled from the doorbell: the buffer is written and
    fsynced once ``N`` records wait, or once the oldest of them has waited
    ``T`` ms (a timer thread of the log's own does that one, so a record
    never waits for a later one to arrive), whichever comes first;
    ``commit()`` syncs only when the interval has run out.  Records are
    acknowledged when that fsync returns (``acknowledged``, and
    ``on_durable`` when given).  ``close()`` -- and so Ctrl-C and SIGTERM,
    which unwind into it -- writes and fsyncs the last partial group.
    verifier/audit/durability.py says why; measure/durability.py predicts
    and measures the latency it costs.
``"never"``
    As ``"batch"``, but the buffer is written and flushed to the OS without
    ``fsync``.  Acknowledged records survive a crash of this process, not a
    power loss or kernel panic.  For tests and benchmarks.

Rotation: when the active file grows past ``rotate_bytes`` after a write, it
is renamed ``<path>.1``, ``<path>.2``, ... and a new active file starts.
Oldest is 1 and numbers never shift (unlike logrotate, which renames ``.1``
to ``.2`` on every rotation), so a reader racing a rotation never sees a
file renamed twice.  Sequence numbers and the chain continue across files:
the first record of a new file carries the last hash of the previous one.

Opening an existing log appends: the last record (in the active file, or the
newest rotated file when the active one is empty) gives the next ``seq`` and
``prev``.  A torn last line -- a crash in the middle of a write -- is never
silently continued: ``AuditError`` names the file and the last good seq, so a
human looks at it first (``nic-sandbox audit verify``).

One writer per log: ``AuditLog`` takes an exclusive ``flock`` on
``.<name>.lock`` beside it when it opens and holds it until ``close()``; a second
writer (another process, or another ``AuditLog`` in this one) is refused
with an ``AuditError`` naming the file, as ``flock(1)`` or a pid file would
refuse it.  Two writers on one file would each continue the chain from
the head they read at open and fork it.

Disk budget: ``max_bytes`` (default 256 MiB, four rotations' worth) bounds
the log's files together.  After a rotation, the oldest rotated files are
deleted until the rest fit, as logrotate's ``rotate N`` or journald's
``SystemMaxUse=`` do; the active file and the newest rotated file are
always kept.  The head of what was deleted -- the seq and hash of the last
pruned record, which the first kept record names as ``prev`` -- is written
to ``<path>.pruned`` (``PRUNED_SUFFIX``), so ``verify`` accepts a chain
that starts there rather than at ``GENESIS`` and still names a file
removed by anyone else as missing records.  ``disk`` reports what this
writer wrote, kept and pruned.

If a write fails, the log refuses every later record (fail closed, like
auditd's ``disk_error_action = HALT``): a sandbox that cannot audit a
rejection must not pretend it did.
"""

from __future__ import annotations

import binascii
import fcntl
import functools
import hashlib
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import numpy.typing as npt

from ring.descriptors import DESC_SIZE
from verifier.audit.chaining import HASH_FROM_END, HASH_HEX, Chainer, chainer
from verifier.audit.columns import Column, Ints
from verifier.audit.durability import GroupCommit
from verifier.audit.encode import ERR_SHAPE, enabled, render
from verifier.audit.lazy_records import RecordSpan
from verifier.audit.line_buffer import LineBuffer
from verifier.audit.lines import encode, record_tail, tail_columns
from verifier.audit.programs import Program, templated, write_rejections
from verifier.audit.record import AuditCounters, AuditRecord, CounterKey
from verifier.audit.rejection_batch import RejectionBatch, reason_counts

if TYPE_CHECKING:
    from ring.compiled import Compiled
    from verifier.audit.rejection_batch import RecordRows

__all__ = ["AuditError", "AuditLog", "encode"]

#: Schema v1: a hash per record (``prev``, ``hash`` in every record).
SCHEMA_VERSION = 1
#: Schema v2: records without a hash, a checkpoint line per written batch chaining the batch's bytes.
SCHEMA_V2 = 2
#: The schemas this writer writes and every reader reads.
SCHEMAS: tuple[int, ...] = (SCHEMA_VERSION, SCHEMA_V2)
#: The schema a new log gets (an existing log is continued in its own).
DEFAULT_SCHEMA = SCHEMA_VERSION
#: ``prev`` of the very first record of a log.
GENESIS = "0" * 64
#: Keys of a record, in the order they are written.
FIELDS: tuple[str, ...] = (
    "v",
    "seq",
    "wall",
    "mono_ns",
    "tenant",
    "tenant_name",
    "nic",
    "queue",
    "kind",
    "ring_index",
    "desc_hex",
    "desc",
    "reason",
    "detail",
    "protection",
    "prev",
    "hash",
)
#: Keys of a v2 record: those of v1 without the per-record chain.
FIELDS_V2: tuple[str, ...] = FIELDS[:-2]
#: Keys of a v2 checkpoint line: the last seq of its batch, how many records, the chain.
CHECKPOINT_FIELDS: tuple[str, ...] = ("v", "checkpoint", "records", "prev", "hash")
#: How every v2 checkpoint line starts.
CHECKPOINT_START = b'{"v":2,"checkpoint":'
KINDS: tuple[str, ...] = ("tx", "rx", "register", "iommu", "pin")
FSYNC_POLICIES: tuple[str, ...] = ("always", "batch", "never")
#: A stable reason code: upper-case letters, digits and underscores.
REASON_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
#: Longest reason code a reader accepts (they are short stable names, verifier/rules/reasons.py).
MAX_REASON = 64
#: Every canonical record line starts with these bytes (used to recognise a log).
MAGIC = b'{"v":'

#: Default rotation size and total disk budget of a log's files (four rotated files' worth).
ROTATE_BYTES = 64 << 20
MAX_BYTES = 4 * ROTATE_BYTES
#: ``<path>.pruned``: the head of the records deleted by the disk budget (``write_pruned``).
PRUNED_SUFFIX = ".pruned"
#: ``.<name>.lock`` beside the log: the file one writer holds an exclusive ``flock`` on (hidden, so ``LOG.*``
#: still names the log's rotated files only).
LOCK_SUFFIX = ".lock"

Clock = Callable[[], tuple[int, int]]
#: ``on_durable(seq, start_ns, end_ns)``: every record up to ``seq`` is on disk; the write and fsync that made
#: it so ran from ``start_ns`` to ``end_ns`` (``time.monotonic_ns``).  Called under the log's lock: keep it short.
Durable = Callable[[int, int, int], None]


def lock_path_of(path: Path) -> Path:
    """The lock file of the log at ``path``: ``.<name>.lock`` beside it."""
    return path.with_name("." + path.name + LOCK_SUFFIX)


@dataclass(frozen=True)
class DiskUse:
    """What a writer did to the disk: bytes it wrote, and the files of the log it kept and pruned."""

    written: int  # bytes this writer appended since it opened
    kept_files: int  # the active file and the rotated files still on disk
    kept_bytes: int
    pruned_files: int  # rotated files this writer deleted to stay within ``max_bytes``
    pruned_bytes: int

    def line(self) -> str:
        """One line for a command's output: ``98.5 MB written, 2 files kept (98.5 MB), 0 pruned``."""
        pruned = f"{self.pruned_files} pruned ({_size(self.pruned_bytes)})" if self.pruned_files else "0 pruned"
        files = f"{self.kept_files} file{'s' if self.kept_files != 1 else ''}"
        return f"{_size(self.written)} written, {files} kept ({_size(self.kept_bytes)}), {pruned}"


def _size(n: int) -> str:
    """Bytes for people, in decimal units as ``df -H`` prints them: ``512 B``, ``6.4 kB``, ``98.5 MB``."""
    if n < 1000:
        return f"{n} B"
    value, unit = n / 1000, "kB"
    for bigger in ("MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{value:.1f} {unit}"


class AuditError(Exception):
    """The audit log cannot be written or read as asked (torn, altered, closed)."""


def chain_hash(prev: str, body: bytes) -> str:
    """SHA-256 hex of ``prev`` (64 hex characters) followed by the record's canonical JSON without ``hash``."""
    return hashlib.sha256(prev.encode("ascii") + body).hexdigest()


def checkpoint_body(last: int, records: int, prev: str) -> bytes:
    """A v2 checkpoint's canonical JSON without ``hash``: the batch ends at seq ``last``, holds ``records``."""
    return b'%s%d,"records":%d,"prev":"%s"}' % (CHECKPOINT_START, last, records, prev.encode("ascii"))


def checkpoint_hash(prev: str, batch: bytes | memoryview, body: bytes) -> str:
    """SHA-256 hex of ``prev``, the batch's record lines (newlines included) and the checkpoint without ``hash``.

    One hash call per batch: an edit anywhere in the batch or its checkpoint changes it.
    """
    digest = hashlib.sha256(prev.encode("ascii"))
    digest.update(batch)
    digest.update(body)
    return digest.hexdigest()


def checkpoint_line(prev: str, batch: bytes | memoryview, last: int, records: int) -> tuple[bytes, str]:
    """The checkpoint line closing ``batch`` (``records`` records ending at seq ``last``) and its hash."""
    body = checkpoint_body(last, records, prev)
    digest = checkpoint_hash(prev, batch, body)
    return body[:-1] + b',"hash":"' + digest.encode("ascii") + b'"}\n', digest


def file_schema(path: Path) -> int | None:
    """The schema of the log file at ``path`` from its first bytes (None: empty; ``AuditError``: not a log)."""
    with path.open("rb") as f:
        start = f.read(len(MAGIC) + 2)
    if not start:
        return None
    for version in SCHEMAS:
        if start == b"%s%d," % (MAGIC, version):
            return version
    raise AuditError(f"{path}: not an audit log of schema v1 or v2, refusing to append")


def format_wall(wall_ns: int) -> str:
    """ISO-8601 UTC with nanoseconds: ``2024-05-01T12:00:00.123456789Z``."""
    sec, ns = divmod(wall_ns, 1_000_000_000)
    return _utc_second(sec) + f".{ns:09d}Z"


@functools.lru_cache(maxsize=1024)
def _utc_second(sec: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of ``sec``: records come by the thousand per second, so each is formatted once."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))


#: Where the virtual (deterministic) clock starts: 2023-11-14T22:13:20Z, ``device.clock.EPOCH_NS``.
VIRTUAL_EPOCH_NS = 1_700_000_000 * 1_000_000_000


def clock_of(wall: str, mono_ns: int) -> str:
    """``"virtual"`` when a record was stamped by the deterministic clock, else ``"wall"``.

    The virtual clock writes ``wall`` = ``VIRTUAL_EPOCH_NS`` + ``mono_ns``
    exactly (``sandbox.flags.deterministic_clock``); a real clock pairs
    ``time.time_ns()`` with ``time.monotonic_ns()``, which never line up like
    that.  So a record says which clock wrote it without a field of its own,
    and the bytes of virtual-clock logs stay what they always were.
    """
    if not 0 <= mono_ns < 10**15 or not wall.startswith("20"):
        return "wall"
    return "virtual" if wall == format_wall(VIRTUAL_EPOCH_NS + mono_ns) else "wall"


def _stamps(readings: list[tuple[int, int]]) -> list[Column]:
    """``,"wall":"..","mono_ns":..`` of each clock reading, as a column (``interleave``); one reading: a constant.

    A second's ``strftime`` prefix is formatted once, not per record.
    """
    if len(readings) == 1:
        wall_ns, mono_ns = readings[0]
        return [b',"wall":"%s","mono_ns":%d' % (format_wall(wall_ns).encode("ascii"), int(mono_ns))]
    walls: dict[int, bytes] = {}  # second -> its formatted prefix
    stamps = []
    for wall_ns, mono_ns in readings:
        sec, ns = divmod(wall_ns, 1_000_000_000)
        prefix = walls.get(sec)
        if prefix is None:
            prefix = walls[sec] = b',"wall":"' + format_wall(sec * 1_000_000_000)[:-11].encode("ascii")
        stamps.append(b'%s.%09dZ","mono_ns":%d' % (prefix, ns, mono_ns))
    return [stamps]


def _heads(lead: bytes, first: int, readings: list[tuple[int, int]]) -> list[bytes]:
    """``lead`` + seq + ``,"wall":"..","mono_ns":..`` of each clock reading, seqs from ``first`` (as ``_stamps``)."""
    walls: dict[int, bytes] = {}  # second -> its formatted prefix
    heads = []
    for seq, (wall_ns, mono_ns) in enumerate(readings, first):
        sec, ns = divmod(wall_ns, 1_000_000_000)
        prefix = walls.get(sec)
        if prefix is None:
            prefix = walls[sec] = b',"wall":"' + format_wall(sec * 1_000_000_000)[:-11].encode("ascii")
        heads.append(b'%s%d%s.%09dZ","mono_ns":%d' % (lead, seq, prefix, ns, mono_ns))
    return heads


def _int64_readings(readings: list[tuple[int, int]], n: int) -> npt.NDArray[np.int64] | bool:
    """``n`` clock readings as the ``(n, 2)`` int64 array encode.c takes, or False: readings it does not (past 64
    bits, not integers), which Python formats."""
    stamps = np.array(readings)
    if stamps.dtype != np.int64 or stamps.shape != (n, 2):
        return False
    return stamps


#: Reason names already held to ``REASON_RE`` (a handful: a batch's are checked once per process, not per batch).
_CHECKED_REASONS: set[str] = set()


def system_clock() -> tuple[int, int]:
    """The default clock: ``(time.time_ns(), time.monotonic_ns())``."""
    return time.time_ns(), time.monotonic_ns()


def rotated_siblings(path: Path) -> list[tuple[int, Path]]:
    """``(N, <path>.N)`` for every rotated file of the log at ``path``, oldest (lowest N) first."""
    found = []
    prefix = path.name + "."
    directory = path.parent
    if not directory.is_dir():
        return []
    for entry in directory.iterdir():
        suffix = entry.name[len(prefix) :]
        if entry.name.startswith(prefix) and suffix.isdigit() and entry.is_file():
            found.append((int(suffix), entry))
    return sorted(found)


def pruned_path(path: Path) -> Path:
    """``<path>.pruned`` of the log whose active file is ``path``."""
    return path.with_name(path.name + PRUNED_SUFFIX)


def write_pruned(path: Path, seq: int, head: str, files: int, size: int) -> None:
    """Record that the budget deleted records up to ``seq``, whose hash is ``head`` (atomically: write, rename)."""
    marker = pruned_path(path)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_bytes(encode({"v": SCHEMA_VERSION, "seq": seq, "hash": head, "files": files, "bytes": size}) + b"\n")
    os.replace(tmp, marker)


def read_pruned(path: Path) -> tuple[int, str] | None:
    """``(seq, hash)`` of the last record the writer's budget deleted from the log at ``path``, or None.

    A marker that is not what ``write_pruned`` writes is an ``AuditError``:
    it decides where the chain may start, so it is not guessed at.
    """
    marker = pruned_path(path)
    if not marker.exists():
        return None
    try:
        data = json.loads(marker.read_bytes())
        seq, head = data["seq"], data["hash"]
        if type(seq) is not int or seq < 0 or not isinstance(head, str) or not re.fullmatch(r"[0-9a-f]{64}", head):
            raise ValueError("seq or hash out of range")
    except (ValueError, KeyError, TypeError) as e:
        raise AuditError(f"{marker}: not a prune marker ({e})") from None
    return seq, head


def file_start(path: Path) -> tuple[int, str] | None:
    """Where the chain stood before the file at ``path``: ``(seq, hash)`` its first record (v1) or checkpoint (v2)
    names as ``prev`` (None: no record read).

    A v2 file starts with a batch, so its first checkpoint (at most a batch's
    lines on) says what came before; rotation never cuts a batch.
    """
    with path.open("rb") as f:
        first = parse_line(f.readline())
        if first is None or type(first.get("seq")) is not int:
            return None
        if first.get("v") != SCHEMA_V2:
            return (first["seq"] - 1, str(first["prev"])) if isinstance(first.get("prev"), str) else None
        for line in f:
            if line.startswith(CHECKPOINT_START):
                checkpoint = parse_line(line)
                if checkpoint is None or not is_checkpoint(checkpoint):
                    return None
                return first["seq"] - 1, checkpoint["prev"]
    return None


def _tail_lines(path: Path, count: int = 2) -> tuple[list[bytes], bool]:
    """The last ``count`` lines of a file (newline kept) and whether the file ends with a newline.

    Reads backwards in growing blocks, so opening a 64 MiB log costs a few KiB.
    """
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return [], True
        data = b""
        pos = size
        block = 4096
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
            # count + 1 newlines (ignoring a final one) means ``count`` whole lines are in ``data``
            if data.count(b"\n", 0, len(data) - 1) >= count:
                break
            block *= 2
    lines = data.splitlines(keepends=True)
    if pos > 0:
        lines = lines[1:]  # the first piece may start mid-line
    return lines[-count:], data.endswith(b"\n")


def parse_line(line: bytes) -> dict[str, Any] | None:
    """A record from one complete line (newline included), or None if the bytes are not canonical JSON.

    The line must be exactly what ``encode`` produces for the record it
    decodes to, so any byte changed outside a value is caught here and any
    byte changed inside a value is caught by the hash.
    """
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # not UTF-8 or JSON, past the int-digit limit, nested too deep
        return None
    if not isinstance(record, dict):
        return None
    try:
        if encode(record) + b"\n" != line:
            return None
    except (TypeError, ValueError, RecursionError):
        return None
    return record


def is_checkpoint(record: dict[str, Any]) -> bool:
    """``record`` has a v2 checkpoint's keys, in order, with values of their types and ranges (a batch is never
    empty; seqs are 63-bit)."""
    return (
        tuple(record) == CHECKPOINT_FIELDS
        and record["v"] == SCHEMA_V2
        and all(type(record[k]) is int and low <= record[k] < 2**63 for k, low in (("checkpoint", 0), ("records", 1)))
        and all(isinstance(record[k], str) and re.fullmatch(r"[0-9a-f]{64}", record[k]) for k in ("prev", "hash"))
    )


def record_schema(record: dict[str, Any]) -> int:
    """The schema a record says it is of (v1 unless it says a schema this writer knows): which checks apply."""
    version = record.get("v")
    return version if type(version) is int and version in SCHEMAS else SCHEMA_VERSION


def record_hash_ok(record: dict[str, Any]) -> bool:
    """True when ``record["hash"]`` is the chain hash of the rest of the record."""
    body = {k: v for k, v in record.items() if k != "hash"}
    prev = record.get("prev")
    return isinstance(prev, str) and len(prev) == 64 and chain_hash(prev, encode(body)) == record.get("hash")


class AuditLog:
    """Append-only, hash-chained, rotated JSON Lines audit log.  See the module docstring for durability.

    ``record()`` returns the record's ``seq``; ``commit()`` ends a doorbell
    batch; ``close()`` commits and closes.  Thread-safe: the device thread
    (IOMMU faults) and tenant threads (doorbells) may record concurrently.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        protection: str,
        fsync: str = "batch",
        rotate_bytes: int | None = ROTATE_BYTES,
        clock: Clock | None = None,
        max_pending: int = 4096,
        max_bytes: int | None = MAX_BYTES,
        group: GroupCommit | None = None,
        on_durable: Durable | None = None,
        schema: int = DEFAULT_SCHEMA,
    ) -> None:
        if schema not in SCHEMAS:
            raise ValueError(f"schema must be one of {', '.join(map(str, SCHEMAS))}, got {schema!r}")
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        if group is not None and fsync != "batch":
            raise ValueError(f"group commit needs fsync batch, got fsync {fsync!r}")
        if rotate_bytes is not None and rotate_bytes <= 0:
            raise ValueError(f"rotate_bytes must be positive or None, got {rotate_bytes}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive or None, got {max_bytes}")
        if max_bytes is not None and rotate_bytes is not None:
            rotate_bytes = max(1, min(rotate_bytes, max_bytes // 4))  # a budget is kept in at least four files
        self.path = Path(path)
        self.protection = str(protection)
        self.fsync = fsync
        self.rotate_bytes = rotate_bytes
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self._clock: Clock = clock or system_clock
        self._lock = threading.Lock()
        self._lines = LineBuffer()  # the lines waiting to be written: v1's chained, v2's for their checkpoint
        self._scratch = LineBuffer()  # v1: a batch's tails, before the chain puts them into ``_lines``
        self._chainer: Chainer | None = None  # v1: the compiled chain (``_compiled_chain``), once asked for
        self._pending_records = 0
        #: the schema this writer writes: ``schema`` for a new log, the log's own for an existing one
        self.schema = schema
        self._envelope: tuple[bytes, bytes] | None = None  # ``_ends``, once the schema is settled
        self._counts = AuditCounters()
        self._failed: BaseException | None = None
        self._closed = False
        self._written = 0
        self._pruned_files = 0
        self._pruned_bytes = 0
        self._pruned_base = (0, 0)  # files and bytes pruned before this writer opened
        self.group = group
        self.on_durable = on_durable
        #: group commit: when the oldest waiting record has waited the interval (``time.monotonic``), None: none waits
        self._deadline: float | None = None
        self._wake = threading.Condition(self._lock)
        self._lock_file = self._take_lock()

        try:
            self._open_tail()
        except BaseException:
            self._lock_file.close()
            raise
        self._timer: threading.Thread | None = None
        if group is not None:
            self._timer = threading.Thread(target=self._sync_on_time, name=f"audit-group-commit:{self.path.name}")
            self._timer.daemon = True  # close() stops it; a process that never closes is not held up by it
            self._timer.start()

    def _open_tail(self) -> None:
        """Find where the chain ends (next ``seq`` and ``prev``) and open the active file for appending."""
        rotated = rotated_siblings(self.path)
        self._next_rotation = rotated[-1][0] + 1 if rotated else 1
        last = self._last_record(self.path)
        if last is None:
            for _, older in reversed(rotated):
                last = self._last_record(older)
                if last is not None:
                    break
        if last is not None:
            self.schema = int(last["v"])
        # a v2 log ends with a checkpoint, whose ``checkpoint`` is its batch's last seq
        self._seq = 0 if last is None else int(last["seq" if "seq" in last else "checkpoint"]) + 1
        self._prev = GENESIS if last is None else str(last["hash"])
        #: ``seq`` of the newest acknowledged record (-1: none yet).
        self.acknowledged = self._seq - 1
        self._file: BinaryIO = self.path.open("ab")
        self._size = self._file.tell()
        #: rotated files still on disk, oldest first, with their sizes (what the budget may delete)
        self._rotated: list[tuple[Path, int]] = [(p, p.stat().st_size) for _, p in rotated]
        if read_pruned(self.path) is not None:  # checked; what earlier writers pruned goes on from there
            earlier = json.loads(pruned_path(self.path).read_bytes())
            files, size = earlier.get("files"), earlier.get("bytes")
            self._pruned_base = (files if type(files) is int else 0, size if type(size) is int else 0)

    def _take_lock(self) -> BinaryIO:
        """An exclusive ``flock`` on ``<path>.lock``, held until ``close()``; a second writer is refused."""
        lock_path = lock_path_of(self.path)
        lock = lock_path.open("ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise AuditError(
                f"{self.path}: another writer has this audit log open ({lock_path} is locked); one writer per log"
            ) from None
        return lock

    # -- opening ----------------------------------------------------------------
    @staticmethod
    def _last_record(path: Path) -> dict[str, Any] | None:
        """The last record of an existing file, after checking the file ends cleanly."""
        if not path.exists():
            return None
        if file_schema(path) == SCHEMA_V2:
            return AuditLog._last_checkpoint(path)
        lines, ends_clean = _tail_lines(path)
        if not lines:
            return None
        *before, last_line = lines
        record = parse_line(last_line) if ends_clean else None
        if record is not None and not (
            tuple(record) == FIELDS and record["v"] == SCHEMA_VERSION and isinstance(record["seq"], int)
        ):
            record = None
        if record is None:
            good = parse_line(before[0]) if before else None
            if good is None and before:
                raise AuditError(f"{path}: not an audit log of schema v{SCHEMA_VERSION}, refusing to append")
            after = f"after seq {good['seq']}" if good is not None else "in its first record"
            raise AuditError(
                f"{path}: torn {after} (last line is incomplete or not a valid record); refusing to append: "
                f"check it with 'nic-sandbox audit verify {path}' and move it aside"
            )
        if not record_hash_ok(record):
            raise AuditError(
                f"{path}: last record (seq {record['seq']}) fails its hash; the log was altered, refusing to append"
            )
        return record

    @staticmethod
    def _last_checkpoint(path: Path) -> dict[str, Any] | None:
        """The last checkpoint of an existing v2 file, after checking the file ends with it and its batch hashes."""
        lines, ends_clean = _tail_lines(path, 1)
        if not lines:
            return None
        checkpoint = parse_line(lines[-1]) if ends_clean else None
        if checkpoint is None or not is_checkpoint(checkpoint):
            raise AuditError(
                f"{path}: torn (the last line is not a checkpoint: a batch was cut or never closed); refusing to "
                f"append: check it with 'nic-sandbox audit verify {path}' and move it aside"
            )
        batch, _ = _tail_lines(path, checkpoint["records"] + 1)
        body = checkpoint_body(checkpoint["checkpoint"], checkpoint["records"], checkpoint["prev"])
        if (
            len(batch) != checkpoint["records"] + 1
            or checkpoint_hash(checkpoint["prev"], b"".join(batch[:-1]), body) != checkpoint["hash"]
        ):
            raise AuditError(
                f"{path}: last batch (to seq {checkpoint['checkpoint']}) fails its checkpoint hash; the log was "
                "altered, refusing to append"
            )
        return checkpoint

    # -- recording ----------------------------------------------------------------
    def record(self, entry: AuditRecord) -> int:
        """Append one record and return its ``seq``.  Acknowledged per the ``fsync`` policy."""
        kind, reason, raw = entry.kind, entry.reason, entry.raw
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not REASON_RE.match(reason):
            raise ValueError(f"reason must be a stable code like ADDR_NOT_PINNED, got {reason!r}")
        if raw is not None and len(raw) != DESC_SIZE:
            raise ValueError(f"raw descriptor must be {DESC_SIZE} bytes, got {len(raw)}")
        with self._lock:
            self._check_open()
            queue = None if entry.queue is None else int(entry.queue)
            bodies = self._bodies([record_tail(entry)], self._seq)
            if self.schema == SCHEMA_V2:
                return self._append(bodies[0], 1, entry.nic, kind, queue, lambda _: {reason: 1}).start
            return self._chain(bodies, entry.nic, kind, queue, lambda _: {reason: 1}).start

    def record_batch(self, rows: RecordRows) -> range:
        """Append one record per row of ``rows`` (a doorbell's rejections, a DMA batch's faults); their seqs.

        v1: the same bytes as one ``record()`` call per row -- same clock
        calls, same chain, one hash per record, the same envelope around each
        record's tail -- without a record per row: the known batch shapes
        (``RejectionBatch``, ``IommuFaultBatch``) are formatted from
        per-batch templates (``verifier/audit/lines.py``); any other shape
        takes ``record_tail`` row by row; the tails are then chained in one
        compiled call (``_chain_tails``: seq, clock stamp and hash per record,
        verifier/audit/chaining.py), or in Python without it.  v2: the same
        tails, one clock reading for the batch (its records were refused by
        one check), the lines formatted as one blob and hashed at the next
        checkpoint.
        """
        n = len(rows)
        if n == 0:
            return range(self._seq, self._seq)
        if rows.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {rows.kind!r}")
        counts = reason_counts(rows)
        if not _CHECKED_REASONS.issuperset(counts):
            for reason in counts:
                if not REASON_RE.match(reason):
                    raise ValueError(f"reason must be a stable code like ADDR_NOT_PINNED, got {reason!r}")
            _CHECKED_REASONS.update(counts)
        with self._lock:
            self._check_open()
            v2 = self.schema == SCHEMA_V2
            fast = enabled() if type(rows) is RejectionBatch else None
            chained = lambda k: counts if k == n else reason_counts(rows, k)  # noqa: E731 - the counts of a v1 prefix
            stamp: list[tuple[int, int]] = []  # v2: the batch's one clock reading, once read
            read: list[list[tuple[int, int]] | None] = []  # v1: the batch's readings once read (None: C reads them)
            linker = None if v2 else self._compiled_chainer()  # v1: the compiled chain, when it is here
            if v2:
                if fast is not None:
                    lead, end = self._ends()
                    stamped = lambda: self._reading(stamp)  # noqa: E731 - the clock read when the template is there
                    written = write_rejections(fast, rows, lead, stamped, end, self._seq, self._lines)  # type: ignore[arg-type]
                    if written is not None:
                        if self._pending_records + n <= self._limit():
                            self._lines.take(written)
                            return self._append(None, n, rows.nic, rows.kind, rows.queue, lambda _: counts)
                        blob = self._lines.room(0)[:written].tobytes()  # cut at the limit, as any blob is
                        return self._append(blob, n, rows.nic, rows.kind, rows.queue, lambda _: counts)
            elif fast is not None and linker is not None:
                done = self._chain_rejections(fast, linker, rows, read, chained)  # type: ignore[arg-type]
                if done is not None:
                    return done
                ready = self._template_tails(fast, rows)  # type: ignore[arg-type]
                if ready is not None:
                    return self._chain_tails(ready, n, rows.nic, rows.kind, rows.queue, chained, read)
            elif fast is not None:
                templated = self._template_bodies(fast, rows)  # type: ignore[arg-type]
                if templated is not None:
                    return self._chain(templated, rows.nic, rows.kind, rows.queue, chained)
            columns = tail_columns(rows)
            if columns is None:
                entries = list(rows.records())
                for entry in entries:
                    if entry.raw is not None and len(entry.raw) != DESC_SIZE:
                        raise ValueError(f"raw descriptor must be {DESC_SIZE} bytes, got {len(entry.raw)}")
                tails = [record_tail(entry) for entry in entries]
                if v2:
                    blob = self._batch_lines([[t.encode("ascii") for t in tails]], n, self._seq, stamp)
                    return self._append(blob, n, rows.nic, rows.kind, rows.queue, lambda _: counts)
                if linker is not None:
                    _, end = self._ends()
                    blob = b"".join([t.encode("ascii") + end + b"\n" for t in tails])
                    return self._chain_tails(blob, n, rows.nic, rows.kind, rows.queue, chained, read)
                bodies = self._bodies(tails, self._seq)
            elif v2:
                blob = self._batch_lines(columns, n, self._seq, stamp)
                return self._append(blob, n, rows.nic, rows.kind, rows.queue, lambda _: counts)
            elif linker is not None:
                _, end = self._ends()
                blob = render(n, [*columns, end, b"\n"])
                return self._chain_tails(blob, n, rows.nic, rows.kind, rows.queue, chained, read)
            else:
                bodies = self._batch_bodies(columns, n, self._seq)
            return self._chain(bodies, rows.nic, rows.kind, rows.queue, chained)

    def _limit(self) -> int:
        """Records that may wait unwritten: one (``always``), the group's size, or ``max_pending``."""
        return 1 if self.fsync == "always" else self.max_pending if self.group is None else self.group.records

    def _chain(
        self,
        bodies: list[bytes],
        nic: str | None,
        kind: str,
        queue: int | None,
        counts: Callable[[int], Mapping[str, int]],
    ) -> range:
        """v1: chain a record per body (under the lock); ``counts(k)``: the reasons of the first ``k`` (counters).

        Every body is ``{"v":..,"seq":..,"wall":..,"mono_ns":..`` + its tail +
        ``,"protection":..,"prev":"``; the record adds the previous hash and ``"}``, its line
        ``hash``: the canonical JSON of the whole record dict, by construction.
        If an early flush fails, the records chained so far stay counted (as
        they are written).  The reference ``_chain_tails`` is held to.
        """
        first = self._seq
        prev = self._prev.encode("ascii")  # the chain kept as bytes here: ``chain_hash`` inlined
        sha256, hexlify = hashlib.sha256, binascii.hexlify
        held = self._lines
        limit = self._limit()
        pending = self._pending_records
        lines: list[bytes] = []
        seq = first
        try:
            for head in bodies:
                linked = head + prev  # head ends with ``,"prev":"``
                prev = hexlify(sha256(prev + linked + b'"}').digest())
                lines.append(linked + b'","hash":"' + prev + b'"}\n')
                seq += 1
                pending += 1
                if pending >= limit:
                    held.append(b"".join(lines))
                    lines = []
                    self._seq, self._prev = seq, prev.decode("ascii")
                    self._pending_records, pending = pending, 0
                    self._flush()
        finally:
            if lines:
                held.append(b"".join(lines))
            self._seq, self._prev = seq, prev.decode("ascii")
            self._pending_records = pending
            if seq > first:
                self._counts.add(nic, kind, queue, counts(seq - first))
            self._start_group()
        return range(first, seq)

    def _chain_tails(
        self,
        tails: bytes | memoryview | npt.NDArray[np.uint8],
        n: int,
        nic: str | None,
        kind: str,
        queue: int | None,
        counts: Callable[[int], Mapping[str, int]],
        read: list[list[tuple[int, int]] | None],
    ) -> range:
        """v1: chain ``n`` records from their tails (newline-ended, each ending ``,"prev":"``), a clock reading
        each, in one compiled call (verifier/audit/chaining.py) -- or, when that is refused, in Python
        (``_heads``, ``_chain``) from the same readings: the same bytes either way.  ``read``: the readings taken
        for this batch already (by a one-pass call that was then refused), or empty."""
        readings = self._readings(n, read)
        lead, _ = self._ends()
        done = self._compiled_chain(tails, n, lead, readings, nic, kind, queue, counts)
        if done is not None:
            return done
        if readings is None:
            readings = [self._clock() for _ in range(n)]
        heads = _heads(lead, self._seq, readings)
        split = bytes(tails).split(b"\n")
        return self._chain([head + tail for head, tail in zip(heads, split, strict=False)], nic, kind, queue, counts)

    def _readings(self, n: int, read: list[list[tuple[int, int]] | None]) -> list[tuple[int, int]] | None:
        """v1: the batch's clock readings, one a record in order, read once (kept in ``read``); None: the default
        clock, which C reads itself."""
        if not read:
            clock = self._clock
            read.append(None if clock is system_clock else [clock() for _ in range(n)])
        return read[0]

    def _chain_rejections(
        self,
        fast: Compiled,
        linker: Chainer,
        rows: RejectionBatch,
        read: list[list[tuple[int, int]] | None],
        counts: Callable[[int], Mapping[str, int]],
    ) -> range | None:
        """v1: a doorbell's refusals formatted, stamped and chained in one compiled pass (``enc_template_chain``:
        each row hashed as it is written, no tails in between) straight into the pending lines; None: not taken
        (nothing held; the readings taken, if any, are in ``read`` for the way that takes it)."""
        n = len(rows)
        lead, end = self._ends()
        first = self._seq
        held = self._lines

        def stamps() -> npt.NDArray[np.int64] | bool | None:
            readings = self._readings(n, read)
            return None if readings is None else _int64_readings(readings, n)

        def run(program: Program, given: npt.NDArray[np.int64] | bool | None) -> int:
            if given is False:
                return ERR_SHAPE  # readings C does not take: the tails' way formats them in Python
            return linker.chain_rejections(program, rows, lead, first, given, self._prev, held)  # type: ignore[arg-type]

        written = templated(fast, rows, None, end, stamps, run)
        if written is None:
            return None
        return self._hold_chained(linker.result(written, n), n, rows.nic, rows.kind, rows.queue, counts)

    def _compiled_chainer(self) -> Chainer | None:
        """v1: this log's compiled chain (encode.c's, libcrypto's SHA-256), or None: either is missing here."""
        fast = enabled()
        if fast is None:
            return None
        if self._chainer is None or self._chainer.fast is not fast:
            self._chainer = chainer(fast)
        return self._chainer

    def _compiled_chain(
        self,
        tails: bytes | memoryview | npt.NDArray[np.uint8],
        n: int,
        lead: bytes | None,
        readings: list[tuple[int, int]] | None,
        nic: str | None,
        kind: str,
        queue: int | None,
        counts: Callable[[int], Mapping[str, int]],
    ) -> range | None:
        """``_chain`` of the tails' bodies (``lead`` None: the tails are the bodies) written by encode.c's
        ``enc_chain`` straight into the pending lines; None: no compiled chain here, or it refused the batch
        (nothing done: the caller chains in Python)."""
        linker = self._compiled_chainer()
        if linker is None:
            return None
        stamps = None
        if readings is not None:
            stamps = _int64_readings(readings, n)
            if stamps is False:
                return None  # readings C does not take (past 64 bits, not integers): Python formats them
        done = linker.chain(tails, n, lead, self._seq, stamps, self._prev, self._lines)  # type: ignore[arg-type]
        if done is None:
            return None
        return self._hold_chained(done, n, nic, kind, queue, counts)

    def _hold_chained(
        self,
        done: tuple[int, str, npt.NDArray[np.uint64]],
        n: int,
        nic: str | None,
        kind: str,
        queue: int | None,
        counts: Callable[[int], Mapping[str, int]],
    ) -> range:
        """v1: ``n`` lines chained by C after the pending ones (``done``: their bytes, last hash and line ends),
        held for the next commit -- or, past the pending limit, flushed piece by piece at the record boundaries
        ``_chain`` uses."""
        written, last, ends = done
        first = self._seq
        held = self._lines
        limit = self._limit()
        room = limit - self._pending_records
        if n < room:  # the common case: the lines wait for the next commit where they were written
            held.take(written)
            self._seq, self._prev = first + n, last
            self._pending_records += n
            self._start_group()
            self._counts.add(nic, kind, queue, counts(n))
            return range(first, first + n)
        data = held.room(0)[:written].tobytes()
        start = chained = 0
        try:
            for cut in range(room, n + 1, limit):
                end = int(ends[cut - 1])
                held.append(data[start:end])
                chained, start = cut, end
                self._seq = first + cut
                self._prev = data[end - HASH_FROM_END : end - HASH_FROM_END + HASH_HEX].decode("ascii")
                self._pending_records = limit
                self._flush()
            if chained < n:
                held.append(data[start:])
                self._seq, self._prev = first + n, last
                self._pending_records = n - chained
                chained = n
        finally:
            if chained:
                self._counts.add(nic, kind, queue, counts(chained))
            self._start_group()
        return range(first, first + chained)

    def _append(
        self,
        blob: bytes | None,
        n: int,
        nic: str | None,
        kind: str,
        queue: int | None,
        counts: Callable[[int], Mapping[str, int]],
    ) -> range:
        """v2: queue ``n`` record lines (``blob``, whole lines) for the next checkpoint (under the lock).

        ``blob`` None: the lines are held already (written in place by the
        compiled formatter, within the pending limit).  No hash here:
        ``_flush`` closes what waits with one checkpoint.  More than the
        pending limit is cut at line boundaries and flushed piece by piece, as
        v1 flushes early.
        """
        first = self._seq
        limit = self._limit()
        pieces: list[tuple[bytes | None, int]] = [(blob, n)]
        if blob is not None and self._pending_records + n > limit:
            lines = blob.splitlines(keepends=True)
            room = limit - self._pending_records
            cuts = [0, *range(room, n, limit), n]
            pieces = [(b"".join(lines[a:b]), b - a) for a, b in itertools.pairwise(cuts) if b > a]
        try:
            for piece, k in pieces:
                if piece is not None:
                    self._lines.append(piece)
                self._pending_records += k
                self._seq += k
                if self._pending_records >= limit:
                    self._flush()
        finally:
            if self._seq > first:
                self._counts.add(nic, kind, queue, counts(self._seq - first))
            self._start_group()
        return range(first, self._seq)

    def _start_group(self) -> None:
        """Group commit: records wait now, so the interval starts (the timer thread counts it)."""
        if self.group is not None and self._pending_records and self._deadline is None:
            self._deadline = time.monotonic() + self.group.interval_s
            self._wake.notify()

    def _ends(self) -> tuple[bytes, bytes]:
        """What comes before each record's ``seq`` and after its tail, in this writer's schema (encoded once)."""
        if self._envelope is None:
            lead = b'{"v":%d,"seq":' % self.schema
            protection = b"," + encode({"protection": self.protection})[1:-1]
            self._envelope = lead, protection + (b"}\n" if self.schema == SCHEMA_V2 else b',"prev":"')
        return self._envelope

    def _bodies(self, tails: Iterable[str], first: int) -> list[bytes]:
        """Record bodies one record at a time, a clock reading each: the reference every batch is held to.

        The version, ``seq`` and a clock reading in front of each tail;
        ``protection`` and ``,"prev":"`` (v1: the chain follows) or ``}`` and
        the newline (v2: the whole line) after it.
        """
        lead, end = self._ends()
        clock = self._clock
        bodies = []
        for seq, tail in enumerate(tails, first):
            wall_ns, mono_ns = clock()
            stamp = f'{seq},"wall":"{format_wall(wall_ns)}","mono_ns":{int(mono_ns)}{tail}'
            bodies.append(lead + stamp.encode("ascii") + end)
        return bodies

    def _batch_bodies(self, columns: list[Column], n: int, first: int) -> list[bytes]:
        """v1: the bodies ``_bodies`` gives for these tail columns, formatted column by column (``interleave``).

        One clock reading per record, in order, as ``_bodies`` takes them;
        the stamps are formatted as columns too (``_stamps``).
        """
        clock = self._clock
        readings = [clock() for _ in range(n)]
        lead, end = self._ends()
        seqs = Ints(np.arange(first, first + n, dtype=np.int64))
        return render(n, [lead, seqs, *_stamps(readings), *columns, end, b"\n"]).split(b"\n")[:-1]

    def _template_tails(self, fast: Compiled, rows: RejectionBatch) -> npt.NDArray[np.uint8] | None:
        """v1: each row's tail and ``,"prev":"`` and a newline, written by a compiled template
        (verifier/audit/programs.py) into the scratch buffer (valid until its next use); None: a batch the
        templates do not take (the clock not read)."""
        _, end = self._ends()
        written = write_rejections(fast, rows, None, lambda: b"", end + b"\n", 0, self._scratch)
        return None if written is None else self._scratch.room(0)[:written]

    def _template_bodies(self, fast: Compiled, rows: RejectionBatch) -> list[bytes] | None:
        """v1: the bodies ``_bodies`` gives, each tail written by a compiled template (verifier/audit/programs.py)
        and put behind its own version, seq and clock reading; None: a batch the templates do not take (the clock
        not read).  Without the compiled chain: ``_chain`` hashes them."""
        lead, _ = self._ends()
        held = self._template_tails(fast, rows)
        if held is None:
            return None
        tails = held.tobytes().split(b"\n")
        clock = self._clock
        heads = _heads(lead, self._seq, [clock() for _ in range(len(rows))])
        return [head + tail for head, tail in zip(heads, tails, strict=False)]

    def _reading(self, stamp: list[tuple[int, int]]) -> bytes | tuple[int, int]:
        """v2: the batch's one clock reading (read into ``stamp`` if it is not yet) as a template takes it: the
        reading itself, which encode.c formats, or -- one it does not take (a wall before 1970, past 64 bits, not
        an int) -- its ``_stamps`` text."""
        if not stamp:
            stamp.append(self._clock())
        wall, mono = reading = stamp[0]
        if type(wall) is int and type(mono) is int and 0 <= wall < 2**63 and -(2**63) <= mono < 2**63:
            return reading
        return _stamps([reading])[0]  # type: ignore[return-value]  # one reading: a constant

    def _batch_lines(self, columns: list[Column], n: int, first: int, stamp: list[tuple[int, int]]) -> bytes:
        """v2: the batch's record lines as one blob, stamped with one clock reading (one check refused them): the
        one in ``stamp`` when a template read it already."""
        lead, end = self._ends()
        seqs = Ints(np.arange(first, first + n, dtype=np.int64))
        if not stamp:
            stamp.append(self._clock())
        return render(n, [lead, seqs, *_stamps(stamp), *columns, end])

    def commit(self) -> None:
        """End a doorbell batch: write the buffered records and (policy ``batch``) fsync them once.

        Under group commit the group decides, not the doorbell: this syncs only a group whose interval has run out.
        """
        with self._lock:
            self._check_open()
            if self.group is None or (self._deadline is not None and time.monotonic() >= self._deadline):
                self._flush()

    def close(self) -> None:
        """Commit what is buffered (a partial group too) and close the file.  Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._failed is None:
                    self._flush()
            finally:
                self._closed = True
                self._wake.notify()
                self._file.close()
                self._lock_file.close()  # releases the flock
        timer = self._timer
        if timer is not None and timer is not threading.current_thread():
            timer.join()

    def _sync_on_time(self) -> None:
        """The group-commit timer: sync a group whose oldest record has waited ``interval_ms`` (its own thread)."""
        with self._wake:
            while not self._closed and self._failed is None:
                deadline = self._deadline
                if deadline is None:
                    self._wake.wait()
                    continue
                left = deadline - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                try:
                    self._flush()
                except AuditError:
                    return  # ``_failed`` is set: the next record() says so to its caller

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- counters -------------------------------------------------------------------
    @property
    def counters(self) -> dict[CounterKey, int]:
        """Records written by this writer since it opened, keyed by ``(nic, queue, reason)``."""
        with self._lock:
            return dict(self._counts.by_queue)

    def statistics(self, nic: str | None, queue: int | None, kind: str | None = None) -> dict[str, int]:
        """Per-reason counts of one queue, as ``XDP_STATISTICS`` reports per socket (sorted by reason).

        ``kind`` ("tx", "rx", ...) separates a NIC's TX queue n from its RX queue n,
        as XDP_STATISTICS separates ``tx_invalid_descs`` from ``rx_invalid_descs``.
        """
        with self._lock:
            return self._counts.statistics(nic, queue, kind)

    def records_of(self, nic: str | None, queue: int | None, kind: str) -> int:
        """Records of one queue and kind written since the log opened, every reason (``AuditCounters.records``)."""
        with self._lock:
            return self._counts.records(nic, queue, kind)

    @property
    def capacity(self) -> int:
        """Records held in memory for ``since``: none, they are in the file (``verifier/audit/read.py`` reads it)."""
        return 0

    def since(self, seq: int) -> list[dict[str, Any] | RecordSpan]:
        """Held records from ``seq`` on: none (``capacity`` 0)."""
        return []

    @property
    def disk(self) -> DiskUse:
        """Bytes written by this writer, and the files of the log kept and pruned (for a command's last line)."""
        with self._lock:
            kept = sum(size for _, size in self._rotated) + self._size
            return DiskUse(self._written, len(self._rotated) + 1, kept, self._pruned_files, self._pruned_bytes)

    @property
    def pending(self) -> int:
        """Records recorded but not yet written (never more than ``max_pending``, or the group's ``records``)."""
        return self._pending_records

    @property
    def head(self) -> str:
        """The hash of the newest record (``GENESIS`` for an empty log): anchor it elsewhere."""
        return self._prev

    @property
    def next_seq(self) -> int:
        return self._seq

    # -- writing ----------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise AuditError(f"{self.path}: audit log is closed")
        if self._failed is not None:
            raise AuditError(f"{self.path}: audit log failed earlier ({self._failed}); refusing records")

    def _flush(self) -> None:
        """Write every pending line, fsync per policy, rotating at record (v1) or checkpoint (v2) boundaries.

        v2 closes what waits with one checkpoint line: one hash over the
        pending bytes, one write of the batch and its checkpoint together.
        """
        self._deadline = None
        if not self._pending_records:
            return
        records, self._pending_records = self._pending_records, 0
        started = time.monotonic_ns()
        try:
            if self.schema == SCHEMA_V2:
                held = self._lines
                linker = self._compiled_chainer()
                digest = None if linker is None else linker.checkpoint(held, self._seq - 1, records, self._prev)
                if digest is None:
                    line, digest = checkpoint_line(self._prev, held.view(), self._seq - 1, records)
                    held.append(line)  # the batch and its checkpoint in one write, from where they were formatted
                data = held.view()
                held.clear()
                self._size += len(data)
                self._write(data)
                self._prev = digest
                if self._over_size():
                    self._rotate()
            else:
                held = self._lines
                data = held.view()
                held.clear()
                self._write_lines(data)
        except OSError as e:
            self._failed = e
            raise AuditError(f"{self.path}: cannot write the audit log: {e}") from e
        self.acknowledged = self._seq - 1
        if self.on_durable is not None and self.fsync != "never":
            self.on_durable(self.acknowledged, started, time.monotonic_ns())

    def _write(self, data: bytes | memoryview) -> None:
        """Write ``data``, flush it to the OS and fsync per policy."""
        self._file.write(data)
        self._written += len(data)
        self._file.flush()
        if self.fsync != "never":
            os.fsync(self._file.fileno())

    def _write_lines(self, data: memoryview) -> None:
        """v1: write the lines, rotating after the line that takes the file past ``rotate_bytes``."""
        total = len(data)
        if self.rotate_bytes is None or self._size + total <= self.rotate_bytes:
            self._size += total  # no rotation in this write: one write, no per-line bookkeeping
            self._write(data)
            return
        lines = [line + b"\n" for line in bytes(data).split(b"\n")[:-1]]  # cut at the line that crosses
        start = 0
        while start < len(lines):
            end = start
            while end < len(lines):
                self._size += len(lines[end])
                end += 1
                if self._over_size():
                    break
            self._write(b"".join(lines[start:end]))
            if self._over_size():
                self._rotate()
            start = end

    def _over_size(self) -> bool:
        return self.rotate_bytes is not None and self._size > self.rotate_bytes

    def _rotate(self) -> None:
        self._file.close()
        target = self.path.with_name(f"{self.path.name}.{self._next_rotation}")
        os.rename(self.path, target)
        self._rotated.append((target, self._size))
        self._next_rotation += 1
        self._file = self.path.open("ab")
        self._size = 0
        self._prune()
        if self.fsync != "never":  # make the rename and the new file durable too
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _prune(self) -> None:
        """Delete the oldest rotated files while the log is over ``max_bytes``; note the pruned head first.

        The newest rotated file is always kept (the active file has just been
        started empty), so a reopened log still finds its last record.  The
        marker is written before any file is deleted: a crash in between
        leaves a marker naming records that are still on disk, which
        ``verify`` reads as an intact chain, never the other way round.
        """
        if self.max_bytes is None:
            return
        total = sum(size for _, size in self._rotated) + self._size
        doomed = 0
        while doomed < len(self._rotated) - 1 and total > self.max_bytes:
            total -= self._rotated[doomed][1]
            doomed += 1
        if doomed == 0:
            return
        start = file_start(self._rotated[doomed][0])
        if start is None:  # pragma: no cover - this writer wrote that file whole
            raise AuditError(f"{self._rotated[doomed][0]}: cannot read its first record; not pruning")
        files = self._pruned_files + doomed
        size = self._pruned_bytes + sum(size for _, size in self._rotated[:doomed])
        base_files, base_bytes = self._pruned_base
        write_pruned(self.path, start[0], start[1], base_files + files, base_bytes + size)
        for path, _ in self._rotated[:doomed]:
            path.unlink(missing_ok=True)
        self._rotated = self._rotated[doomed:]
        self._pruned_files, self._pruned_bytes = files, size
