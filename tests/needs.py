"""Skips that are only allowed outside CI.

Under CI=true (CI runs as root with every package installed by .ci/run) a
missing tool or privilege is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(message: str) -> NoReturn:
    """Skip with ``message`` outside CI; fail with it under CI=true."""
    if IN_CI:
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


def need_tool(name: str, package: str | None = None) -> str:
    """Path of an external program; skip (outside CI) or fail (in CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (apt-get install {package or name})")
    return path


def need_root(why: str) -> None:
    """Root (CAP_NET_ADMIN and friends) for ``why``; skip outside CI, fail in CI."""
    if os.geteuid() != 0:
        missing(f"{why} needs root")


def need_path(path: str, why: str) -> None:
    """A device node or file, e.g. /dev/net/tun; skip outside CI, fail in CI."""
    if not os.path.exists(path):
        missing(f"{path} is missing ({why})")


def need_module(name: str, install: str) -> None:
    """An optional Python package (e.g. Ray); skip outside CI, fail in CI."""
    import importlib.util

    if importlib.util.find_spec(name) is None:
        missing(f"{name} is not installed (pip install '{install}')")
