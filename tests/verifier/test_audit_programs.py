"""The compiled templates of a batch's lines (verifier/audit/programs.py) against the column path they replace.

The column path (``tail_columns`` + ``interleave``, all Python) is the semantics: a template must write the
same bytes for every batch it takes, keep doing so as it is reused and rebuilt (a new owner, a new envelope),
and hand back (None) every batch it does not take.  test_audit_encoders.py holds the whole writer to a frozen
reference; here each piece is held to the column path directly, and encode.c's new column kinds to Python's
``str``/``hex``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ring.compiled import SWITCH
from ring.descriptors import TX_DESC
from tests.verifier.compiled import compiled_accelerator, forget_accelerators
from tests.verifier.test_audit import clock
from tests.verifier.test_audit_encoders import random_batch
from verifier.audit import encode, line_buffer, programs
from verifier.audit.columns import Ints, interleave
from verifier.audit.line_buffer import LineBuffer
from verifier.audit.lines import tail_columns
from verifier.audit.log import AuditLog
from verifier.audit.rejection_batch import RejectionBatch
from verifier.rules import reasons as R
from verifier.rules.checks import NO_OWNER

LEAD, END = b'{"v":2,"seq":', b',"protection":"v\\u00e9rifier"}\n'


def stamp(k: int) -> bytes:
    return b',"wall":"2026-12-07T13:00:%02d.000000001Z","mono_ns":%d' % (k % 60, 10**12 + k)


def by_columns(rows: RejectionBatch, first: int, mark: bytes) -> bytes:
    """The lines as the column path writes them (Python alone)."""
    columns = tail_columns(rows)
    assert columns is not None
    n = len(rows)
    return interleave(n, [LEAD, Ints(np.arange(first, first + n, dtype=np.int64)), mark, *columns, END])


def by_template(fast: Any, rows: RejectionBatch, first: int, mark: bytes) -> bytes | None:
    out = LineBuffer()
    out.append(b"held")  # what a log holds already stays as it was
    written = programs.write_rejections(fast, rows, LEAD, lambda: mark, END, first, out)
    if written is None:
        return None
    out.take(written)
    assert out.tail(0)[:4] == b"held"
    return out.tail(4)


def batch(owner: list[int], bad: list[int], **changes: Any) -> RejectionBatch:
    n = len(owner)
    descs = np.zeros(n, dtype=TX_DESC)
    descs["addr"] = np.arange(n, dtype=np.uint64) * 4096 + 2**63
    rows = RejectionBatch(
        tenant=3, tenant_name="mallory", nic="nic0", queue=1, kind="tx",
        ring_index=np.arange(n, dtype=np.int64), reason=np.full(n, R.ADDR_NOT_PINNED, dtype=np.uint8),
        bad_byte=np.array(bad, dtype=np.int64), owner=np.array(owner, dtype=np.int32), descs=descs,
    )  # fmt: skip
    return dataclasses.replace(rows, **changes)


@pytest.fixture
def fast() -> Any:
    forget_accelerators()
    return compiled_accelerator(encode.enabled(), encode.status())


def test_a_template_writes_what_the_columns_write(fast: Any) -> None:
    """Random hostile batches, one after another: templates built, reused and rebuilt as owners and places come."""
    rng = np.random.default_rng(11)
    programs._PROGRAMS.clear()
    batches = [rows for rows in (random_batch(rng) for _ in range(150)) if isinstance(rows, RejectionBatch)]
    assert len(batches) > 80
    for again in (False, True):
        for k, rows in enumerate(batches):
            first = int(rng.integers(0, 2**63 - 1000))
            got = by_template(fast, rows, first, stamp(k))
            assert got == by_columns(rows, first, stamp(k))
        if not again:
            built = {key: id(program) for key, program in programs._PROGRAMS.items()}
    assert {key: id(program) for key, program in programs._PROGRAMS.items()} == built  # each found its template


def test_a_new_owner_rebuilds_the_template(fast: Any) -> None:
    programs._PROGRAMS.clear()
    first = batch([NO_OWNER, -2, NO_OWNER], [-1, 4096, -1])
    assert by_template(fast, first, 0, stamp(0)) == by_columns(first, 0, stamp(0))
    (program,) = programs._PROGRAMS.values()
    assert program.owners == {NO_OWNER, -2}
    later = batch([3, 7, -1, 2**31 - 1, -(2**31)], [0, 2**13, -2, 5, -1])  # own, another tenant, free, edges
    assert by_template(fast, later, 9, stamp(1)) == by_columns(later, 9, stamp(1))
    (program,) = programs._PROGRAMS.values()
    assert program.owners == {NO_OWNER, -2, 3, 7, -1, 2**31 - 1, -(2**31)}
    assert by_template(fast, first, 0, stamp(0)) == by_columns(first, 0, stamp(0))  # the rebuilt one still fits


def both_ways(tmp_path: Path, write: Callable[[str, Path], None]) -> list[bytes]:
    """The bytes ``write(setting, path)`` leaves with the accelerator on (``"1"``) and off (``"0"``)."""
    logs = []
    for setting in ("1", "0"):
        forget_accelerators()
        with pytest.MonkeyPatch.context() as env:
            env.setenv(SWITCH, setting)
            path = tmp_path / f"log{setting}"
            write(setting, path)
            logs.append(path.read_bytes())
    forget_accelerators()
    return logs


def test_shapes_the_templates_do_not_take_go_back_to_the_columns(fast: Any, tmp_path: Path) -> None:
    """Other dtypes, strided arrays, too many owners, an ``extra`` naming a row's key: None, and the log's bytes
    are still the column path's (compiled formatter or not)."""
    n = programs.MAX_OWNERS + 1
    owners = list(range(n))
    plain = batch(owners, list(range(n)))
    refused = [
        dataclasses.replace(plain, ring_index=plain.ring_index.astype(np.int32)),
        dataclasses.replace(plain, owner=plain.owner.astype(np.int64)),
        dataclasses.replace(plain, bad_byte=plain.bad_byte.astype(np.uint64)),
        dataclasses.replace(plain, reason=plain.reason.astype(np.int64)),
        dataclasses.replace(plain, bad_byte=np.repeat(plain.bad_byte, 2)[::2]),
        dataclasses.replace(plain, descs=np.repeat(plain.descs, 2)[::2]),
        dataclasses.replace(plain, descs=plain.descs.astype(plain.descs.dtype.newbyteorder(">"))),
        dataclasses.replace(plain, extra={"frame": 1}),
        plain,  # more owners than a template keeps
    ]
    for rows in refused:
        assert by_template(fast, rows, 0, stamp(0)) is None

    def write(setting: str, path: Path) -> None:
        with AuditLog(path, "verifier", fsync="never", clock=clock(), schema=2, max_bytes=None) as log:
            for rows in refused:
                log.record_batch(rows)
                log.commit()

    logs = both_ways(tmp_path, write)
    assert logs[0] == logs[1]


