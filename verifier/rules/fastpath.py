"""The compiled hot path of the verifier (fastpath.c, declared in fastpath.h), as the kernel loads it.

Why: a doorbell batch costs the numpy path a few dozen array calls of about
a microsecond each, most of it call overhead rather than work; one compiled
call does the snapshot, the checks and the post of a clean batch.  It is an
accelerator, not a second verifier: it accepts a batch only when every
descriptor passes the same rules as the numpy fast path, and otherwise hands
the snapshot it took (once) to the numpy checks, which stay the semantics
(tests compare the two).

The C is compiled when the package is installed (setup.py, cffi API mode:
ring/cbuild.py) into ``verifier.rules._fastpath``.  Before the kernel uses
it, ``state()`` makes sure it describes the descriptors the rest of the
project reads: every field's offset and size, each struct's size and the page
shift must equal ring/descriptors.py's dtypes and ring/memory.py's, and the
module must have been compiled from the sources beside it.  Otherwise, or
without a compiled module (no C compiler at install time), or with
``NIC_SANDBOX_FASTPATH=0``, the kernel runs the numpy checks alone, and
``status()`` says which in one line, logged once as a warning unless the
user chose it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np

from ring import compiled
from ring.cbuild import FASTPATH
from ring.compiled import SWITCH, Compiled
from ring.descriptors import TXD_CMD_EOP, TXD_CMD_IC
from ring.memory import PAGE_SHIFT
from verifier.pins import Access
from verifier.rules import reasons as R
from verifier.rules.checks import NO_OWNER, OWNER_SELF_UNPINNED

LOG = logging.getLogger(__name__)

#: What a compiled doorbell returns when it does not post (fastpath.h; checked against the module when it loads).
FP_DECLINED = -1  # nothing read: the tail is not plainly good, the step-by-step doorbell judges it
FP_REFUSE = -2  # the snapshot is taken, nothing posted: the numpy rules judge that snapshot

#: Each C struct the fast path reads (ring/descriptors.h) and the numpy dtype it must lay out exactly like.
STRUCTS: Mapping[str, np.dtype[Any]] = compiled.DESCRIPTOR_STRUCTS

#: What the compiled classification (fastpath.h ``tx_classify``/``rx_classify``) writes and reads, each checked
#: against its one declaration: the reason codes, the owner markers of a verdict, the access bits, the command bits.
CLASSIFY_CONSTANTS: Mapping[str, int] = {
    **{f"FP_R_{name}": R.BY_NAME[name].code for name in (
        "OK", "LEN_ZERO", "LEN_TOO_LONG", "PKT_TOO_LONG", "PKT_TOO_MANY_FRAGS", "PKT_BAD_FRAGMENT", "ADDR_WRAP",
        "ADDR_BEYOND_MEMORY", "ADDR_NOT_PINNED", "ACCESS_NO_READ", "ACCESS_NO_WRITE", "CMD_UNSUPPORTED",
        "CSUM_OFFSET", "PIN_RELEASED",
    )},
    "FP_OWNER_SELF_UNPINNED": OWNER_SELF_UNPINNED,
    "FP_NO_OWNER": NO_OWNER,
    "FP_ACCESS_READ": int(Access.READ),
    "FP_ACCESS_WRITE": int(Access.WRITE),
    "FP_TXD_CMD_EOP": TXD_CMD_EOP,
    "FP_TXD_CMD_IC": TXD_CMD_IC,
}  # fmt: skip

FastPath = Compiled
LayoutMismatch = compiled.LayoutMismatch
__all__ = [
    "FP_DECLINED", "FP_REFUSE", "SWITCH", "FastPath", "LayoutMismatch", "check_layout", "enabled", "state", "status",
]  # fmt: skip


def check_layout(ffi: Any, lib: Any, structs: Mapping[str, np.dtype[Any]], page_shift: int) -> None:
    """Raise LayoutMismatch unless the C structs are the dtypes and FASTPATH_PAGE_SHIFT is ``page_shift``."""
    compiled.check_layout(ffi, lib, structs, {"FASTPATH_PAGE_SHIFT": page_shift})


@cache
def state() -> tuple[FastPath | None, str]:
    """The fast path the kernel may use (or None) and the one line that says what the kernel runs."""
    constants = {
        "FASTPATH_PAGE_SHIFT": PAGE_SHIFT, "FP_DECLINED": FP_DECLINED, "FP_REFUSE": FP_REFUSE, **CLASSIFY_CONSTANTS,
    }  # fmt: skip
    return compiled.loaded(FASTPATH, constants, "fast path", "using the numpy checks", LOG, STRUCTS)


def enabled() -> FastPath | None:
    """The compiled fast path, or None when the kernel must run the numpy checks alone (``status()`` says why)."""
    return state()[0]


def status() -> str:
    """One line: whether the kernel runs the compiled fast path, and if not, why."""
    return state()[1]
