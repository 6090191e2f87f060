"""The audit log's compiled line formatter (encode.c, declared in encode.h), as the writer uses it.

Why: a batch's record lines are about 450 bytes of JSON each, and however
the Python side arranges it (verifier/audit/columns.py's ``interleave``:
a text object per value, joined in C) it costs about a microsecond a
record; the writer's goal is a million records a second.  ``lines`` hands
the same columns to one C loop that writes row after row into one buffer.
Every string it writes is still escaped by the log's JSON encoder in
Python, once per batch (the strings are table entries, picked per row by
index), so the canonical form stays decided in one place.

Loaded once per process through ring/compiled.py, which refuses a stale or
mismatched module; ``NIC_SANDBOX_FASTPATH=0`` (or no C compiler) runs
``interleave`` alone, which is the semantics: tests hold both to the same
frozen reference bytes (tests/verifier/test_audit_encoders.py).
"""

from __future__ import annotations

import array
import itertools
import logging
from functools import cache
from typing import Any

import numpy as np

from ring import compiled
from ring.cbuild import ENCODE
from verifier.audit.columns import Column, Hexes, HexRows, Ints, Picks, interleave

LOG = logging.getLogger(__name__)

#: What a column writes per row: encode.h's ``ENC_*`` (checked against the module when it loads).
OPS = {"ENC_CONST": 0, "ENC_PICK": 1, "ENC_DEC": 2, "ENC_HEX": 3, "ENC_HEXROW": 4, "ENC_COUNT": 5}
CONST, PICK, DEC, HEX, HEXROW, COUNT = OPS.values()
#: Column flags and the refusal that asks for a key (encode.h), checked against the module as ``OPS`` is.
#: ``ENC_ERR_SHAPE``: ``enc_rejections`` was handed columns that are not a rejection template (programs.py).
FLAGS = {"ENC_SKIP_ONES": 1, "ENC_KEYED": 2, "ENC_ERR_KEY": -4, "ENC_ERR_SHAPE": -7}
SKIP_ONES, KEYED, ERR_KEY, ERR_SHAPE = FLAGS.values()
#: Where a template column's batch part is (``enc_template_rows``, its ``reserved`` field), checked as ``OPS`` is.
FROM = {
    "ENC_FROM_DESCS": 1,
    "ENC_FROM_RING_INDEX": 2,
    "ENC_FROM_REASON": 3,
    "ENC_FROM_BAD_BYTE": 4,
    "ENC_FROM_OWNER": 5,
    "ENC_FROM_STAMP": 6,
    "ENC_FROM_FIRST": 7,
    "ENC_TEMPLATE_COLUMNS": 64,
}
#: ``enc_chain``'s constants (encode.h; verifier/audit/chaining.py), checked against the module as ``OPS`` is.
CHAIN = {
    "ENC_HASH_HEX": 64,
    "ENC_CHAIN_ROW": 232,
    "ENC_ERR_CLOCK": -5,
    "ENC_ERR_DIGEST": -6,
    "ENC_CHECKPOINT_MAX": 224,
    "ENC_STAMP_MAX": 71,
}
#: ``struct enc_column`` as numpy lays it out: the batch's column specs are one array, filled in one call.
ENC_COLUMN = np.dtype(
    [
        ("op", "<u4"),
        ("width", "<u4"),
        ("is_signed", "<u4"),
        ("flags", "<u4"),
        ("data", "<u8"),
        ("stride", "<i8"),
        ("mask", "<u8"),
        ("text", "<u8"),
        ("text_len", "<u8"),
        ("offsets", "<u8"),
        ("entries", "<u8"),
        ("shift", "<u4"),
        ("reserved", "<u4"),
        ("base", "<u8"),
        ("keys", "<u8"),
    ]
)
#: 64-bit words per ``struct enc_column``.
_WORDS = ENC_COLUMN.itemsize // 8
#: The most bytes a column of each op writes in a row (beyond its texts): ``-`` and 20 digits; ``-0x`` and 16.
_DEC_MAX, _HEX_MAX = 21, 19


@cache
def state() -> tuple[compiled.Compiled | None, str]:
    """The formatter the writer may use (or None), and the one line that says what formats the log's lines."""
    return compiled.loaded(
        ENCODE,
        {**OPS, **FLAGS, **CHAIN, **FROM},
        "audit line formatter",
        "the audit log formats its lines in Python",
        LOG,
        structs={**compiled.DESCRIPTOR_STRUCTS, "struct enc_column": ENC_COLUMN},
    )


def enabled() -> compiled.Compiled | None:
    return state()[0]


def status() -> str:
    return state()[1]


def render(n: int, columns: list[Column]) -> bytes:
    """The rows' texts, one after the other (``interleave``): compiled when it is here and takes the columns."""
    fast = enabled()
    if fast is not None:
        out = lines(fast, n, columns)
        if out is not None:
            return out
    return interleave(n, columns)


#: The integer columns C reads in place: 1, 2, 4 or 8 bytes, signed or not, little endian (this machine's order:
#: ring/compiled.py refuses a big-endian one).
_C_INTEGERS = frozenset(np.dtype(f"<{kind}{size}") for kind in "iu" for size in (1, 2, 4, 8))


