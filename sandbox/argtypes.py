"""Argparse types and edge checks shared by the commands: values refused in one line naming the flag or path.

Numbers are parsed once here into finite values within bounds (a NaN or an
infinity never reaches a deadline or a bucket width); output paths are checked
before any work starts, so a run is not thrown away at its end because its
report cannot be written.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox.errors import UsageError

#: Longest number text read (a flag of thousands of digits is not a number anyone means, and int() refuses it).
MAX_NUMBER_TEXT = 64


def bounded_number(kind: type[int] | type[float], what: str, low: float, high: float) -> Callable[[str], int | float]:
    """An argparse type: a finite number (integers may be written 0x...) within ``[low, high]``, or a one-line error."""

    def convert(text: str) -> int | float:
        noun = "an integer" if kind is int else "a number"
        try:
            if len(text) > MAX_NUMBER_TEXT:
                raise ValueError(text)
            value = int(text, 0) if kind is int else float(text)
        except ValueError:
            shown = text if len(text) <= MAX_NUMBER_TEXT else text[:20] + f"... ({len(text)} characters)"
            raise argparse.ArgumentTypeError(f"{what} must be {noun}, got {shown!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{what} must be a finite number, got {text}")
        if not low <= value <= high:
            lo, hi = (f"{low:,}", f"{high:,}") if kind is int else (f"{low:g}", f"{high:g}")
            raise argparse.ArgumentTypeError(f"{what} must be between {lo} and {hi}, got {text}")
        return value

    return convert


def int_range(low: int, high: int, what: str) -> Callable[[str], int | float]:
    """An integer flag within ``[low, high]`` (``0x...`` allowed)."""
    return bounded_number(int, what, low, high)


def check_output_path(path: str | Path, what: str) -> Path:
    """``path`` as a file this program may create or replace, or a ``UsageError`` naming ``what`` and the path.

    Checked at the edge, before any work: not empty, not a directory, and its
    nearest existing ancestor a directory we may write to (missing folders
    below it are created by the writer, as ``mkdir -p`` would).  An existing
    file must be writable.
    """
    text = str(path)
    if not text or not text.isprintable():
        raise UsageError(f"{what} {text!r}: not a usable file name")
    p = Path(text)
    if p.is_dir():
        raise UsageError(f"{what} {p}: is a directory, not a file")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise UsageError(f"{what} {p}: not writable")
        return p
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{what} {p}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UsageError(f"{what} {p}: cannot create files in {parent} (permission denied)")
            return p
        if parent.is_symlink():  # a dangling link on the way
            raise UsageError(f"{what} {p}: {parent} is a broken link")
    return p


@contextmanager
def writing(path: str | Path, what: str) -> Iterator[None]:
    """The write itself: a path that passed ``check_output_path`` can still refuse (procfs, a full disk, a race).

    Said in one line naming ``what`` and the path, exit 2, instead of a traceback.
    """
    try:
        yield
    except OSError as e:
        raise UsageError(f"{what} {path}: {e.strerror or e}") from None


def check_output_dir(path: str | Path, what: str) -> Path:
    """``path`` as a directory this program may create or write into, or a ``UsageError`` naming it."""
    p = Path(str(path))
    if p.exists() and not p.is_dir():
        raise UsageError(f"{what} {p}: is a file, not a directory")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise UsageError(f"{what} {p}: not writable")
        return p
    check_output_path(p, what)
    return p


def require_matplotlib(what: str = "--png") -> None:
    """A plot flag needs the ``plot`` extra: say so in one line (exit 2) before any measuring starts."""
    try:
        import matplotlib  # noqa: F401  (the plot extra: imported only for a plot)
    except ImportError:
        raise UsageError(f"{what} needs matplotlib, which is not installed (pip install 'nic-sandbox[plot]')") from None
