"""What every compiled accelerator's cffi build shares: the cdef section of a header, the source digest, the builder.

Two modules are compiled when the package is installed (setup.py,
``cffi_modules``, cffi's out-of-line API mode): the verifier's fast path
(verifier/rules/fastpath_build.py) and the device's burst path
(device/fastdev_build.py).  Each declares its interface once, in a header
whose text between ``/* cdef-begin */`` and ``/* cdef-end */`` is what cffi is
told, and each embeds the SHA-256 of its header and source so that a module
compiled from older sources is noticed at load time and not used.

setuptools runs a build script with ``exec`` in a build environment that has
cffi but not numpy or the project: this file imports neither, and the build
scripts load it by path (``load_cbuild`` below is the two lines they copy).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cffi import FFI

CDEF_BEGIN = "/* cdef-begin */"
CDEF_END = "/* cdef-end */"


def cdef_section(header: str) -> str:
    """The part of the header between the cdef markers: declarations cffi's parser accepts."""
    start = header.index(CDEF_BEGIN) + len(CDEF_BEGIN)
    return header[start : header.index(CDEF_END, start)]


def source_digest(header: Path, source: Path) -> str:
    """SHA-256 of the header and the C source: what a compiled module was built from."""
    digest = hashlib.sha256()
    for path in (header, source):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def builder(module: str, header: Path, source: Path, digest_function: str) -> FFI:
    """The FFI builder of one module: the header's cdef section, the source, and ``digest_function()``."""
    ffi = FFI()
    ffi.cdef(cdef_section(header.read_text()))
    ffi.set_source(
        module,
        f'#include "{header.name}"\n'
        f'const char *{digest_function}(void) {{ return "{source_digest(header, source)}"; }}\n',
        sources=[str(source)],
        include_dirs=[str(header.parent)],
        depends=[str(header)],
        extra_compile_args=["-O2"],
    )
    return ffi