def lines(fast: compiled.Compiled, n: int, columns: list[Column]) -> bytes | None:
    """The rows' texts written by encode.c; None when a column is of a shape it does not take (or refused).

    The column specs are built as a flat list of 64-bit words (``struct enc_column``'s layout, ``ENC_COLUMN``)
    and handed over in one buffer: a numpy record per column costs more than the formatting of a batch, and
    so would anything per column beyond a few operations (a batch has about thirty).
    """
    ffi = fast.ffi
    from_buffer, cast = ffi.from_buffer, ffi.cast
    keep: list[Any] = []  # every buffer whose address is in the specs, alive until the call returns
    # per column: op | width << 32, is_signed | flags << 32, data, stride, mask, text, text_len, offsets, entries,
    # shift | reserved << 32, base, keys (``_column``)
    words: list[int] = []
    texts: list[bytes] = []  # every constant and table, back to back: one buffer
    text_at = 0
    offsets: list[int] = []  # every table's string offsets, back to back
    row_max = 0
    const = b""  # adjacent constants are written as one
    for column in columns:
        kind = type(column)
        if kind is bytes:
            const += column  # type: ignore[operator]
            continue
        if const:
            words += [CONST, 0, 0, 0, 0, text_at, len(const), 0, 0, 0, 0, 0]
            texts.append(const)
            text_at += len(const)
            row_max += len(const)
            const = b""
        if kind is list:  # one text per row: a table picked in order
            column = Picks(column, np.arange(n, dtype=np.int64))  # type: ignore[arg-type]
            kind = Picks
        if kind is HexRows:
            rows = column.rows  # type: ignore[union-attr]
            if rows.dtype != np.uint8 or rows.ndim != 2 or len(rows) != n or not rows.flags.c_contiguous:
                return None
            width = rows.shape[1]
            keep.append(rows)
            data = int(cast("uintptr_t", from_buffer(rows))) if n and width else 0
            words += [HEXROW | width << 32, 0, data, width, 0, 0, 0, 0, 0, 0, 0, 0]
            row_max += 2 * width
            continue
        values: np.ndarray[Any, Any] = column.chosen if kind is Picks else column.values  # type: ignore[union-attr]
        if values.shape != (n,) or values.dtype not in _C_INTEGERS:
            return None
        if not n:
            data = 0
        elif values.flags.c_contiguous:
            keep.append(values)
            data = int(cast("uintptr_t", from_buffer(values)))
        else:
            data = int(values.ctypes.data)  # a strided view (a descriptor's field): numpy knows where it starts
        signed = int(values.dtype.kind == "i")
        head = values.dtype.itemsize << 32
        stride = values.strides[0] if n else 0
        if kind is Picks:
            table = column.table  # type: ignore[union-attr]
            if not table:
                if n:
                    return None
                continue
            sizes = list(map(len, table))
            total = sum(sizes)
            words += [PICK | head, signed, data, stride, 0, text_at, total, len(offsets), len(table), 0, 0, 0]
            offsets.append(0)
            offsets += itertools.accumulate(sizes)
            texts += table
            text_at += total
            row_max += max(sizes)
            continue
        mask = 0
        flags = column.mask  # type: ignore[union-attr]
        if flags is not None:
            if flags.dtype != np.bool_ or flags.shape != (n,) or not flags.flags.c_contiguous:
                return None
            keep.append(flags)
            mask = int(cast("uintptr_t", from_buffer(flags))) if n else 0
        if kind is Ints:
            words += [DEC | head, signed, data, stride, mask, 0, 0, 0, 0, 0, 0, 0]
            row_max += _DEC_MAX
        elif kind is Hexes:
            words += [HEX | head, signed, data, stride, mask, 0, 0, 0, 0, 0, 0, 0]
            row_max += _HEX_MAX
        else:
            return None
    if const:
        words += [CONST, 0, 0, 0, 0, text_at, len(const), 0, 0, 0, 0, 0]
        texts.append(const)
        row_max += len(const)
    blob = b"".join(texts) or b"\0"
    table_offsets = array.array("Q", offsets or [0])
    base = int(cast("uintptr_t", from_buffer(blob)))
    offsets_base = int(cast("uintptr_t", from_buffer(table_offsets)))
    for k in range(0, len(words), _WORDS):  # the texts and tables, now that their buffers are laid out
        op = words[k] & 0xFFFFFFFF
        if op == CONST:
            words[k + 5] += base
        elif op == PICK:
            words[k + 5] += base
            words[k + 7] = offsets_base + 8 * words[k + 7]
    specs = array.array("q", words)
    capacity = max(1, n * row_max)
    out = np.empty(capacity, dtype=np.uint8)
    written = fast.lib.enc_lines(
        from_buffer("struct enc_column[]", specs), len(words) // _WORDS, n, from_buffer(out), capacity
    )
    keep.clear()
    if written < 0:
        return None  # refused (an index outside its table): ``interleave`` decides, and raises
    return out[:written].tobytes()
