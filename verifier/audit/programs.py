"""A doorbell's record lines in one compiled call, the batch's template built once per campaign, not per batch.

Why: the writer's goal is a million records a second, a microsecond a
record all in, and SHA-256 and the ``write`` of ~450 bytes take about half
of it.  ``verifier/audit/lines.py`` describes a batch as columns
(``tail_columns``) and ``verifier/audit/encode.py`` turns them into the
compiled formatter's column specs; both steps cost Python per column, and
the rejections' owner labels and page frames cost Python per row -- about
1.2 µs a record together, more than the formatting itself.  Yet from one
doorbell to the next only where the rows are changes: the same tenant,
queue, descriptor format, envelope, reasons and owners.  So the specs of a
``RejectionBatch``'s lines are built once per such template (``_build``)
and kept; each batch hands encode.c its five arrays, its clock stamp and
its first seq (``enc_template_rows`` points the specs at them: each
column's ``reserved`` names the part it reads), and encode.c does the rest
in one call, with straight-line code for this template's columns
(``enc_rejections``): the seq (``ENC_COUNT``), a bad byte's hex and frame only where
there is one (``ENC_SKIP_ONES``, ``shift``), the owner's label looked up
by its code (``ENC_KEYED``; a code the template has not seen yet is
added and the batch written again).

Every string is still escaped by the log's JSON encoder, from the same
pieces ``tail_columns`` uses (``lines.py``), once per template.  A batch
of any other shape or dtype returns None and takes the column path, which
stays the semantics; tests/verifier/test_audit_encoders.py holds both to a
frozen reference encoder on random and hostile batches.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ring import compiled
from ring.memory import PAGE_SHIFT
from verifier.audit.encode import (
    CHAIN,
    COUNT,
    DEC,
    ENC_COLUMN,
    ERR_KEY,
    FROM,
    HEX,
    HEXROW,
    KEYED,
    PICK,
    SKIP_ONES,
)
from verifier.audit.line_buffer import LineBuffer
from verifier.audit.lines import ROW_DETAIL_KEYS, field_keys, owner_text, plain_descriptors, reason_table, text, where
from verifier.audit.rejection_batch import RejectionBatch
from verifier.rules.checks import NO_OWNER, owner_label

#: The arrays of a ``RejectionBatch`` a template reads, in the order their addresses are passed (encode.h's
#: ``ENC_FROM_*``: a column's ``reserved`` field names the one its ``data`` is an offset into), and the two
#: other parts of a batch a template takes: its clock stamp and its first seq.
DESCS, RING_INDEX, REASON, BAD_BYTE, OWNER, STAMP, FIRST = (
    FROM[f"ENC_FROM_{part}"] for part in ("DESCS", "RING_INDEX", "REASON", "BAD_BYTE", "OWNER", "STAMP", "FIRST")
)
#: The most columns a template has (``enc_template_rows`` copies them to its stack).
MAX_COLUMNS = FROM["ENC_TEMPLATE_COLUMNS"]
#: The dtypes the templates are built for (``RejectionBatch``'s declared ones); any other takes the column path.
_INT64, _UINT8, _INT32 = np.dtype("<i8"), np.dtype("u1"), np.dtype("<i4")
#: The most bytes a number column writes in a row: ``-`` and 20 digits; ``-0x`` and 16.
_DEC_MAX, _HEX_MAX = 21, 19
#: The most bytes of a stamp encode.c formats from a reading (encode.h).
STAMP_MAX = CHAIN["ENC_STAMP_MAX"]
#: Owner codes a template keeps labels for; a batch of more distinct ones takes the column path.
MAX_OWNERS = 1024
#: Templates kept per process (a campaign has a few queues and envelopes); past it the cache starts over.
MAX_PROGRAMS = 256
#: A column spec's 64-bit words and where its fields are among them.
_WORDS = ENC_COLUMN.itemsize // 8
_DATA, _TEXT, _TEXT_LEN, _OFFSETS, _ENTRIES, _SHIFT, _KEYS = (
    ENC_COLUMN.fields[f][1] // 8  # type: ignore[index]
    for f in ("data", "text", "text_len", "offsets", "entries", "shift", "keys")
)
#: ``reserved`` shares its 64-bit word with ``shift``, above it.
_RESERVED_SHIFT = 32


@dataclass(frozen=True, eq=False)
class Program:
    """A template's column specs (``words``; ``specs`` the same memory as encode.c takes it): the addresses of its
    own texts in, and in each column that reads the batch, which part of it (``reserved``) and where (``data``).
    ``owners`` are the owner codes it has labels for."""

    words: npt.NDArray[np.int64]
    specs: Any
    keep: tuple[Any, ...]  # the buffers its addresses point into
    columns: int
    row_max: int  # beyond the stamp
    owners: frozenset[int]


def _spec(op: int, width: int = 0, signed: int = 0, flags: int = 0, stride: int = 0, shift: int = 0) -> list[int]:
    """A ``struct enc_column`` as its 64-bit words, the addresses left for ``_build`` to fill in."""
    words = [0] * _WORDS
    words[0] = op | width << 32
    words[1] = signed | flags << 32
    words[3] = stride
    words[_SHIFT] = shift
    return words


class _Builder:
    """Columns of a template, in order: constants merged, tables and keys laid out in buffers of their own."""

    def __init__(self, ffi: Any) -> None:
        self.ffi = ffi
        self.words: list[int] = []
        self.texts: list[tuple[int, bytes]] = []  # (spec, its text): filled in once every spec is known
        self.tables: list[tuple[int, list[bytes], npt.NDArray[np.int64] | None]] = []
        self.data: list[tuple[int, int, int]] = []  # (spec, source, offset)
        self.row_max = 0
        self.const = b""

    def _spec(self, words: list[int]) -> int:
        self.flush()
        self.words += words
        return len(self.words) // _WORDS - 1

    def flush(self) -> None:
        """The constant waiting to be merged with the next, as one spec."""
        if self.const:
            self.texts.append((len(self.words) // _WORDS, self.const))
            self.words += _spec(0)
            self.row_max += len(self.const)
            self.const = b""

    def constant(self, data: bytes) -> None:
        self.const += data

    def stamp_here(self) -> None:
        self.data.append((self._spec(_spec(0)), STAMP, 0))

    def count_here(self) -> None:
        self.data.append((self._spec(_spec(COUNT)), FIRST, 0))
        self.row_max += 20

    def number(self, op: int, source: int, offset: int, dtype: np.dtype[Any], stride: int, **kw: int) -> None:
        k = self._spec(_spec(op, dtype.itemsize, int(dtype.kind == "i"), stride=stride, **kw))
        self.data.append((k, source, offset))
        self.row_max += _DEC_MAX if op == DEC else _HEX_MAX if op == HEX else 0

    def hexrow(self, source: int, width: int, stride: int) -> None:
        k = self._spec(_spec(HEXROW, width, stride=stride))
        self.data.append((k, source, 0))
        self.row_max += 2 * width

    def bad_constant(self, data: bytes, source: int) -> None:
        """``data`` only in rows whose bad byte is not -1."""
        k = self._spec(_spec(0, 8, flags=SKIP_ONES, stride=8))
        self.texts.append((k, data))
        self.data.append((k, source, 0))
        self.row_max += len(data)

    def pick(self, source: int, dtype: np.dtype[Any], table: list[bytes], keys: Sequence[int] | None = None) -> None:
        flags = 0 if keys is None else KEYED
        k = self._spec(_spec(PICK, dtype.itemsize, int(dtype.kind == "i"), flags=flags, stride=dtype.itemsize))
        self.data.append((k, source, 0))
        self.tables.append((k, table, None if keys is None else np.array(keys, dtype=np.int64)))
        self.row_max += max(map(len, table), default=0)

    def program(self, owners: frozenset[int]) -> Program:
        self.flush()
        words = np.array(self.words, dtype=np.int64)
        keep: list[Any] = []
        address = self._address
        for k, data in self.texts:
            keep.append(data)
            words[k * _WORDS + _TEXT] = address(data)
            words[k * _WORDS + _TEXT_LEN] = len(data)
        for k, table, keys in self.tables:
            blob = b"".join(table) or b"\0"
            offsets = np.array([0, *itertools.accumulate(map(len, table))], dtype=np.uint64)
            keep += [blob, offsets]
            words[k * _WORDS + _TEXT] = address(blob)
            words[k * _WORDS + _TEXT_LEN] = len(blob)
            words[k * _WORDS + _OFFSETS] = address(offsets)
            words[k * _WORDS + _ENTRIES] = len(table)
            if keys is not None:
                keep.append(keys)
                words[k * _WORDS + _KEYS] = address(keys)
        for k, source, offset in self.data:
            words[k * _WORDS + _SHIFT] |= source << _RESERVED_SHIFT
            if source not in (STAMP, FIRST):
                words[k * _WORDS + _DATA] = offset
        specs = self.ffi.from_buffer("struct enc_column[]", words)
        return Program(words, specs, tuple(keep), len(self.words) // _WORDS, self.row_max, owners)

    def _address(self, data: Any) -> int:
        return int(self.ffi.cast("uintptr_t", self.ffi.from_buffer(data)))


#: Templates by what shapes them: the envelope, where the rows come from, the descriptor format, ``extra``.
_PROGRAMS: dict[tuple[Any, ...], Program] = {}


def _build(
    ffi: Any, lead: bytes | None, end: bytes, rows: RejectionBatch, place: bytes, extra: bytes, owners: frozenset[int]
) -> Program:
    """The template of ``rows``'s lines: ``lead``, seq, stamp (none of the three when ``lead`` is None), the tail
    as ``tail_columns`` writes it, ``end``."""
    b = _Builder(ffi)
    if lead is not None:
        b.constant(lead)
        b.count_here()
        b.stamp_here()
    descs = rows.descs.dtype
    b.constant(place + b',"ring_index":')
    b.number(DEC, RING_INDEX, 0, _INT64, 8)
    b.constant(b',"desc_hex":"')
    b.hexrow(DESCS, descs.itemsize, descs.itemsize)
    b.constant(b'","desc":{')
    fields: Mapping[str, tuple[Any, ...]] = descs.fields or {}
    for key, name in zip(field_keys(descs.names or ()), descs.names or (), strict=True):
        b.constant(key)
        b.number(DEC, DESCS, fields[name][1], fields[name][0], descs.itemsize)
    b.constant(b"},")
    b.pick(REASON, _UINT8, reason_table())
    # as RejectionBatch.records: -1 is "no address problem"; any other byte is written modulo 2**64
    unsigned = np.dtype("<u8")
    b.bad_constant(b',"first_bad_byte":"', BAD_BYTE)
    b.number(HEX, BAD_BYTE, 0, unsigned, 8, flags=SKIP_ONES)
    b.bad_constant(b'","frame":', BAD_BYTE)
    b.number(DEC, BAD_BYTE, 0, unsigned, 8, flags=SKIP_ONES, shift=PAGE_SHIFT)
    codes = sorted(owners | {NO_OWNER})
    labels = [b"" if o == NO_OWNER else owner_text(owner_label(o, rows.tenant)) for o in codes]
    b.pick(OWNER, _INT32, labels, codes)
    b.constant(extra + b"}" + end)
    return b.program(owners)


@functools.lru_cache(maxsize=64)
def _little_fields(dtype: np.dtype[Any]) -> bool:
    """Plain descriptors (``plain_descriptors``) whose fields encode.c reads in place: little endian, as this
    machine stores them (ring/compiled.py refuses a big-endian one)."""
    fields: Mapping[str, tuple[Any, ...]] = dtype.fields or {}
    return plain_descriptors(dtype) and all(field[0].byteorder in "<=|" for field in fields.values())


def _template(rows: RejectionBatch) -> tuple[bytes, bytes] | None:
    """``rows``'s where-part and ``extra`` part as the tail writes them, or None: a shape the templates do not take."""
    descs = rows.descs
    if (
        descs.ndim != 1
        or not descs.flags.c_contiguous
        or not _little_fields(descs.dtype)
        or rows.ring_index.dtype != _INT64
        or rows.reason.dtype != _UINT8
        or rows.bad_byte.dtype != _INT64
        or rows.owner.dtype != _INT32
    ):
        return None
    n = descs.size
    for column in (rows.ring_index, rows.reason, rows.bad_byte, rows.owner):
        if column.shape != (n,) or not column.flags.c_contiguous:
            return None
    extra = rows.extra
    if not extra:
        return _place(rows), b""
    if ROW_DETAIL_KEYS.intersection(extra):
        return None  # ``detail.update(extra)`` would overwrite a row's key in its place
    return _place(rows), b"," + text(dict(extra))


