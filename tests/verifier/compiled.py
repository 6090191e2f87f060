"""Whether a test may run without the compiled fast path.

It may only where the fast path cannot exist: no C compiler (or no
Python.h) to build it when the package was installed, or the user's own
``NIC_SANDBOX_FASTPATH=0``, and never under CI=true.  A machine that could
have compiled it but runs without it (never built, stale, refused) fails:
the differential tests would otherwise pass while comparing nothing.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sysconfig
from pathlib import Path

import pytest

from device import fastdev
from driver.tenant import pmd
from fuzz import log_columns
from fuzz.oracle import pin_claims, ring_marks
from ring.compiled import SWITCH, Compiled
from tests.needs import IN_CI, missing
from verifier.audit import check, encode
from verifier.rules import fastpath


def can_compile() -> bool:
    """A C compiler and Python's headers: what setup.py needs to build verifier.rules._fastpath."""
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return shutil.which(shlex.split(compiler)[0]) is not None and headers.exists()


def compiled_fast_path(required: bool) -> fastpath.FastPath | None:
    """The compiled fast path; None only where it may be missing (see the module's docstring).

    ``required``: the test is about the compiled path, so it skips (outside
    CI) where the path may be missing, instead of returning None.
    """
    fast = fastpath.enabled()
    if fast is not None:
        return fast
    if can_compile() and os.environ.get(fastpath.SWITCH) != "0":
        pytest.fail(f"a C compiler is here but {fastpath.status()}")
    if required or IN_CI:
        missing(fastpath.status())  # a skip here, a failure under CI=true
    return None


def compiled_accelerator(loaded: Compiled | None, status: str) -> Compiled:
    """Any accelerator (device/fastdev.py, driver/tenant/pmd.py, verifier/audit/encode.py, verifier/audit/check.py):
    the module, else a failure or a skip as above."""
    if loaded is not None:
        return loaded
    if can_compile() and os.environ.get(SWITCH) != "0":
        pytest.fail(f"a C compiler is here but {status}")
    missing(status)  # a skip here, a failure under CI=true


def forget_accelerators() -> None:
    """Make every accelerator ask again (each is loaded once per process): around a test that sets the switch."""
    fastpath.state.cache_clear()
    fastdev.state.cache_clear()
    pmd.state.cache_clear()
    encode.state.cache_clear()
    check.state.cache_clear()
    log_columns.state.cache_clear()
    pin_claims.state.cache_clear()
    ring_marks.state.cache_clear()
