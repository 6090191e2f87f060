"""A batch of audit lines as columns: what each column writes per row, and the Python loop that writes them.

The writer formats a batch of records from one template (verifier/audit/lines.py): row ``i`` of the batch is
``columns[0]`` of row ``i``, then ``columns[1]`` of row ``i``, ...  A column is one of

* ``bytes``: the same text in every row (an escaped key, a constant value);
* ``list[bytes]``: one text per row, already formatted;
* ``Ints``: an integer column (numpy), each in decimal as JSON writes it;
* ``Hexes``: an integer column, each as Python's ``hex`` writes it;
* ``HexRows``: a two-dimensional byte array, each row as lower-case hex (``bytes.hex``);
* ``Picks``: an index column into a table of texts (each escaped once per batch by the log's JSON encoder).

Each is a named tuple: a batch builds a dozen of them, and a tuple is the cheapest object to build.
``Ints`` and ``Hexes`` may carry a mask: where it is false, the column writes nothing in that row.

``interleave`` here is the semantics: it turns every column into a text per row and joins them with C loops
of CPython's (list slicing, ``bytes.join``).  The compiled formatter (verifier/audit/encode.py, encode.c)
writes the same columns row by row into one buffer without a Python object per value; tests hold both to a
frozen reference encoder (tests/verifier/test_audit_encoders.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt


class Ints(NamedTuple):
    """Each row's integer in decimal; where ``mask`` is false, nothing."""

    values: npt.NDArray[Any]
    mask: npt.NDArray[np.bool_] | None = None


class Hexes(NamedTuple):
    """Each row's integer as ``hex`` writes it (``0x``, lower case); where ``mask`` is false, nothing."""

    values: npt.NDArray[Any]
    mask: npt.NDArray[np.bool_] | None = None


class HexRows(NamedTuple):
    """Each row of a two-dimensional ``uint8`` array as ``bytes.hex`` writes it."""

    rows: npt.NDArray[np.uint8]


class Picks(NamedTuple):
    """Each row's ``table[chosen[i]]``: a few distinct texts, each formatted once, picked per row."""

    table: list[bytes]
    chosen: npt.NDArray[Any]


#: One piece of every row's text.
Column = bytes | list[bytes] | Ints | Hexes | HexRows | Picks

#: Integers as JSON writes them, a whole column per call (msgspec's compiled encoder; see ``decimals``).  Without
#: msgspec (the lab guest runs the project from Debian packages, which lack it) each is formatted by ``%d``.
_INTS: Callable[[list[int]], bytes] | None
try:
    import msgspec

    _INTS = msgspec.json.Encoder().encode
except ImportError:
    _INTS = None


def decimals(values: npt.NDArray[Any] | list[int]) -> list[bytes]:
    """Each integer as JSON writes it (as ``str`` of a Python int), in one encoder call for the column.

    msgspec formats a list of ints in C, about three times faster than
    ``map(str, ...)``; the column is then cut at the commas.
    """
    ints = values.tolist() if isinstance(values, np.ndarray) else values
    if not ints:
        return []
    if _INTS is None:
        return [b"%d" % i for i in ints]
    return _INTS(ints)[1:-1].split(b",")


def hexes(values: npt.NDArray[Any]) -> list[bytes]:
    """Each integer as ``hex`` writes it."""
    if not values.size:
        return []
    return "\n".join(map(hex, values.tolist())).encode("ascii").split(b"\n")


def _masked(n: int, mask: npt.NDArray[np.bool_] | None, values: npt.NDArray[Any], text: Any) -> list[bytes]:
    """``text`` of the masked rows' values, and ``b""`` in the others (filled in C, not per row)."""
    if mask is None:
        return list(text(values))
    column = np.full(n, b"", dtype=object)
    column[mask] = text(values[mask])
    return list(column.tolist())


def texts(n: int, column: Column) -> bytes | list[bytes]:
    """The column as ``interleave`` takes it: one constant, or one text per row."""
    if isinstance(column, bytes | list):
        return column
    if isinstance(column, Ints):
        return _masked(n, column.mask, column.values, decimals)
    if isinstance(column, Hexes):
        return _masked(n, column.mask, column.values, hexes)
    if isinstance(column, HexRows):
        width = 2 * column.rows.shape[1]
        if not width:
            return b""
        return list(np.frombuffer(column.rows.tobytes().hex().encode("ascii"), dtype=f"S{width}").tolist())
    table = column.table
    if column.chosen.size and int(column.chosen.min()) < 0:
        raise IndexError("a table index below zero")  # as the compiled formatter refuses it
    return list(map(table.__getitem__, column.chosen.tolist()))


def interleave(n: int, columns: list[Column]) -> bytes:
    """The rows' texts, one after the other: row ``i`` is ``columns[0]`` of row ``i`` + ``columns[1]`` of row ``i`` ...

    Adjacent constants are merged, then every column lands in one flat list
    by strided slice assignment and the list is joined once: the per-row work
    is done by C loops (``bytes.join``, list slicing), not by a Python
    statement per row.
    """
    merged: list[bytes | list[bytes]] = []
    for each in columns:
        column = texts(n, each)
        if isinstance(column, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += column
        elif not (isinstance(column, bytes) and not column):
            merged.append(column)
    width = len(merged)
    parts: list[bytes] = [b""] * (n * width)
    for j, column in enumerate(merged):
        parts[j::width] = [column] * n if isinstance(column, bytes) else column
    return b"".join(parts)