@pytest.mark.parametrize("schema", [1, 2])
@pytest.mark.parametrize("limit", [1, 7, 255, 256, 600])
def test_a_batch_past_the_pending_limit_is_cut_as_before(tmp_path: Path, limit: int, schema: int) -> None:
    """Lines written by a template, cut at the pending limit (``max_pending``) into writes (and v2 checkpoints)
    exactly as the column path cuts them, across batches that leave part of a group waiting."""
    rng = np.random.default_rng(limit)
    batches = [random_batch(rng) for _ in range(8)]

    def write(setting: str, path: Path) -> None:
        with AuditLog(
            path, "verifier", fsync="never", clock=clock(), schema=schema, max_bytes=None, max_pending=limit
        ) as log:
            programs._PROGRAMS.clear()
            for k, rows in enumerate(batches):
                log.record_batch(rows)
                if k % 3 == 2:
                    log.commit()
            assert bool(programs._PROGRAMS) == (setting == "1")  # the compiled run went through templates

    logs = both_ways(tmp_path, write)
    assert logs[0] == logs[1]


def column(op: int, data: np.ndarray[Any, Any] | None = None, **fields: int) -> np.ndarray[Any, Any]:
    spec = np.zeros(1, dtype=encode.ENC_COLUMN)
    spec["op"] = op
    if data is not None:
        spec["data"] = data.ctypes.data
        spec["stride"] = data.strides[0]
        spec["width"] = data.dtype.itemsize
        spec["is_signed"] = int(data.dtype.kind == "i")
    for name, value in fields.items():
        spec[name] = value
    return spec


def run(fast: Any, rows: int, *specs: np.ndarray[Any, Any], capacity: int = 4096) -> bytes | int:
    joined = np.concatenate(specs)
    out = np.zeros(capacity, dtype=np.uint8)
    written = fast.lib.enc_lines(
        fast.ffi.from_buffer("struct enc_column[]", joined), len(specs), rows, fast.ffi.from_buffer(out), capacity
    )
    return int(written) if written < 0 else out[:written].tobytes()


