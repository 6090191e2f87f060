"""The writer's hash chain in one compiled call per batch: schema v1's (encode.c ``enc_chain``, and
``enc_template_chain``, which formats a doorbell's refusals and chains them in the same pass) and schema v2's
checkpoint (``enc_checkpoint``).

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

v2 hashes once per batch, at its checkpoint; C writes the checkpoint line
behind the batch's lines and hashes them with the same libcrypto context
(log.py ``checkpoint_line`` with hashlib is what it is held to).

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
from verifier.audit.encode import CHAIN, ERR_SHAPE
from verifier.audit.line_buffer import LineBuffer
from verifier.audit.programs import Program, row_arrays
from verifier.audit.rejection_batch import RejectionBatch

#: Hex digits of a hash, and the most bytes ``enc_chain`` adds to a tail beyond the lead (encode.h).
HASH_HEX, CHAIN_ROW = CHAIN["ENC_HASH_HEX"], CHAIN["ENC_CHAIN_ROW"]
#: The most bytes of a v2 checkpoint line (encode.h, ``enc_checkpoint``).
CHECKPOINT_MAX = CHAIN["ENC_CHECKPOINT_MAX"]
#: Where a line's ``hash`` is, counted back from the line's end: ``<64 hex>"}`` and the newline.
HASH_FROM_END = HASH_HEX + 3


class Chainer:
    """encode.c's ``enc_chain`` (and its one-pass ``enc_template_chain``, and v2's ``enc_checkpoint``) with a
    libcrypto SHA-256 context of its own, and the chain's hash and line ends in buffers handed over as pointers
    made once, not per call."""

    def __init__(self, fast: compiled.Compiled, handed: Any, ctx: Any) -> None:
        self.fast = fast
        self._handed = handed
        self._ctx = ctx  # what ``handed`` points at: alive as long as this
        self._prev = bytearray(HASH_HEX)
        self._prev_at = fast.ffi.from_buffer("uint8_t[]", self._prev)
        self._ends: npt.NDArray[np.uint64] = np.empty(0, dtype=np.uint64)
        self._ends_at: Any = None
        self._room_for(256)

    def _room_for(self, n: int) -> npt.NDArray[np.uint64]:
        """The line ends of ``n`` lines: the buffer, grown when short (its pointer made again then only)."""
        if len(self._ends) < n:
            self._ends = np.empty(max(n, 2 * len(self._ends)), dtype=np.uint64)
            self._ends_at = self.fast.ffi.from_buffer("uint64_t[]", self._ends)
        return self._ends

    def _start(self, prev: str) -> bool:
        """``prev`` into the buffer C reads and writes it in; False: not a hash's length."""
        if len(prev) != HASH_HEX:
            return False
        self._prev[:] = prev.encode("ascii")
        return True

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
        if n <= 0 or first < 0 or first + n > 2**63 or not self._start(prev):
            return None
        if readings is not None and (readings.dtype != np.int64 or readings.shape != (n, 2)):
            return None
        self._room_for(n)
        lead_len = 0 if lead is None else len(lead)
        capacity = len(tails) + n * (lead_len + CHAIN_ROW)
        written: int = self.fast.lib.enc_chain(
            ffi.from_buffer("uint8_t[]", tails),
            len(tails),
            n,
            ffi.NULL if lead is None else lead,
            lead_len,
            first,
            ffi.NULL if readings is None else ffi.from_buffer("int64_t[]", np.ascontiguousarray(readings)),
            self._prev_at,
            self._handed,
            out.free(ffi, capacity),
            capacity,
            self._ends_at,
        )
        return None if written < 0 else self.result(written, n)

    def chain_rejections(
        self,
        program: Program,
        rows: RejectionBatch,
        lead: bytes,
        first: int,
        readings: npt.NDArray[np.int64] | None,
        prev: str,
        out: LineBuffer,
    ) -> int:
        """``chain`` of ``rows``'s lines from the rejection template ``program`` (its rows without lead, seq and
        stamp, ending ``,"prev":"``) in one pass, ``enc_template_chain``: no tails written first.  Returns encode.c's
        answer: the bytes written after what ``out`` holds (``result`` then says the rest), or a refusal (nothing
        taken, ``prev`` unchanged)."""
        n = len(rows)
        if first < 0 or first + n > 2**63 or not self._start(prev):
            return ERR_SHAPE
        if readings is not None and (readings.dtype != np.int64 or readings.shape != (n, 2)):
            return ERR_SHAPE
        self._room_for(n)
        ffi = self.fast.ffi
        capacity = n * (len(lead) + CHAIN_ROW + program.row_max)
        written: int = self.fast.lib.enc_template_chain(
            program.specs,
            program.columns,
            *row_arrays(ffi, rows),
            lead,
            len(lead),
            first,
            n,
            ffi.NULL if readings is None else ffi.from_buffer("int64_t[]", readings),
            self._prev_at,
            self._handed,
            out.free(ffi, capacity),
            capacity,
            self._ends_at,
        )
        return written

    def result(self, written: int, n: int) -> tuple[int, str, npt.NDArray[np.uint64]]:
        """What ``chain`` returns, for ``chain_rejections``'s last ``written`` bytes of ``n`` lines."""
        return written, self._prev.decode("ascii"), self._ends[:n]

    def checkpoint(self, held: LineBuffer, last: int, records: int, prev: str) -> str | None:
        """v2: append the checkpoint line closing ``held``'s lines (``records`` records ending at seq ``last``)
        after them, ``enc_checkpoint``: the hash of ``prev``, the lines and the checkpoint in the same call.
        Returns the checkpoint's hash, or None: refused (nothing appended; the caller closes the batch in Python)."""
        if last < 0 or records <= 0 or not self._start(prev):
            return None
        ffi = self.fast.ffi
        held.room(CHECKPOINT_MAX)
        used = held.used
        written: int = self.fast.lib.enc_checkpoint(
            held.pointer(ffi), used, used + CHECKPOINT_MAX, last, records, self._prev_at, self._handed
        )
        if written < 0:
            return None
        held.take(written)
        return self._prev.decode("ascii")


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
