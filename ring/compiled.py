"""Loading a compiled accelerator: check that its C structs are the project's numpy dtypes, then hand it out.

Both accelerators (the verifier's fast path, the device's burst path) are
optional and must describe exactly the descriptors the rest of the project
reads.  ``load`` imports a module, refuses it when it was compiled from
other sources than those beside it (a stale ``.so`` after an edit) or when
any struct's fields, offsets and sizes or any named constant differ from the
declarations in ring/, and returns the module with one line saying what
runs.  ``NIC_SANDBOX_FASTPATH=0`` switches every accelerator off (the numpy
paths are the semantics; the accelerators are only faster).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ring.cbuild import Accelerator
from ring.descriptors import RX_DESC, TX_DESC

#: The user's switch: ``NIC_SANDBOX_FASTPATH=0`` runs the numpy paths alone.
SWITCH = "NIC_SANDBOX_FASTPATH"


class LayoutMismatch(Exception):
    """The compiled module's structs or constants differ from the project's declarations."""


@dataclass(frozen=True)
class Compiled:
    """A loaded module's ``ffi`` and ``lib``, and pointer helpers."""

    ffi: Any
    lib: Any

    def ptr(self, array: npt.NDArray[Any]) -> Any:
        """A C pointer to a numpy array's first byte (the array must stay alive and contiguous)."""
        return self.ffi.cast("uint8_t *", array.ctypes.data)

    def i64(self, array: npt.NDArray[np.int64]) -> Any:
        return self.ffi.cast("int64_t *", array.ctypes.data)


def check_layout(ffi: Any, lib: Any, structs: Mapping[str, np.dtype[Any]], constants: Mapping[str, int]) -> None:
    """Raise LayoutMismatch, naming every difference, unless the C layouts and constants are the project's.

    Field names and order, each field's offset and size, each struct's size,
    the byte order (the dtypes are little endian; C structs are native), and
    each ``#define`` named in ``constants`` against the value ring/ declares.
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
    for name, value in constants.items():
        if getattr(lib, name) != value:
            problems.append(f"{name} is {getattr(lib, name)}, ring/ declares {value}")
    if problems:
        raise LayoutMismatch("; ".join(problems))


def load(
    accelerator: Accelerator,
    structs: Mapping[str, np.dtype[Any]],
    constants: Mapping[str, int],
    fallback: str,
) -> tuple[Compiled | None, str]:
    """The module, or None with the one line that says why ``fallback`` (the numpy path) runs instead."""
    if os.environ.get(SWITCH) == "0":
        return None, f"off ({SWITCH}=0); {fallback}"
    try:
        module = importlib.import_module(accelerator.module)
    except ImportError:
        return None, f"not compiled (no C compiler when nic-sandbox was installed); {fallback}"
    name = Path(module.__file__ or accelerator.module).name
    built = module.ffi.string(getattr(module.lib, accelerator.digest_function)()).decode()
    sources = accelerator.sources
    if all(p.exists() for p in sources) and built != accelerator.digest():
        changed = " or ".join(p.name for p in sources)
        reinstall = "reinstall: pip install -e ."
        return None, f"{name} is stale ({changed} changed since it was compiled; {reinstall}); {fallback}"
    try:
        check_layout(module.ffi, module.lib, structs, constants)
    except LayoutMismatch as exc:
        return None, f"refused, its layout differs from ring/: {exc}; {fallback}"
    return Compiled(module.ffi, module.lib), f"compiled ({name})"


#: The descriptor structs every accelerator declares (ring/descriptors.h), and the dtypes they must be.
DESCRIPTOR_STRUCTS: Mapping[str, np.dtype[Any]] = {"struct tx_desc": TX_DESC, "struct rx_desc": RX_DESC}


def loaded(
    accelerator: Accelerator,
    constants: Mapping[str, int],
    label: str,
    fallback: str,
    log: logging.Logger,
    structs: Mapping[str, np.dtype[Any]] = DESCRIPTOR_STRUCTS,
) -> tuple[Compiled | None, str]:
    """``load`` (the descriptor structs by default), and the one line ``label: why``, logged once as a warning.

    Not logged when the user switched the accelerators off themselves.
    """
    fast, why = load(accelerator, structs, constants, fallback)
    line = f"{label}: {why}"
    if fast is None and os.environ.get(SWITCH) != "0":
        log.warning(line)
    return fast, line