def _place(rows: RejectionBatch) -> bytes:
    return where(rows.tenant, rows.tenant_name, rows.nic, rows.queue, rows.kind).encode("ascii")


#: A batch's clock stamp as a template takes it: the text, or the one reading ``(wall, mono)`` encode.c formats.
Stamp = bytes | tuple[int, int]


def write_rejections(
    fast: compiled.Compiled,
    rows: RejectionBatch,
    lead: bytes | None,
    stamp: Callable[[], Stamp],
    end: bytes,
    first: int,
    out: LineBuffer,
) -> int | None:
    """Write ``rows``'s lines (``lead`` seq ``stamp()`` tail ``end``, seqs from ``first``) after what ``out`` holds.

    ``stamp`` (the clock read) is called once, when the template is there: a batch refused before (a shape not
    taken, an ``extra`` that does not encode) has not read the clock, as the column path reads it only then.  It
    gives the stamp's text, or the reading for encode.c to format (``,"wall":"..","mono_ns":..``, as log.py's
    ``_stamps`` does).

    ``lead`` None: each row's tail and ``end`` alone (schema v1 puts a clock reading of its own before each).

    Returns how many bytes it wrote there, not yet taken (``out.take``), or None: a batch the templates do not
    take (nothing written; the column path decides, and raises where it must).
    """
    return templated(fast, rows, lead, end, stamp, lambda program, text: _run(fast, program, rows, text, first, out))


