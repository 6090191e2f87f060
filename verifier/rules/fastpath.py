"""The compiled hot path of the verifier (fastpath.c, declared in fastpath.h), as the kernel loads it.

Why: a doorbell batch costs the numpy path a few dozen array calls of about
a microsecond each, most of it call overhead rather than work; one compiled
call does the snapshot, the checks and the post of a clean batch.  It is an
accelerator, not a second verifier: it accepts a batch only when every
descriptor passes the same rules as the numpy fast path, and otherwise hands
the snapshot it took (once) to the numpy checks, which stay the semantics
(tests compare the two).

The C is compiled when the package is installed (setup.py, cffi API mode:
fastpath_build.py) into ``verifier.rules._fastpath``.  Before the kernel uses
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

import importlib
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ring.descriptors import RX_DESC, TX_DESC
from ring.memory import PAGE_SHIFT
from verifier.rules.fastpath_build import HEADER, MODULE, SOURCE, source_digest

LOG = logging.getLogger(__name__)

#: The user's switch: ``NIC_SANDBOX_FASTPATH=0`` runs the numpy checks alone.
SWITCH = "NIC_SANDBOX_FASTPATH"

#: Each C struct of fastpath.h and the numpy dtype it must lay out exactly like.
STRUCTS: Mapping[str, np.dtype[Any]] = {"struct tx_desc": TX_DESC, "struct rx_desc": RX_DESC}


class LayoutMismatch(Exception):
    """The compiled module's structs or constants differ from the project's declarations."""


@dataclass(frozen=True)
class FastPath:
    """The loaded module's ``ffi`` and ``lib``, and pointer helpers."""

    ffi: Any
    lib: Any

    def ptr(self, array: npt.NDArray[Any]) -> Any:
        """A C pointer to a numpy array's first byte (the array must stay alive and contiguous)."""
        return self.ffi.cast("uint8_t *", array.ctypes.data)

    def i64(self, array: npt.NDArray[np.int64]) -> Any:
        return self.ffi.cast("int64_t *", array.ctypes.data)


def check_layout(ffi: Any, lib: Any, structs: Mapping[str, np.dtype[Any]], page_shift: int) -> None:
    """Raise LayoutMismatch, naming every difference, unless the C layouts are the numpy dtypes' exactly.

    Field names and order, each field's offset and size, each struct's size,
    the byte order (the dtypes are little endian; C structs are native) and
    the page shift.
    """
    problems = []
    if sys.byteorder != "little":
        problems.append("this machine is big endian, the descriptor dtypes are little endian")
    for ctype, dtype in structs.items():
        c_fields = [(name, field.offset, ffi.sizeof(field.type)) for name, field in ffi.typeof(ctype).fields]
        declared: Mapping[str, Any] = dtype.fields or {}
        numpy_fields = [(name, declared[name][1], declared[name][0].itemsize) for name in dtype.names or ()]
        if c_fields != numpy_fields:
            problems.append(f"{ctype} is (name, offset, size) {c_fields}, numpy says {numpy_fields}")
        if ffi.sizeof(ctype) != dtype.itemsize:
            problems.append(f"sizeof({ctype}) is {ffi.sizeof(ctype)}, numpy itemsize {dtype.itemsize}")
    if page_shift != lib.FASTPATH_PAGE_SHIFT:
        problems.append(f"FASTPATH_PAGE_SHIFT is {lib.FASTPATH_PAGE_SHIFT}, ring.memory.PAGE_SHIFT {page_shift}")
    if problems:
        raise LayoutMismatch("; ".join(problems))


@cache
def state() -> tuple[FastPath | None, str]:
    """The fast path the kernel may use (or None) and the one line that says what the kernel runs."""
    fast, line = _load()
    if fast is None and os.environ.get(SWITCH) != "0":
        LOG.warning(line)
    return fast, line


def _load() -> tuple[FastPath | None, str]:
    numpy_only = "using the numpy checks"
    if os.environ.get(SWITCH) == "0":
        return None, f"fast path: off ({SWITCH}=0); {numpy_only}"
    try:
        module = importlib.import_module(MODULE)
    except ImportError:
        return None, f"fast path: not compiled (no C compiler when nic-sandbox was installed); {numpy_only}"
    name = Path(module.__file__ or MODULE).name
    built = module.ffi.string(module.lib.fastpath_source_digest()).decode()
    if HEADER.exists() and SOURCE.exists() and built != source_digest():
        return None, (
            f"fast path: {name} is stale (fastpath.c or fastpath.h changed since it was"
            f" compiled; reinstall: pip install -e .); {numpy_only}"
        )
    try:
        check_layout(module.ffi, module.lib, STRUCTS, PAGE_SHIFT)
    except LayoutMismatch as exc:
        return None, f"fast path: refused, its layout differs from ring/: {exc}; {numpy_only}"
    return FastPath(module.ffi, module.lib), f"fast path: compiled ({name})"


def enabled() -> FastPath | None:
    """The compiled fast path, or None when the kernel must run the numpy checks alone (``status()`` says why)."""
    return state()[0]


def status() -> str:
    """One line: whether the kernel runs the compiled fast path, and if not, why."""
    return state()[1]
