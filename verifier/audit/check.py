"""``audit verify``'s compiled line check (check.c, declared in check.h), as ``verify`` uses it.

Why: verifying an intact log is proving that every line is exactly what
the writer writes (the hash over the bytes proves the rest).  Decoding each
line into a record and encoding it again to compare, even with msgspec
(verifier/audit/fast_read.py), costs about two microseconds a record; the
goal is a million records a second.  ``lines_ok`` checks a batch's lines in
one C pass over their bytes against the one form the writer produces, and
builds no record: ``verify`` without ``on_record`` needs none.

It answers True (every line canonical and of the schema, seqs in order)
or False (not sure): then msgspec and the reference decide, as without it.
So it may refuse what the reference accepts, never the reverse
(tests/verifier/test_audit_check.py holds it to the reference on random
and hostile lines).  What C does not judge -- a ``wall`` naming a real
date -- comes back as the batch's distinct seconds, asked of the reference
once each.

Loaded once per process through ring/compiled.py, which refuses a stale or
mismatched module; the tables check.c restates (keys, kinds, ranges, reason
pattern and length) are compared here with their declarations in
verifier/audit/log.py and read.py, and a module that differs is refused.
``chain`` links a v1 chunk those lines passed in one more C call (check.c
``chk_chain``), hashing with the system's libcrypto
(verifier/audit/libcrypto.py) instead of one hashlib call per record from
Python; without libcrypto the caller hashes with hashlib as before.
``lines_and_chain`` and ``ahead`` run those C calls for a large chunk, or for
several chunks, on up to ``os.cpu_count()`` threads (``pool``; cffi releases
the GIL around each call) with the serial answers: wall time, not CPU time
(docs/audit-log.md).
``NIC_SANDBOX_FASTPATH=0`` (or no C compiler) leaves ``verify`` as it was:
every batch through msgspec, then the reference.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

from ring import compiled
from ring.cbuild import CHECK
from verifier.audit import libcrypto
from verifier.audit.log import FIELDS, FIELDS_V2, KINDS, MAX_REASON, REASON_RE, SCHEMA_V2, SCHEMA_VERSION

LOG = logging.getLogger(__name__)

#: The highest seq (``RANGES["seq"]``): a batch said to start past it is not this check's to judge.
SEQ_MAX = 2**63 - 1
#: The form of a ``wall`` check.c accepts (``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ``) and the part naming its second.
WALL_CHARS, SECOND_CHARS = 30, 19
#: check.h's constants, checked against the module when it loads.
CONSTANTS = {
    "CHK_MAX_REASON": MAX_REASON,
    "CHK_DESC_HEX": 32,
    "CHK_HASH_HEX": 64,
    "CHK_WALL": WALL_CHARS,
    "CHK_SECOND": SECOND_CHARS,
    "CHK_UNSURE": 0,
}
FALLBACK = "audit verify decodes every batch with msgspec"


def _tables_differ(fast: compiled.Compiled) -> str | None:
    """What check.c's tables say that verifier/audit/log.py and read.py do not (None: they agree)."""
    from verifier.audit.read import RANGES  # read.py imports this module: its tables are there once it runs

    def text(c_string: object) -> str:
        return str(fast.ffi.string(c_string).decode())

    ranges = ",".join(f"{name}:{low}:{high}" for name, (low, high) in RANGES.items())
    wanted = {
        "fields v1": (text(fast.lib.chk_fields(SCHEMA_VERSION)), ",".join(FIELDS)),
        "fields v2": (text(fast.lib.chk_fields(SCHEMA_V2)), ",".join(FIELDS_V2)),
        "kinds": (text(fast.lib.chk_kinds()), ",".join(KINDS)),
        "ranges": (text(fast.lib.chk_ranges()), ranges),
        "reason": (text(fast.lib.chk_reason_pattern()), REASON_RE.pattern),
    }
    wrong = [f"{name} {c!r}, Python says {py!r}" for name, (c, py) in wanted.items() if c != py]
    return "; ".join(wrong) or None


@cache
def state() -> tuple[compiled.Compiled | None, str]:
    """The line check ``verify`` may use (or None), and the one line that says what checks a batch's lines."""
    label = "audit verify line check"
    fast, line = compiled.loaded(CHECK, CONSTANTS, label, FALLBACK, LOG)
    if fast is None:
        return None, line
    differ = _tables_differ(fast)
    if differ is not None:
        line = f"{label}: refused, its tables differ from verifier/audit/: {differ}; {FALLBACK}"
        LOG.warning(line)
        return None, line
    return fast, line


def enabled() -> compiled.Compiled | None:
    return state()[0]


def status() -> str:
    return state()[1]


def lines_ok(raw: bytes | memoryview, n: int, expected: int, schema: int, wall_ok: Callable[[str], bool]) -> bool:
    """True when ``raw`` is ``n`` whole lines, each the canonical encoding of a record of ``schema`` with seqs
    ``expected`` on, every ``wall`` a real date by ``wall_ok`` (the reference's, asked once per distinct second);
    False when anything fails or the check is not compiled (not sure: the caller decides another way)."""
    fast = enabled()
    if fast is None or n <= 0 or not 0 <= expected <= SEQ_MAX:  # a hostile first seq: past what C takes
        return False
    walls = _walls(fast, raw, n, expected, schema)
    return walls is not None and _walls_ok(raw, walls, wall_ok)