def templated(
    fast: compiled.Compiled,
    rows: RejectionBatch,
    lead: bytes | None,
    end: bytes,
    prepare: Callable[[], Any],
    run: Callable[[Program, Any], int],
) -> int | None:
    """``run(program, prepare())``: one compiled call with ``rows``'s template, built when missing and rebuilt
    with the batch's owners when the call asks for one it has not seen (``ERR_KEY``: ``run`` again with the same
    prepared value).  ``prepare`` (the clock read) is called once, and only when the template is there.  Returns
    ``run``'s count of bytes, or None: a batch the templates do not take, or the call refused (nothing written)."""
    shape = _template(rows)
    if shape is None:
        return None
    place, extra = shape
    key = (lead, end, place, rows.descs.dtype, extra)
    program = _PROGRAMS.get(key)
    if program is None:
        if len(_PROGRAMS) >= MAX_PROGRAMS:
            _PROGRAMS.clear()
        program = _PROGRAMS[key] = _build(fast.ffi, lead, end, rows, place, extra, frozenset())
    if program.columns > MAX_COLUMNS:
        return None  # a descriptor of more fields than any this project declares: the column path
    prepared = prepare()
    for _attempt in range(2):
        written = run(program, prepared)
        if written != ERR_KEY:
            return None if written < 0 else written
        owners = program.owners.union(np.unique(rows.owner).tolist())
        if len(owners) > MAX_OWNERS:
            return None
        program = _PROGRAMS[key] = _build(fast.ffi, lead, end, rows, place, extra, owners)
    return None  # pragma: no cover - a template built with every owner of the batch finds each