def test_the_new_column_kinds_write_what_python_writes(fast: Any) -> None:
    """A seq from its base, shifted frames and hex, rows of all ones skipped, a label found by its key."""
    values = np.array([0, 1, 4095, 4096, -1, -2, 2**63 - 1, -(2**63)], dtype=np.int64)
    keys = np.array([-5, 0, 7], dtype=np.int64)
    owner = np.array([7, -5, 0, 7, -5, 0, 0, 7], dtype=np.int32)
    texts = b"minusfivezeroseven"
    offsets = np.array([0, 9, 13, 18], dtype=np.uint64)
    sep, newline = b"|", b"\n"
    sep_at = int(fast.ffi.cast("uintptr_t", fast.ffi.from_buffer(sep)))
    texts_at = int(fast.ffi.cast("uintptr_t", fast.ffi.from_buffer(texts)))
    sep_spec = column(encode.CONST, text=sep_at, text_len=1)
    got = run(
        fast,
        len(values),
        column(encode.COUNT, base=2**64 - 4),  # past 2**64 it wraps, as an unsigned counter does
        sep_spec,
        column(encode.DEC, values.view(np.uint64), shift=12, flags=encode.SKIP_ONES),
        sep_spec,
        column(encode.HEX, values.view(np.uint64), shift=1),
        sep_spec,
        column(encode.CONST, values, flags=encode.SKIP_ONES, text=sep_at, text_len=1),
        column(
            encode.PICK,
            owner,
            flags=encode.KEYED,
            keys=keys.ctypes.data,
            entries=3,
            offsets=offsets.ctypes.data,
            text=texts_at,
            text_len=len(texts),
        ),
        column(encode.CONST, text=int(fast.ffi.cast("uintptr_t", fast.ffi.from_buffer(newline))), text_len=1),
    )
    label = {-5: "minusfive", 0: "zero", 7: "seven"}
    expected = ""
    for k, (value, who) in enumerate(zip(values.tolist(), owner.tolist(), strict=True)):
        unsigned = value % 2**64
        frame = "" if value == -1 else str(unsigned >> 12)
        mark = "" if value == -1 else "|"
        expected += f"{(2**64 - 4 + k) % 2**64}|{frame}|{hex(unsigned >> 1)}|{mark}{label[who]}\n"
    assert got == expected.encode()


def test_the_new_column_kinds_refuse_what_they_cannot_take(fast: Any) -> None:
    values = np.array([1, 2], dtype=np.int32)
    keys = np.array([1], dtype=np.int64)
    offsets = np.array([0, 1], dtype=np.uint64)
    text = int(fast.ffi.cast("uintptr_t", fast.ffi.from_buffer(b"x")))
    keyed = {"flags": encode.KEYED, "keys": keys.ctypes.data, "entries": 1, "offsets": offsets.ctypes.data}
    assert run(fast, 2, column(encode.PICK, values, text=text, text_len=1, **keyed)) == encode.ERR_KEY
    assert run(fast, 1, column(encode.PICK, values, text=text, text_len=1, **keyed)) == b"x"
    spec_errors = [
        column(encode.DEC, values, shift=3),  # a shift of a signed value
        column(encode.DEC, values.astype(np.uint32), shift=64),
        column(encode.CONST, flags=encode.SKIP_ONES),  # nothing to read
        column(encode.HEXROW, values.view(np.uint8).reshape(2, 4), flags=encode.SKIP_ONES),
        column(encode.DEC, values, flags=encode.KEYED),
        column(encode.PICK, values.astype(np.uint32), text=text, text_len=1, **keyed),  # keys are signed
        column(encode.DEC, values, flags=4),
        column(encode.COUNT + 1),
    ]
    for spec in spec_errors:
        assert run(fast, 2, spec) == fast.lib.ENC_ERR_SPEC
    assert run(fast, 3, column(encode.COUNT, base=10**19), capacity=59) == fast.lib.ENC_ERR_ROOM
    assert (
        run(fast, 3, column(encode.COUNT, base=10**19), capacity=60)
        == b"100000000000000000001000000000000000000110000000000000000002"
    )


def test_the_line_buffer_holds_what_it_is_given() -> None:
    held = LineBuffer()
    held.append(b"one\n")
    room = held.room(line_buffer.KEEP_SIZE + 1)  # grown past what it keeps, what it held copied over
    room[:4] = np.frombuffer(b"two\n", dtype=np.uint8)
    held.take(4)
    assert bytes(held.view()) == held.tail(0) == b"one\ntwo\n" and len(held) == 8
    held.cut(4)
    assert held.tail(0) == b"one\n"
    held.clear()
    assert len(held) == 0 and held.room(0).size == 0  # a huge buffer is let go


@pytest.mark.parametrize("schema", [1, 2])
def test_a_batch_refused_by_its_extra_reads_no_clock(tmp_path: Path, schema: int) -> None:
    """An ``extra`` that is not JSON data is refused before the clock is read, with the template or without: the
    log is the one the same clock gives without the refused batch."""
    good = batch([-2, NO_OWNER], [4096, -1])
    bad = dataclasses.replace(good, extra={"why": object()})

    def write(setting: str, path: Path) -> None:
        with AuditLog(path, "verifier", fsync="never", clock=clock(), schema=schema, max_bytes=None) as log:
            log.record_batch(good)
            with pytest.raises(TypeError):
                log.record_batch(bad)
            log.record_batch(good)

    logs = both_ways(tmp_path, write)
    path = tmp_path / "without"
    with AuditLog(path, "verifier", fsync="never", clock=clock(), schema=schema, max_bytes=None) as log:
        log.record_batch(good)
        log.record_batch(good)
    assert logs[0] == logs[1] == path.read_bytes()
