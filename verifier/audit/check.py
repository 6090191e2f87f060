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
``NIC_SANDBOX_FASTPATH=0`` (or no C compiler) leaves ``verify`` as it was:
every batch through msgspec, then the reference.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
    walls = fast.ffi.new("uint64_t[]", n)
    found = fast.lib.chk_lines(fast.ffi.from_buffer(raw), len(raw), n, expected, schema, walls, n)
    if found <= 0:
        return False
    return all(wall_ok(bytes(raw[at : at + WALL_CHARS]).decode("ascii")) for at in walls[0:found])


def find_line(data: bytes, start: int, prefix: bytes) -> tuple[int, int] | None:
    """Where the first line of ``data`` at or after ``start`` (a line's start) that begins with ``prefix`` begins
    (-1: none), and the newlines before it from ``start`` (to the end when none); None when not compiled."""
    fast = enabled()
    if fast is None or not 0 <= start <= len(data):
        return None
    lines = fast.ffi.new("uint64_t *")
    at = fast.lib.chk_find_line(data, len(data), start, prefix, len(prefix), lines)
    return int(at), int(lines[0])


#: check.h's pointer type of each function of ``struct chk_sha256``.
DIGEST_TYPES = {"init": "chk_digest_init", "update": "chk_digest_update", "final": "chk_digest_final"}


def chain(raw: bytes | memoryview, n: int, prev: str) -> int | None:
    """How many of the ``n`` v1 lines ``raw`` (already passed by ``lines_ok``) link, the first from ``prev``
    (``n``: the whole chunk chains; fewer: that line does not, or its digest failed) -- check.c's ``chk_chain``
    with libcrypto's SHA-256 (verifier/audit/libcrypto.py).  None: not compiled or no libcrypto (hash in Python)."""
    fast, sha = enabled(), libcrypto.digest()
    if fast is None or sha is None or n <= 0 or len(prev) != 64 or not prev.isascii():
        return None
    ctx = sha.context()
    if ctx is None:
        return None
    ffi = fast.ffi
    arguments = ffi.new("struct chk_sha256 *")
    arguments.ctx = ffi.cast("void *", sha.address(ctx))
    arguments.md = ffi.cast("void *", sha.address(sha.md))
    for field, kind in DIGEST_TYPES.items():
        setattr(arguments, field, ffi.cast(kind, sha.addresses[field]))
    return int(fast.lib.chk_chain(ffi.from_buffer(raw), len(raw), n, prev.encode("ascii"), arguments))


def line_end(data: bytes | memoryview, start: int, n: int) -> tuple[int, int] | None:
    """Where the ``n``th newline of ``data`` after ``start`` ends (-1: fewer follow), and the newlines seen (``n``
    when there are enough); None when not compiled."""
    fast = enabled()
    if fast is None or not 0 <= start <= len(data) or n < 0:
        return None
    found = fast.ffi.new("uint64_t *")
    end = fast.lib.chk_line_end(fast.ffi.from_buffer(data), len(data), start, n, found)
    return int(end), int(found[0])
