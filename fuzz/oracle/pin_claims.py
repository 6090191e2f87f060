"""The oracle's pin and access claims judged in one compiled pass (fuzz/oracle/pinclaim.c), for reasons.py.

Why: a refused hostile batch is mostly ADDR_NOT_PINNED, PIN_RELEASED and
ACCESS_NO_* records, and ``reasons._claim_status`` judges each such batch
in some forty whole-batch numpy calls (its first bad byte in range and in
memory, every frame before it pinned with the access, its own frame in the
state the reason describes): about a tenth of the oracle's time a batch.
The compiled pass answers the same per record in one call.  It is only
faster: the frame state it tests is a table made from the numpy predicate
itself, it says "not sure" when a frame lies outside the reference table,
and ``_claim_status`` (the semantics) then judges the batch.
tests/fuzz/test_oracle_fast_paths.py holds the two to the same statuses and
frames on hostile columns, and to the same verdicts on campaigns with a
wrong reason planted.

The oracle's own: it shares no code with verifier/ (whose refusals it
judges).  ``NIC_SANDBOX_FASTPATH=0`` switches it off with the other
accelerators (ring/compiled.py).
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import numpy.typing as npt

from ring import compiled
from ring.cbuild import PINCLAIM
from ring.memory import PAGE_SHIFT

#: pinclaim.h's statuses, in the order the oracle states a record's first contradicting fact.
TRUE, UNNAMED, OUTSIDE, BEFORE, FRAME = range(5)
UNSURE = -1


@functools.cache
def state() -> tuple[compiled.Compiled | None, str]:
    """The compiled pass (None: not loaded) and the line that says why, asked once per process."""
    constants = {
        "PINCLAIM_TRUE": TRUE,
        "PINCLAIM_UNNAMED": UNNAMED,
        "PINCLAIM_OUTSIDE": OUTSIDE,
        "PINCLAIM_BEFORE": BEFORE,
        "PINCLAIM_FRAME": FRAME,
        "PINCLAIM_UNSURE": UNSURE,
        "PINCLAIM_PAGE_SHIFT": PAGE_SHIFT,
    }
    return compiled.loaded(
        PINCLAIM,
        constants,
        "fuzz oracle's pin claims",
        "the numpy path judges them",
        logging.getLogger(__name__),
    )


def enabled() -> bool:
    """Whether the compiled pass is loaded (else ``judge`` always answers None)."""
    return state()[0] is not None


def judge(
    addr: npt.NDArray[np.uint64],
    length: npt.NDArray[np.uint64],
    bad: npt.NDArray[np.uint64],
    table: npt.NDArray[np.uint8],
    memory_size: int,
    need: int,
    frame_bad: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]] | None:
    """``reasons._claim_status``'s (status, frame) per record, or None when not loaded or not sure."""
    fast = state()[0]
    if fast is None:
        return None
    ffi, lib = fast.ffi, fast.lib
    n = addr.size
    addr, length, bad = (np.ascontiguousarray(a, dtype=np.uint64) for a in (addr, length, bad))
    status = np.empty(n, dtype=np.uint8)
    frame = np.empty(n, dtype=np.int64)
    if not table.flags.c_contiguous or table.dtype != np.uint8 or frame_bad.size != 256:
        return None
    wrong = lib.pinclaim_judge(
        n,
        ffi.cast("uint64_t *", ffi.from_buffer(addr)),
        ffi.cast("uint64_t *", ffi.from_buffer(length)),
        ffi.cast("uint64_t *", ffi.from_buffer(bad)),
        ffi.from_buffer(table),
        table.size,
        min(memory_size, 2**64 - 1),
        need & 0xFF,
        ffi.from_buffer(frame_bad),
        ffi.from_buffer(status),
        ffi.cast("int64_t *", ffi.from_buffer(frame)),
    )
    return None if wrong == UNSURE else (status, frame)
