"""cffi's build script for the device's compiled burst path: ``device._fastdev`` (see device/fastdev.h).

setup.py names this file in ``cffi_modules``; it shares the build recipe
with the verifier's fast path (ring/cbuild.py, loaded by path: setuptools
runs this file in an environment where the project is not importable).
``python device/fastdev_build.py`` compiles the module by hand.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from cffi import FFI

HERE = Path(__file__).parent
HEADER = HERE / "fastdev.h"
SOURCE = HERE / "fastdev.c"
MODULE = "device._fastdev"
DIGEST_FUNCTION = "fastdev_source_digest"


def load_cbuild() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_nic_sandbox_cbuild", HERE.parent / "ring" / "cbuild.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def source_digest() -> str:
    digest: str = load_cbuild().source_digest(HEADER, SOURCE)
    return digest


def ffibuilder() -> FFI:
    """The builder setuptools compiles; a function, so importing this file costs no parsing."""
    built: FFI = load_cbuild().builder(MODULE, HEADER, SOURCE, DIGEST_FUNCTION)
    return built


if __name__ == "__main__":
    ffibuilder().compile(tmpdir=str(HERE.parent), verbose=True)
