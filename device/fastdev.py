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

from ring import compiled, regs
from ring.cbuild import FASTDEV
from ring.descriptors import ETH_MIN_FRAME, MAX_TX_PACKET
from ring.frames import FrameBatch
from ring.frames import gather as numpy_gather
from ring.frames import scatter as numpy_scatter

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

LOG = logging.getLogger(__name__)


def _word(offset: int) -> int:
    return offset // regs.REG_WIDTH


#: What the two kicks (tx_kick, rx_arrive) read of the register file, as ring/regs.py declares it.
REGISTER_CONSTANTS = {
    "FASTDEV_REG_CTRL": _word(regs.CTRL),
    "FASTDEV_REG_STATUS": _word(regs.STATUS),
    "FASTDEV_REG_RCTL": _word(regs.RCTL),
    "FASTDEV_REG_TCTL": _word(regs.TCTL),
    "FASTDEV_REG_RAL0": _word(regs.RAL0),
    "FASTDEV_REG_RDBAL": _word(regs.RDBAL),
    "FASTDEV_REG_RDBAH": _word(regs.RDBAH),
    "FASTDEV_REG_RDLEN": _word(regs.RDLEN),
    "FASTDEV_REG_RDH": _word(regs.RDH),
    "FASTDEV_REG_RDT": _word(regs.RDT),
    "FASTDEV_REG_TDBAL": _word(regs.TDBAL),
    "FASTDEV_REG_TDBAH": _word(regs.TDBAH),
    "FASTDEV_REG_TDLEN": _word(regs.TDLEN),
    "FASTDEV_REG_TDH": _word(regs.TDH),
    "FASTDEV_REG_TDT": _word(regs.TDT),
    "FASTDEV_QUEUE_STRIDE_WORDS": _word(regs.QUEUE_STRIDE),
    "FASTDEV_REG_COUNT": _word(regs.BAR0_SIZE),
    "FASTDEV_CTRL_RFCE": regs.CTRL_RFCE,
    "FASTDEV_STATUS_LU": regs.STATUS_LU,
    "FASTDEV_TCTL_EN": regs.TCTL_EN,
    "FASTDEV_RCTL_EN": regs.RCTL_EN,
    "FASTDEV_RCTL_LPE": regs.RCTL_LPE,
    "FASTDEV_RCTL_BSIZE_SHIFT": regs.RCTL_BSIZE_SHIFT,
    "FASTDEV_RCTL_BSEX": regs.RCTL_BSEX,
    "FASTDEV_RCTL_SECRC": regs.RCTL_SECRC,
    "FASTDEV_RAH_AV": regs.RAH_AV,
}


def u32(fast: compiled.Compiled, array: npt.NDArray[np.uint32]) -> Any:
    """A ``uint32_t *`` to a register file (the array must stay alive and contiguous)."""
    return fast.ffi.cast("uint32_t *", array.ctypes.data)


@cache
def state() -> tuple[compiled.Compiled | None, str]:
    """The burst path the engines may use (or None), and the one line that says what the device runs."""
    from device.e1000 import RAL_ENTRIES  # the engines import this module: declared there
    from device.rx_engine import MAX_STD_FRAME

    constants = {
        "FASTDEV_MIN_FRAME": ETH_MIN_FRAME,
        "FASTDEV_MAX_TX_PACKET": MAX_TX_PACKET,
        "FASTDEV_RAL_ENTRIES": RAL_ENTRIES,
        "FASTDEV_MAX_STD_FRAME": MAX_STD_FRAME,
        **REGISTER_CONSTANTS,
    }
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
