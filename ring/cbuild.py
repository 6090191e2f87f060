"""The compiled accelerators, declared once: each one's module, header and source, and how cffi builds it.

Eight accelerators are compiled when the package is installed (setup.py
names this file's builders in ``cffi_modules``: cffi's out-of-line API mode,
compiled once with the compiler and flags Python was built with): the
verifier's fast path (verifier/rules/fastpath.c), the device's burst path
(device/fastdev.c), the tenant driver's burst path
(driver/tenant/pmd.c), the audit log's line formatter
(verifier/audit/encode.c), ``audit verify``'s line check
(verifier/audit/check.c), the fuzz oracle's reader of a followed log
(fuzz/logcols.c), its judgement of pin and access claims
(fuzz/oracle/pinclaim.c) and its reading of a watched ring's refusal
marks (fuzz/oracle/ringmarks.c).  Each declares its interface once, in a header
whose text between ``/* cdef-begin */`` and ``/* cdef-end */`` is what cffi is
told (after the shared descriptor structs of ring/descriptors.h), and
embeds the SHA-256 of its sources, so that a module compiled from older
sources is noticed at load time (ring/compiled.py) and not used.  Every
accelerator is optional: the numpy code beside it is the semantics, and
runs alone without a C compiler.

setuptools runs this file with ``exec`` in a build environment that has
cffi but not numpy or the project, so it imports neither, and takes its
paths from ``__file__``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
#: The descriptor structs every accelerator shares: its cdef section comes first in each module's cdef.
SHARED_HEADER = ROOT / "ring" / "descriptors.h"
CDEF_BEGIN = "/* cdef-begin */"
CDEF_END = "/* cdef-end */"


def cdef_section(header: str) -> str:
    """The part of the header between the cdef markers: declarations cffi's parser accepts."""
    start = header.index(CDEF_BEGIN) + len(CDEF_BEGIN)
    return header[start : header.index(CDEF_END, start)]


class Accelerator:
    """One compiled module: its import name, its header and source, and the function that returns its digest."""

    def __init__(self, module: str, header: str, source: str, digest_function: str) -> None:
        self.module = module
        self.header = ROOT / header
        self.source = ROOT / source
        self.digest_function = digest_function

    @property
    def sources(self) -> tuple[Path, Path, Path]:
        """What a module is compiled from: its C source, its header and the shared descriptor header."""
        return self.source, self.header, SHARED_HEADER

    def digest(self) -> str:
        """SHA-256 of the headers and the C source: what a compiled module was built from."""
        digest = hashlib.sha256()
        for path in (self.header, self.source, SHARED_HEADER):
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def builder(self) -> FFI:
        """The FFI builder: the header's cdef section, the source, and the digest function."""
        ffi = FFI()
        ffi.cdef(cdef_section(SHARED_HEADER.read_text()) + cdef_section(self.header.read_text()))
        ffi.set_source(
            self.module,
            f'#include "{self.header.name}"\n'
            f'const char *{self.digest_function}(void) {{ return "{self.digest()}"; }}\n',
            # setuptools wants paths relative to setup.py, which lives in ROOT
            sources=[str(self.source.relative_to(ROOT))],
            include_dirs=[str(self.header.parent.relative_to(ROOT)), str(SHARED_HEADER.parent.relative_to(ROOT))],
            depends=[str(self.header.relative_to(ROOT)), str(SHARED_HEADER.relative_to(ROOT))],
            extra_compile_args=["-O2"],
        )
        return ffi


FASTPATH = Accelerator(
    "verifier.rules._fastpath", "verifier/rules/fastpath.h", "verifier/rules/fastpath.c", "fastpath_source_digest"
)
FASTDEV = Accelerator("device._fastdev", "device/fastdev.h", "device/fastdev.c", "fastdev_source_digest")
PMD = Accelerator("driver.tenant._pmd", "driver/tenant/pmd.h", "driver/tenant/pmd.c", "pmd_source_digest")
ENCODE = Accelerator(
    "verifier.audit._encode", "verifier/audit/encode.h", "verifier/audit/encode.c", "encode_source_digest"
)
CHECK = Accelerator("verifier.audit._check", "verifier/audit/check.h", "verifier/audit/check.c", "check_source_digest")
LOGCOLS = Accelerator("fuzz._logcols", "fuzz/logcols.h", "fuzz/logcols.c", "logcols_source_digest")
PINCLAIM = Accelerator(
    "fuzz.oracle._pinclaim", "fuzz/oracle/pinclaim.h", "fuzz/oracle/pinclaim.c", "pinclaim_source_digest"
)
RINGMARKS = Accelerator(
    "fuzz.oracle._ringmarks", "fuzz/oracle/ringmarks.h", "fuzz/oracle/ringmarks.c", "ringmarks_source_digest"
)


# What setup.py's ``cffi_modules`` names: one builder function per accelerator.
def fastpath() -> FFI:
    return FASTPATH.builder()


def fastdev() -> FFI:
    return FASTDEV.builder()


def pmd() -> FFI:
    return PMD.builder()


def encode() -> FFI:
    return ENCODE.builder()


def check() -> FFI:
    return CHECK.builder()


def logcols() -> FFI:
    return LOGCOLS.builder()


def pinclaim() -> FFI:
    return PINCLAIM.builder()


def ringmarks() -> FFI:
    return RINGMARKS.builder()


if __name__ == "__main__":  # compile all eight by hand, next to their sources
    for accelerator in (FASTPATH, FASTDEV, PMD, ENCODE, CHECK, LOGCOLS, PINCLAIM, RINGMARKS):
        accelerator.builder().compile(tmpdir=str(ROOT), verbose=True)
