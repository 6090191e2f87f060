"""The schema v1 writer's hash chain in one compiled call per batch (encode.c ``enc_chain``).

Why: a v1 record carries its own chain hash, SHA-256 over the previous
hash and the record's bytes (verifier/audit/log.py ``chain_hash``).  Done
from Python that is one ``hashlib.sha256`` call, a ``hexlify`` and three
concatenations per record, and the record's clock reading and its
formatting another few calls: about two and a half microseconds of a
record's four, around a third of a microsecond of actual hashing.  Here a
batch's tails (its records' bytes after the clock stamp, written by the
compiled templates or the column formatter) go to C once: it puts the
version, seq and clock stamp before each, the chain after, and hashes with
the system's libcrypto -- the library hashlib itself uses, opened at run
time as ``audit verify`` opens it (verifier/audit/libcrypto.py), not a copy
of anyone's SHA-256.

The clock: when the writer's clock is the default ``system_clock``, C reads
it per record itself (``clock_gettime`` of ``CLOCK_REALTIME`` and
``CLOCK_MONOTONIC``: what ``time.time_ns`` and ``time.monotonic_ns`` read);
any other clock (the deterministic virtual one) is read in Python, once
per record in order as before, and the readings are handed over.

Python's chain (log.py ``AuditLog._chain``) stays the semantics: without
the compiled formatter or libcrypto (or ``NIC_SANDBOX_FASTPATH=0``) it runs
alone, and tests/verifier/test_audit_chaining.py holds both to the same
bytes and heads.  One ``Chainer`` per log: its digest context is used by
one thread at a time (the log's lock).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ring import compiled
from verifier.audit import libcrypto
from verifier.audit.encode import CHAIN
from verifier.audit.line_buffer import LineBuffer

#: Hex digits of a hash, and the most bytes ``enc_chain`` adds to a tail beyond the lead (encode.h).
HASH_HEX, CHAIN_ROW = CHAIN["ENC_HASH_HEX"], CHAIN["ENC_CHAIN_ROW"]
#: Where a line's ``hash`` is, counted back from the line's end: ``<64 hex>"}`` and the newline.
HASH_FROM_END = HASH_HEX + 3


class Chainer:
    """encode.c's ``enc_chain`` with a libcrypto SHA-256 context of its own."""

    def __init__(self, fast: compiled.Compiled, handed: Any, ctx: Any) -> None:
        self.fast = fast
        self._handed = handed
        self._ctx = ctx  # what ``handed`` points at: alive as long as this
        self._prev = bytearray(HASH_HEX)
        self._ends: npt.NDArray[np.uint64] = np.empty(256, dtype=np.uint64)

    def chain(
        self,
        tails: bytes | memoryview | npt.NDArray[np.uint8],
        n: int,
        lead: bytes | None,
        first: int,
        readings: npt.NDArray[np.int64] | None,
        prev: str,
        out: LineBuffer,
    ) -> tuple[int, str, npt.NDArray[np.uint64]] | None:
        """Write ``n`` chained lines after what ``out`` holds (not taken: ``out.take``), from ``prev`` on.

        ``tails``: ``n`` newline-ended tails, each ending ``,"prev":"``; ``lead`` the bytes before each seq
        (None: the tails are whole bodies, seq and stamp in them); ``readings`` the clock's ``(wall, mono)``
        readings as an ``(n, 2)`` int64 array, or None: read the system clock in C.  Returns the bytes written,
        the last hash and where each line ends; None: refused (nothing taken, ``prev`` unchanged, no clock read
        that matters: the caller chains in Python).
        """
        ffi = self.fast.ffi
        if n <= 0 or first < 0 or first + n > 2**63 or len(prev) != HASH_HEX:
            return None
        if readings is not None and (readings.dtype != np.int64 or readings.shape != (n, 2)):
            return None
        self._prev[:] = prev.encode("ascii")
        if len(self._ends) < n:
            self._ends = np.empty(max(n, 2 * len(self._ends)), dtype=np.uint64)
        ends = self._ends
        lead_len = 0 if lead is None else len(lead)
        capacity = len(tails) + n * (lead_len + CHAIN_ROW)
        room = out.room(capacity)
        from_buffer = ffi.from_buffer
        written: int = self.fast.lib.enc_chain(
            from_buffer("uint8_t[]", tails),
            len(tails),
            n,
            ffi.NULL if lead is None else lead,
            lead_len,
            first,
            ffi.NULL if readings is None else from_buffer("int64_t[]", np.ascontiguousarray(readings)),
            from_buffer("uint8_t[]", self._prev),
            self._handed,
            from_buffer("uint8_t[]", room),
            capacity,
            from_buffer("uint64_t[]", ends),
        )
        if written < 0:
            return None
        return written, self._prev.decode("ascii"), ends[:n]


def chainer(fast: compiled.Compiled | None) -> Chainer | None:
    """A ``Chainer`` on the compiled formatter ``fast`` with a fresh libcrypto context; None: either is missing."""
    sha = libcrypto.digest()
    if fast is None or sha is None:
        return None
    handed = libcrypto.arguments(sha, fast.ffi, "struct enc_sha256")
    if handed is None:
        return None
    direct = libcrypto.direct()
    if direct is not None:  # SHA256_Init/Update/Final on enc_chain's stack: EVP's bookkeeping left out
        libcrypto.point(handed[0], fast.ffi, "struct enc_sha256", direct.addresses)
    return Chainer(fast, *handed)
