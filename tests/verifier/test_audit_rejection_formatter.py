"""encode.c's straight-line formatter of the rejection template (``enc_rejections``) against its generic loop.

``enc_lines`` (the generic loop, held to the column path by test_audit_programs.py and to a frozen reference by
test_audit_encoders.py) is the semantics: for the same column specs ``enc_rejections`` must return the same count
and write the same bytes, or the same refusal -- on random batches, on every field at 0 and at its largest and
smallest, on hostile strings in the template's constants, and at every output capacity around the batch's size;
and it must answer ``ENC_ERR_SHAPE`` (nothing written) to columns that are not such a template.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from ring.descriptors import RX_DESC, TX_DESC
from tests.verifier.compiled import compiled_accelerator, forget_accelerators
from tests.verifier.test_audit_encoders import random_batch
from tests.verifier.test_audit_programs import LEAD, batch, column, stamp
from verifier.audit import encode, programs
from verifier.audit.line_buffer import LineBuffer
from verifier.audit.rejection_batch import RejectionBatch
from verifier.rules import reasons as R
from verifier.rules.checks import NO_OWNER

HOSTILE = ['"', "\\", "\u0000\u001f\u007f", "\u00e9\u2028\ud7ff", "}\n{", "a" * 300]


@pytest.fixture
def fast() -> Any:
    forget_accelerators()
    return compiled_accelerator(encode.enabled(), encode.status())


def program_of(fast: Any, rows: RejectionBatch, lead: bytes | None, end: bytes) -> programs.Program:
    """The template the writer uses for ``rows`` (built, or rebuilt for its owners, as the writer does)."""
    programs._PROGRAMS.clear()
    out = LineBuffer()
    assert programs.write_rejections(fast, rows, lead, lambda: stamp(0), end, 0, out) is not None
    (program,) = programs._PROGRAMS.values()
    return program


def pointed(fast: Any, program: programs.Program, rows: RejectionBatch, mark: bytes, first: int) -> Any:
    """The template's specs pointed at ``rows`` as ``enc_template_rows`` points them (its ``reserved`` marks read
    here in numpy): what ``enc_rejections`` and ``enc_lines`` are both handed.  Valid while ``rows``, ``mark`` are."""
    words = program.words.copy().reshape(program.columns, -1)
    address = {
        programs.DESCS: rows.descs, programs.RING_INDEX: rows.ring_index, programs.REASON: rows.reason,
        programs.BAD_BYTE: rows.bad_byte, programs.OWNER: rows.owner,
    }  # fmt: skip
    fields = {f: encode.ENC_COLUMN.fields[f][1] // 8 for f in ("data", "text", "text_len", "shift", "base")}  # type: ignore[index]
    for spec in words:
        source = int(spec[fields["shift"]]) >> 32
        spec[fields["shift"]] &= 0xFFFFFFFF
        if source in address:
            spec[fields["data"]] += int(fast.ffi.cast("uintptr_t", fast.ffi.from_buffer(address[source])))
        elif source == programs.STAMP:
            spec[fields["text"]] = int(fast.ffi.cast("uintptr_t", fast.ffi.from_buffer(mark)))
            spec[fields["text_len"]] = len(mark)
        elif source == programs.FIRST:
            spec[fields["base"]] = first
        else:
            assert source == 0
    return words.reshape(-1)


def both(fast: Any, words: np.ndarray[Any, Any], columns: int, n: int, capacity: int) -> tuple[Any, Any]:
    """(``enc_rejections``'s, ``enc_lines``'s) answer for the same specs: the bytes, or the refusal code."""
    answers = []
    for formatter in (fast.lib.enc_rejections, fast.lib.enc_lines):
        out = np.full(max(capacity, 1), 0xAA, dtype=np.uint8)
        specs = fast.ffi.from_buffer("struct enc_column[]", words)
        written = formatter(specs, columns, n, fast.ffi.from_buffer(out), capacity)
        answers.append(int(written) if written < 0 else out[:written].tobytes())
    return answers[0], answers[1]


def same_lines(fast: Any, rows: RejectionBatch, lead: bytes | None, end: bytes, first: int, mark: bytes) -> bytes:
    programs._PROGRAMS.clear()
    program = program_of(fast, rows, lead, end)
    words = pointed(fast, program, rows, mark, first)
    capacity = len(rows) * (program.row_max + len(mark))
    special, generic = both(fast, words, program.columns, len(rows), capacity)
    assert special == generic
    assert isinstance(special, bytes)
    return special


@pytest.mark.parametrize("lead", [LEAD, None], ids=["v2 lines", "v1 tails"])
def test_random_batches_are_written_as_the_generic_loop_writes_them(fast: Any, lead: bytes | None) -> None:
    rng = np.random.default_rng(7)
    taken = 0
    for k in range(200):
        rows = random_batch(rng)
        if not isinstance(rows, RejectionBatch):
            continue
        first = int(rng.integers(0, 2**63 - 100))
        end = b',"protection":"verifier"}\n' if lead else b',"protection":"verifier","prev":"\n'
        same_lines(fast, rows, lead, end, first, stamp(k))
        taken += 1
    assert taken > 100


@pytest.mark.parametrize("dtype", [TX_DESC, RX_DESC], ids=["tx", "rx"])
@pytest.mark.parametrize("edge", ["zero", "max", "min"])
def test_every_field_at_its_edges(fast: Any, dtype: np.dtype[Any], edge: str) -> None:
    """Descriptor fields, ring index, bad byte, owner and seq at 0, at their largest and at their smallest."""
    n = 4
    descs = np.zeros(n, dtype=dtype)
    for name in dtype.names or ():
        info = np.iinfo(dtype.fields[name][0])  # type: ignore[index]
        descs[name] = {"zero": 0, "max": info.max, "min": info.min}[edge]
    int64 = np.iinfo(np.int64)
    value = {"zero": 0, "max": int64.max, "min": int64.min}[edge]
    owner = {"zero": 0, "max": 2**31 - 1, "min": -(2**31)}[edge]
    rows = dataclasses.replace(
        batch([owner, NO_OWNER, owner, -2], [value, -1, -2, 0]),
        descs=descs,
        ring_index=np.full(n, value, dtype=np.int64),
        reason=np.array([R.ADDR_NOT_PINNED, R.PKT_BAD_FRAGMENT, 0, R.ADDR_NOT_PINNED], dtype=np.uint8),
    )
    first = {"zero": 0, "max": 2**63 - 1 - n, "min": 0}[edge]
    got = same_lines(fast, rows, LEAD, b"}\n", first, b"")
    assert got.count(b"\n") == n


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_strings_in_the_template(fast: Any, hostile: str) -> None:
    """Names, NICs and extras with quotes, escapes, controls, non-ASCII and long text: constants of the template."""
    rows = dataclasses.replace(
        batch([NO_OWNER, 5, -1], [4096, -1, 2**40]),
        tenant_name=hostile,
        nic=hostile,
        extra={"why": hostile, hostile: [hostile, 2**70]},
    )
    same_lines(fast, rows, LEAD, b',"protection":"' + hostile.encode("unicode_escape") + b'"}\n', 3, stamp(1))


def test_every_capacity_around_the_batch_is_decided_as_the_generic_loop_decides(fast: Any) -> None:
    """Too little room for a row's most but enough for its bytes, just enough, one byte short: same answers."""
    rows = batch([NO_OWNER, 3, -1], [-1, 2**12, 5])
    exact = same_lines(fast, rows, LEAD, b"}\n", 10, stamp(2))
    program = program_of(fast, rows, LEAD, b"}\n")
    words = pointed(fast, program, rows, stamp(2), 10)
    for capacity in range(0, len(rows) * (program.row_max + len(stamp(2))) + 2):
        special, generic = both(fast, words, program.columns, len(rows), capacity)
        assert special == generic
        assert special == (exact if capacity >= len(exact) else fast.lib.ENC_ERR_ROOM)


