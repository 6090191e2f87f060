"""The compiled hot path of the verifier (verifier/rules/fastpath.c), loaded through cffi.

Why: a doorbell batch costs the numpy path a few dozen array calls of about
a microsecond each, most of it call overhead rather than work; one compiled
call does the snapshot, the checks and the post of a clean batch.  It is an
accelerator, not a second verifier: it accepts a batch only when every
descriptor passes the same rules as the numpy fast path, and otherwise hands
the snapshot it took (once) to the numpy checks, which stay the semantics
(tests compare the two).  The library is compiled on first use with the
system C compiler into a cache keyed by the source's hash; without a
compiler the kernel silently keeps the numpy path (``NIC_SANDBOX_FASTPATH=0``
forces that).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cffi import FFI

SOURCE = Path(__file__).with_name("fastpath.c")

CDEF = """
int tx_snapshot_check_post(const uint8_t *user_ring, uint32_t size, uint32_t tail, uint32_t k, uint8_t *snap,
                           const uint8_t *frame_ok, uint64_t nframes, uint8_t cmd_mask, uint8_t cmd_expect,
                           uint32_t max_len, uint8_t *shadow, uint32_t shadow_tail, int64_t *to_user);
int rx_snapshot_check_post(const uint8_t *user_ring, uint32_t size, uint32_t tail, uint32_t k, uint8_t *snap,
                           const uint8_t *frame_ok, uint64_t nframes, uint32_t buffer_size, uint8_t *shadow,
                           uint32_t shadow_tail, int64_t *to_user);
void tx_complete(uint8_t *user_ring, uint32_t size, const int64_t *to_user, uint32_t first, uint32_t n,
                 uint8_t status);
void rx_complete(uint8_t *user_ring, uint32_t size, const uint8_t *shadow, const int64_t *to_user, uint32_t first,
                 uint32_t n);
"""


class FastPath:
    """The loaded library and pointer helpers."""

    def __init__(self, ffi: FFI, lib: Any) -> None:
        self.ffi = ffi
        self.lib = lib

    def ptr(self, array: npt.NDArray[Any]) -> Any:
        """A C pointer to a numpy array's first byte (the array must stay alive and contiguous)."""
        return self.ffi.cast("uint8_t *", array.ctypes.data)

    def i64(self, array: npt.NDArray[np.int64]) -> Any:
        return self.ffi.cast("int64_t *", array.ctypes.data)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nic-sandbox"


def _build(source: Path) -> Path | None:
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    target = _cache_dir() / f"fastpath-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        done = subprocess.run(
            [compiler, "-O2", "-shared", "-fPIC", "-std=c99", "-o", str(built), str(source)],
            capture_output=True,
            timeout=120,
        )
        if done.returncode != 0:
            return None
        os.replace(built, target)  # atomic: a concurrent build just wins the same file
    return target


@cache
def load() -> FastPath | None:
    """The compiled fast path, or None (no compiler, a failed build, or NIC_SANDBOX_FASTPATH=0)."""
    if os.environ.get("NIC_SANDBOX_FASTPATH", "1") == "0":
        return None
    try:
        path = _build(SOURCE)
        if path is None:
            return None
        ffi = FFI()
        ffi.cdef(CDEF)
        return FastPath(ffi, ffi.dlopen(str(path)))
    except (OSError, subprocess.SubprocessError):
        return None


def enabled() -> FastPath | None:
    """The fast path the kernel uses: ``load()`` (None: the kernel runs the numpy checks alone)."""
    return load()
