"""The device's compiled burst path (fastdev.c, declared in fastdev.h), as the engines load it.

Why: the numpy engines spend a burst of 256 small frames in some thirty
array calls (descriptor fetch, range checks, gather, write-back; on the
receive side fetch, scatter, write-back), most of it call overhead.  One
compiled call does the plain burst; anything else (fragments, DEXT, the
checksum offload, padding, a range outside memory, an IOMMU in the way, or
DMA observers such as the fuzzer's oracle that must see every access batch)
goes to the numpy engine, which stays the semantics: tests hold the two to
the same frames, bytes in memory and counters.

Loaded once per process through ring/compiled.py, which refuses a stale or
mismatched module; ``NIC_SANDBOX_FASTPATH=0`` runs the numpy engines alone.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from ring import compiled
from ring.cbuild import FASTDEV
from ring.descriptors import ETH_MIN_FRAME, MAX_TX_PACKET
from ring.frames import FrameBatch
from ring.frames import gather as numpy_gather
from ring.frames import scatter as numpy_scatter

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

LOG = logging.getLogger(__name__)


@cache
def state() -> tuple[compiled.Compiled | None, str]:
    """The burst path the engines may use (or None), and the one line that says what the device runs."""
    constants = {"FASTDEV_MIN_FRAME": ETH_MIN_FRAME, "FASTDEV_MAX_TX_PACKET": MAX_TX_PACKET}
    return compiled.loaded(FASTDEV, constants, "device burst path", "the device runs its numpy engines", LOG)


def enabled() -> compiled.Compiled | None:
    return state()[0]


def status() -> str:
    return state()[1]


def batch_pointers(fast: compiled.Compiled, frames: FrameBatch) -> tuple[Any, Any]:
    """C pointers to a batch's bytes and its lengths (``uint8_t *``, ``int64_t *``), made contiguous first.

    The caller keeps ``frames`` alive for the call.
    """
    data = np.ascontiguousarray(frames.data)
    lengths = np.ascontiguousarray(frames.lengths)
    return fast.ffi.from_buffer("uint8_t[]", data), fast.ffi.from_buffer("int64_t[]", lengths)


def gather(src: U8, starts: I64, lengths: I64) -> U8:
    """``ring.frames.gather``, as one compiled copy when the module is here (the ranges are the caller's to check)."""
    fast = enabled()
    if fast is None:
        return numpy_gather(src, starts, lengths)
    starts, lengths = np.ascontiguousarray(starts, np.int64), np.ascontiguousarray(lengths, np.int64)
    out = np.empty(int(lengths.sum()), dtype=np.uint8)
    ffi = fast.ffi
    fast.lib.gather_ranges(ffi.from_buffer("uint8_t[]", src), ffi.from_buffer("int64_t[]", starts),
                           ffi.from_buffer("int64_t[]", lengths), starts.size,
                           ffi.from_buffer("uint8_t[]", out))  # fmt: skip
    return out


def scatter(dst: U8, starts: I64, lengths: I64, data: U8) -> None:
    """``ring.frames.scatter``, as one compiled copy when the module is here (the ranges are the caller's to check)."""
    fast = enabled()
    if fast is None:
        numpy_scatter(dst, starts, lengths, data)
        return
    starts, lengths = np.ascontiguousarray(starts, np.int64), np.ascontiguousarray(lengths, np.int64)
    data = np.ascontiguousarray(data, np.uint8)
    ffi = fast.ffi
    fast.lib.scatter_ranges(ffi.from_buffer("uint8_t[]", dst), ffi.from_buffer("int64_t[]", starts),
                            ffi.from_buffer("int64_t[]", lengths), starts.size,
                            ffi.from_buffer("uint8_t[]", data))  # fmt: skip