def row_arrays(ffi: Any, rows: RejectionBatch) -> tuple[Any, Any, Any, Any, Any]:
    """The batch's five arrays as every template call of encode.c takes them, in its order: descs, ring_index,
    reason, bad_byte, owner."""
    from_buffer = ffi.from_buffer
    return (
        from_buffer(rows.descs),
        from_buffer(rows.ring_index),
        from_buffer(rows.reason),
        from_buffer(rows.bad_byte),
        from_buffer(rows.owner),
    )


def _run(
    fast: compiled.Compiled, program: Program, rows: RejectionBatch, stamp: Stamp, first: int, out: LineBuffer
) -> int:
    """One call of encode.c: the template's columns pointed at this batch (its five arrays, stamp and first seq)
    and written by ``enc_rejections``, the straight-line formatter of these templates (``enc_template_rows``)."""
    ffi = fast.ffi
    n = len(rows)
    if type(stamp) is bytes:
        text, size, wall, mono = stamp, len(stamp), 0, 0
    else:
        text, size = ffi.NULL, STAMP_MAX
        wall, mono = stamp
    capacity = n * (program.row_max + size)
    written: int = fast.lib.enc_template_rows(
        program.specs,
        program.columns,
        *row_arrays(ffi, rows),
        text,
        size,
        wall,
        mono,
        first,
        n,
        out.free(ffi, capacity),
        capacity,
    )
    return written
