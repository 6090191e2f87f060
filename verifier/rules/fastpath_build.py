"""cffi's build script for the compiled fast path: ``verifier.rules._fastpath``, out-of-line API mode.

Why API mode, from the package build: the C is compiled once, when the
package is installed (setup.py names this file in ``cffi_modules``; ``pip
install -e .`` puts ``_fastpath*.so`` next to this file), with the compiler
and flags Python itself was built with, and cffi checks at compile time
that the declarations it was given match the C.  Those declarations are the
cdef section of fastpath.h, read from the header, never copied.

setuptools runs this file with ``exec`` in a build environment that has cffi
but not numpy or the project, so it imports neither.  ``python
verifier/rules/fastpath_build.py`` compiles the module by hand.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).parent
HEADER = HERE / "fastpath.h"
SOURCE = HERE / "fastpath.c"
MODULE = "verifier.rules._fastpath"
CDEF_BEGIN = "/* cdef-begin */"
CDEF_END = "/* cdef-end */"


def cdef_section(header: str) -> str:
    """The part of the header between the cdef markers: declarations cffi's parser accepts."""
    start = header.index(CDEF_BEGIN) + len(CDEF_BEGIN)
    return header[start : header.index(CDEF_END, start)]


def source_digest(header: Path = HEADER, source: Path = SOURCE) -> str:
    """SHA-256 of the header and the C source: what a compiled module was built from."""
    digest = hashlib.sha256()
    for path in (header, source):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ffibuilder() -> FFI:
    """The builder setuptools (``cffi_modules``) compiles; a function, so importing this file costs no parsing."""
    ffi = FFI()
    ffi.cdef(cdef_section(HEADER.read_text()))
    ffi.set_source(
        MODULE,
        f'#include "fastpath.h"\nconst char *fastpath_source_digest(void) {{ return "{source_digest()}"; }}\n',
        sources=[str(SOURCE)],
        include_dirs=[str(HERE)],
        depends=[str(HEADER)],
    )
    return ffi


if __name__ == "__main__":
    ffibuilder().compile(tmpdir=str(HERE.parent.parent), verbose=True)