def _walls(fast: compiled.Compiled, raw: bytes | memoryview, n: int, expected: int, schema: int) -> list[int] | None:
    """check.c's ``chk_lines``: where each ``wall`` to ask about starts, or None (not sure).  No Python is called
    back, so a worker thread can run it (cffi releases the GIL for the call)."""
    walls = fast.ffi.new("uint64_t[]", n)
    found = fast.lib.chk_lines(fast.ffi.from_buffer(raw), len(raw), n, expected, schema, walls, n)
    return None if found <= 0 else list(walls[0:found])


def _walls_ok(raw: bytes | memoryview, walls: list[int], wall_ok: Callable[[str], bool]) -> bool:
    return all(wall_ok(bytes(raw[at : at + WALL_CHARS]).decode("ascii")) for at in walls)


def find_line(data: bytes, start: int, prefix: bytes) -> tuple[int, int] | None:
    """Where the first line of ``data`` at or after ``start`` (a line's start) that begins with ``prefix`` begins
    (-1: none), and the newlines before it from ``start`` (to the end when none); None when not compiled."""
    fast = enabled()
    if fast is None or not 0 <= start <= len(data):
        return None
    lines = fast.ffi.new("uint64_t *")
    at = fast.lib.chk_find_line(data, len(data), start, prefix, len(prefix), lines)
    return int(at), int(lines[0])


def chain(raw: bytes | memoryview, n: int, prev: str) -> int | None:
    """How many of the ``n`` v1 lines ``raw`` (already passed by ``lines_ok``) link, the first from ``prev``
    (``n``: the whole chunk chains; fewer: that line does not, or its digest failed) -- check.c's ``chk_chain``
    with libcrypto's SHA-256 (verifier/audit/libcrypto.py: its SHA256_* functions when it has them, else EVP).
    None: not compiled or no libcrypto (hash in Python).  Safe on any thread: each call has its own context."""
    fast, sha = enabled(), libcrypto.digest()
    if fast is None or sha is None or n <= 0 or len(prev) != 64 or not prev.isascii():
        return None
    ffi = fast.ffi
    arguments = ffi.new("struct chk_sha256 *")
    arguments.md = ffi.cast("void *", sha.address(sha.md))
    libcrypto.point(arguments, ffi, "struct chk_sha256", sha.addresses)
    direct, ctx = libcrypto.direct(), None
    if direct is not None:  # a SHA256_CTX on chk_chain's stack: no EVP context
        libcrypto.point(arguments, ffi, "struct chk_sha256", direct.addresses)
    else:
        ctx = sha.context()
        if ctx is None:
            return None
        arguments.ctx = ffi.cast("void *", sha.address(ctx))
    return int(fast.lib.chk_chain(ffi.from_buffer(raw), len(raw), n, prev.encode("ascii"), arguments))


#: The least bytes of a part ``lines_and_chain`` hands to a thread of its own (about 430 lines of a v1 log, some
#: 0.3 ms of work): a smaller chunk, and so a small log, is checked on the calling thread alone.
MIN_PART_BYTES = 256 << 10