def test_refusals_are_the_generic_loops(fast: Any) -> None:
    """A reason outside its table and an owner the template has no label for: the same refusal codes."""
    rows = batch([NO_OWNER, 7], [-1, -1])
    programs._PROGRAMS.clear()
    program = program_of(fast, rows, LEAD, b"}\n")
    unknown_owner = dataclasses.replace(rows, owner=np.array([NO_OWNER, 8], dtype=np.int32))
    bad_reason = dataclasses.replace(rows, reason=np.array([1, 255], dtype=np.uint8))
    for changed, code in ((unknown_owner, encode.ERR_KEY), (bad_reason, fast.lib.ENC_ERR_INDEX)):
        words = pointed(fast, program, changed, b"", 0)
        special, generic = both(fast, words, program.columns, 2, 4096)
        assert special == generic == code


def test_the_batch_is_pointed_in_c_as_here(fast: Any) -> None:
    """``enc_template_rows`` (what the writer calls) writes what the specs pointed here write; an unknown part of a
    batch or more columns than it copies are refused before a byte is written."""
    rng = np.random.default_rng(3)
    for k in range(40):
        rows = random_batch(rng)
        if not isinstance(rows, RejectionBatch):
            continue
        first, mark = int(rng.integers(0, 2**63 - 100)), stamp(k)
        expected = same_lines(fast, rows, LEAD, b"}\n", first, mark)
        held = LineBuffer()
        written = programs._run(fast, program_of(fast, rows, LEAD, b"}\n"), rows, mark, first, held)
        assert held.room(0)[:written].tobytes() == expected
    rows = batch([NO_OWNER, 4], [-1, 4096])
    program = program_of(fast, rows, LEAD, b"}\n")
    words = program.words.copy()
    words[encode.ENC_COLUMN.fields["shift"][1] // 8] |= 8 << 32  # type: ignore[index]
    out = np.full(1 << 16, 0xAA, dtype=np.uint8)
    arrays = [fast.ffi.from_buffer(a) for a in (rows.descs, rows.ring_index, rows.reason, rows.bad_byte, rows.owner)]
    for specs, columns in ((words, program.columns), (np.tile(program.words, 65), 65 * program.columns)):
        refused = fast.lib.enc_template_rows(
            fast.ffi.from_buffer("struct enc_column[]", specs), min(columns, 65), *arrays, b"", 0, 0, 0, 0, len(rows),
            fast.ffi.from_buffer(out), len(out),
        )  # fmt: skip
        assert refused == fast.lib.ENC_ERR_SPEC
        assert bool(np.all(out == 0xAA))


def test_other_columns_are_refused_as_not_a_template(fast: Any) -> None:
    """A program of other columns: ENC_ERR_SHAPE, nothing written (the caller runs the generic loop)."""
    values = np.arange(3, dtype=np.int64)
    specs = np.concatenate([column(encode.DEC, values), column(encode.CONST, text=0, text_len=0)])
    out = np.full(64, 0xAA, dtype=np.uint8)
    written = fast.lib.enc_rejections(fast.ffi.from_buffer("struct enc_column[]", specs), 2, 3,
                                      fast.ffi.from_buffer(out), 64)  # fmt: skip
    assert written == encode.ERR_SHAPE
    assert (out == 0xAA).all()
    rows = batch([NO_OWNER], [-1])
    programs._PROGRAMS.clear()
    program = program_of(fast, rows, LEAD, b"}\n")
    words = pointed(fast, program, rows, b"", 0)
    for cut in (1, program.columns - 1):  # a template missing a column is not one
        special, _ = both(fast, words, cut, 1, 4096)
        assert special == encode.ERR_SHAPE
