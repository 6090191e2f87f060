"""cffi's build script for the compiled fast path: ``verifier.rules._fastpath``, out-of-line API mode.

Why API mode, from the package build: the C is compiled once, when the
package is installed (setup.py names this file in ``cffi_modules``; ``pip
install -e .`` puts ``_fastpath*.so`` next to this file), with the compiler
and flags Python itself was built with, and cffi checks at compile time
that the declarations it was given match the C.  Those declarations are the
cdef section of fastpath.h, read from the header, never copied.

The recipe is shared with the device's burst path (ring/cbuild.py).
setuptools runs this file with ``exec`` in a build environment that has cffi
but not numpy or the project, so it loads that recipe by path and imports
neither.  ``python verifier/rules/fastpath_build.py`` compiles the module by hand.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from cffi import FFI

HERE = Path(__file__).parent
HEADER = HERE / "fastpath.h"
SOURCE = HERE / "fastpath.c"
MODULE = "verifier.rules._fastpath"
DIGEST_FUNCTION = "fastpath_source_digest"


def load_cbuild() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_nic_sandbox_cbuild", HERE.parent.parent / "ring" / "cbuild.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def source_digest(header: Path = HEADER, source: Path = SOURCE) -> str:
    """SHA-256 of the header and the C source: what a compiled module was built from."""
    digest: str = load_cbuild().source_digest(header, source)
    return digest


def ffibuilder() -> FFI:
    """The builder setuptools (``cffi_modules``) compiles; a function, so importing this file costs no parsing."""
    built: FFI = load_cbuild().builder(MODULE, HEADER, SOURCE, DIGEST_FUNCTION)
    return built


if __name__ == "__main__":
    ffibuilder().compile(tmpdir=str(HERE.parent.parent), verbose=True)