def threads() -> int:
    """Threads ``verify``'s C calls may run on (``lines_and_chain``, ``ahead``, v2's ``read_v2.prechecked``): the
    CPUs this process may use, at most ``os.cpu_count()``."""
    count = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this system
        usable = count
    return max(1, min(count, usable))


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def pool() -> ThreadPoolExecutor:
    """The workers beside the calling thread (``threads() - 1``), made on first use, made again in a forked child
    (a pool's threads do not survive ``fork``)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=threads() - 1, thread_name_prefix="audit-verify"))
    return _POOL[1]


def _parts(raw: bytes | memoryview, n: int) -> list[tuple[int, int, int, int]]:
    """``raw`` (``n`` lines) cut at line ends into up to ``threads()`` parts of at least ``MIN_PART_BYTES``, as
    (start, end, first line, lines); one part (the whole) when it is too small or has fewer lines than said."""
    count = min(threads(), len(raw) // MIN_PART_BYTES, n)
    whole = [(0, len(raw), 0, n)]
    if count <= 1:
        return whole
    parts, start, first = [], 0, 0
    for k in range(1, count):
        line = n * k // count
        found = line_end(raw, start, line - first)
        if found is None or found[0] < 0:
            return whole
        parts.append((start, found[0], first, line - first))
        start, first = found[0], line
    parts.append((start, len(raw), first, n - first))
    return parts


def _part(raw: memoryview, n: int, expected: int, prev: str) -> tuple[list[int] | None, int | None]:
    """One part's line check (the ``wall`` offsets to ask about, None: not sure) and, when it passes, its chain walk
    from ``prev`` (``chain``'s answer): C calls only, run on a worker thread."""
    fast = enabled()
    walls = None if fast is None else _walls(fast, raw, n, expected, SCHEMA_VERSION)
    return walls, None if walls is None else chain(raw, n, prev)


def lines_and_chain(
    raw: bytes | memoryview, n: int, expected: int, prev: str, wall_ok: Callable[[str], bool]
) -> tuple[bool, int | None]:
    """``lines_ok(raw, n, expected, 1, wall_ok)`` and, when it holds, ``chain(raw, n, prev)``: a v1 chunk checked
    and linked, the same answers as those two calls, on up to ``threads()`` threads when the chunk is large.

    Each v1 line states its own ``prev``, so the chunk is cut at line ends into parts checked at once, each part
    but the first chained from the ``hash`` its previous part's last line states; the parts join when every earlier
    part links to its end (then that stated hash is the computed one, and the part starts where the serial walk
    would).  The count is the serial walk's: summed over the parts up to the first that stops short.  A line check
    is decided by its bytes and seq alone, so parts pass exactly when the whole does; ``wall_ok`` (Python) is asked
    on this thread.  cffi releases the GIL around each C call, so the parts run on separate cores: wall time falls,
    CPU time does not (docs/audit-log.md).
    """
    if enabled() is None or n <= 0 or not 0 <= expected <= SEQ_MAX:
        return False, None
    parts = _parts(raw, n)
    if len(parts) == 1:
        if not lines_ok(raw, n, expected, SCHEMA_VERSION, wall_ok):
            return False, None
        return True, chain(raw, n, prev)
    view = memoryview(raw)
    jobs = []
    for start, end, first, lines in parts[1:]:
        stated = bytes(view[start - 67 : start - 3]).decode("latin-1")  # ``"hash":"<64>"}\n`` ends the line before
        jobs.append(pool().submit(_part, view[start:end], lines, expected + first, stated))
    start, end, _, lines = parts[0]
    results = [_part(view[start:end], lines, expected, prev)] + [job.result() for job in jobs]
    for (start, end, _, _), (walls, _) in zip(parts, results, strict=True):
        if walls is None or not _walls_ok(view[start:end], walls, wall_ok):
            return False, None
    linked = 0
    for (_, _, _, lines), (_, count) in zip(parts, results, strict=True):
        if count is None:
            return True, None
        linked += count
        if count < lines:
            break
    return True, linked


@dataclass(frozen=True)
class Ahead:
    """A v1 chunk's ``_part`` answers (its ``wall`` offsets or None, then its chain count), asked ahead on a worker
    thread for a chunk starting at seq ``expected`` chained from ``prev``: valid only if the walk gets there so."""

    expected: int
    prev: str
    walls: list[int] | None
    linked: int | None

    def answer(self, raw: bytes | memoryview, wall_ok: Callable[[str], bool]) -> tuple[bool, int | None]:
        """``lines_and_chain``'s answer from these (the ``wall``s asked of Python here, on the calling thread)."""
        if self.walls is None or not _walls_ok(raw, self.walls, wall_ok):
            return False, None
        return True, self.linked


def _ask(raw: bytes | memoryview, n: int, expected: int, prev: str) -> Ahead:
    if n <= 0 or not 0 <= expected <= SEQ_MAX:
        return Ahead(expected, prev, None, None)
    return Ahead(expected, prev, *_part(memoryview(raw), n, expected, prev))


def ahead(asks: list[tuple[bytes | memoryview, int, int, str | None]]) -> list[Ahead | None]:
    """Each v1 chunk ``(raw, n, expected, prev)`` checked and chained ahead (``_part``), the chunks shared among up
    to ``threads()`` threads, each at least ``MIN_PART_BYTES`` of them; None for a chunk without ``prev`` and for
    every chunk when they are too few bytes to share (``verify`` then asks ``lines_and_chain`` of each)."""
    size = sum(len(raw) for raw, *_ in asks)
    count = min(threads(), len(asks), size // MIN_PART_BYTES)
    if enabled() is None or count <= 1:
        return [None] * len(asks)
    cuts = [len(asks) * k // count for k in range(count + 1)]

    def share(part: list[tuple[bytes | memoryview, int, int, str | None]]) -> list[Ahead | None]:
        return [None if prev is None else _ask(raw, n, expected, prev) for raw, n, expected, prev in part]

    jobs = [pool().submit(share, asks[cuts[k] : cuts[k + 1]]) for k in range(1, count)]
    answers = share(asks[: cuts[1]])
    for job in jobs:
        answers += job.result()
    return answers


def line_end(data: bytes | memoryview, start: int, n: int) -> tuple[int, int] | None:
    """Where the ``n``th newline of ``data`` after ``start`` ends (-1: fewer follow), and the newlines seen (``n``
    when there are enough); None when not compiled."""
    fast = enabled()
    if fast is None or not 0 <= start <= len(data) or n < 0:
        return None
    found = fast.ffi.new("uint64_t *")
    end = fast.lib.chk_line_end(fast.ffi.from_buffer(data), len(data), start, n, found)
    return int(end), int(found[0])
