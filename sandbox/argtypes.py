"""Argparse types shared by the commands: numbers within bounds, refused in one line naming the flag."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def bounded_number(kind: type[int] | type[float], what: str, low: float, high: float) -> Callable[[str], int | float]:
    """An argparse type: a number (integers may be written 0x...) within ``[low, high]``, or a one-line error."""

    def convert(text: str) -> int | float:
        try:
            value = int(text, 0) if kind is int else float(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{what} must be {noun}, got {text!r}") from None
        if not low <= value <= high:
            lo, hi = (f"{low:,}", f"{high:,}") if kind is int else (f"{low:g}", f"{high:g}")
            raise argparse.ArgumentTypeError(f"{what} must be between {lo} and {hi}, got {text}")
        return value

    return convert


def int_range(low: int, high: int, what: str) -> Callable[[str], int | float]:
    """An integer flag within ``[low, high]`` (``0x...`` allowed)."""
    return bounded_number(int, what, low, high)
