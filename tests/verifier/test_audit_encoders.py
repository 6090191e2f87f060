"""The writer's batch encoder against a frozen reference encoder: the same bytes, both schemas, hostile details.

Each test runs twice: with the compiled line formatter (verifier/audit/encode.c) and with the Python one
(``NIC_SANDBOX_FASTPATH=0``), which is the semantics.

The reference below is the plainest reading of docs/audit-log.md: each
record a dict in ``FIELDS`` order, ``json.dumps`` compact and ASCII, one
SHA-256 per record (v1) or one per batch over the batch's lines and its
checkpoint (v2).  It shares no code with ``verifier/audit/lines.py`` or the
writer's envelope, so a template that drifts (an escape, a huge integer, a
reason, an owner label) shows here as a byte that differs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ring.compiled import SWITCH
from ring.descriptors import RX_DESC, TX_DESC
from tests.verifier.compiled import compiled_accelerator, forget_accelerators
from tests.verifier.test_audit import clock, ticking_clock
from verifier.audit import encode
from verifier.audit.columns import Column, Hexes, HexRows, Ints, Picks, interleave
from verifier.audit.lines import tail_columns
from verifier.audit.log import GENESIS, AuditLog, format_wall
from verifier.audit.read import read_records, verify
from verifier.audit.rejection_batch import IommuFaultBatch, RecordRows, RejectionBatch
from verifier.rules import reasons as R
from verifier.rules.checks import NO_OWNER

CODES = [r.code for r in R.all_reasons() if r.code]
NAMES = ["mallory", 'm"al\\lo%sry\n\u00e9\u2028\x7f', "\U0001f600 eve", ""]
OWNERS = [NO_OWNER, -1, -2, -3, 0, 1, 2, 7, 2**31 - 1]


def random_batch(rng: np.random.Generator) -> RecordRows:
    """A batch of any shape the verifier hands over, with values at every edge."""
    n = int(rng.integers(1, 40))
    if rng.random() < 0.25:
        iova = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
        codes = np.array([R.IOMMU_NOT_MAPPED, R.IOMMU_PERMISSION], dtype=np.uint8)[rng.integers(0, 2, n)]
        return IommuFaultBatch(
            int(rng.integers(-1, 2**32)), str(rng.choice(NAMES)), "nic\u00e9", iova,
            rng.integers(0, 2**62, n), bool(rng.random() < 0.5), codes,
        )  # fmt: skip
    dtype = TX_DESC if rng.random() < 0.5 else RX_DESC
    descs = np.zeros(n, dtype=dtype)
    for name in dtype.names or ():
        info = np.iinfo(dtype.fields[name][0])  # type: ignore[index]
        descs[name] = rng.integers(info.min, info.max, n, dtype=dtype.fields[name][0], endpoint=True)  # type: ignore[index]
    bad = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True)
    bad[rng.random(n) < 0.3] = -1
    extras: list[dict[str, Any] | None] = [
        None,
        {"checked_bytes": 2048},
        {"why": NAMES[1], "big": 2**70, "neg": -(2**65)},
    ]
    extra = extras[int(rng.integers(0, len(extras)))]
    return RejectionBatch(
        tenant=int(rng.integers(0, 2**32)),
        tenant_name=str(rng.choice(NAMES)),
        nic=str(rng.choice(["nic2", 'n"ic', "\u00e9th0"])),
        queue=int(rng.integers(0, 2**32)),
        kind=str(rng.choice(["tx", "rx"])),
        ring_index=rng.integers(0, 2**32, n).astype(np.int64),
        reason=np.array(rng.choice(CODES, n), dtype=np.uint8),
        bad_byte=bad,
        owner=np.array(rng.choice(OWNERS, n), dtype=np.int32),
        descs=descs,
        extra=extra,
    )


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def reference(protection: str, batches: list[RecordRows], schema: int, step_ns: int) -> bytes:
    """The log's bytes as the spec says, one dict per record: what the writer must produce."""
    ticks = ticking_clock(step_ns)
    out, prev = [], GENESIS
    seq = 0
    for rows in batches:
        stamp = next(ticks) if schema == 2 else (0, 0)  # v2: one reading per batch
        lines = []
        for entry in rows.records():
            wall, mono = stamp if schema == 2 else next(ticks)
            record: dict[str, Any] = {
                "v": schema, "seq": seq, "wall": format_wall(wall), "mono_ns": mono, "tenant": entry.tenant,
                "tenant_name": entry.tenant_name, "nic": entry.nic, "queue": entry.queue, "kind": entry.kind,
                "ring_index": entry.ring_index, "desc_hex": None if entry.raw is None else entry.raw.hex(),
                "desc": entry.fields, "reason": entry.reason, "detail": entry.detail, "protection": protection,
            }  # fmt: skip
            if schema == 1:
                record["prev"] = prev
                prev = record["hash"] = hashlib.sha256(prev.encode() + dumps(record)).hexdigest()
            lines.append(dumps(record) + b"\n")
            seq += 1
        if schema == 1:
            out += lines
            continue
        checkpoint: dict[str, Any] = {"v": 2, "checkpoint": seq - 1, "records": len(lines), "prev": prev}
        batch = b"".join(lines)
        prev = checkpoint["hash"] = hashlib.sha256(prev.encode() + batch + dumps(checkpoint)).hexdigest()
        out += [batch, dumps(checkpoint) + b"\n"]
    return b"".join(out)


@pytest.fixture(params=["compiled", "python"])
def formatter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The compiled line formatter (required where it can be built), or the Python one alone."""
    forget_accelerators()
    if request.param == "python":
        monkeypatch.setenv(SWITCH, "0")
        assert encode.enabled() is None
    else:
        monkeypatch.delenv(SWITCH, raising=False)
        compiled_accelerator(encode.enabled(), encode.status())
    yield request.param
    forget_accelerators()


@pytest.mark.parametrize("schema", [1, 2])
@pytest.mark.parametrize("seed", range(6))
def test_the_writer_writes_the_reference_bytes(tmp_path: Path, schema: int, seed: int, formatter: str) -> None:
    rng = np.random.default_rng(seed)
    batches = [random_batch(rng) for _ in range(12)]
    protection = 'verifier "\u00e9"' if seed % 2 else "verifier"
    step = 300_000_000  # walls cross seconds inside a v1 batch
    path = tmp_path / "log"
    with AuditLog(path, protection, fsync="never", clock=clock(step), schema=schema, max_bytes=None) as log:
        for rows in batches:
            assert log.record_batch(rows) == range(log.next_seq - len(rows), log.next_seq)
            log.commit()
    assert path.read_bytes() == reference(protection, batches, schema, step)
    result = verify([path])
    assert result.ok and result.records == sum(len(b) for b in batches) and result.head == log.head
    assert len(list(read_records([path]))) == result.records


def test_the_hostile_shapes_are_covered() -> None:
    """The random batches reach every reason, both IOMMU accesses, both descriptor formats, ints past 2**63."""
    rng = np.random.default_rng(0)
    batches = [random_batch(rng) for _ in range(6 * 12)]
    reasons = set()
    for rows in batches:
        reasons |= {int(c) for c in rows.reason}
    assert reasons >= set(CODES)
    assert {type(b) for b in batches} == {RejectionBatch, IommuFaultBatch}
    assert any(isinstance(b, RejectionBatch) and (b.bad_byte < -1).any() for b in batches)


@pytest.mark.parametrize(
    "owners", [[0, 0, 0], [NO_OWNER, NO_OWNER], [0, NO_OWNER, 0], [2, 2], [2, 1, 1, 2], [NO_OWNER, 0, 2, 0]]
)
def test_owner_labels_are_the_records_owners_whole(owners: list[int]) -> None:
    """The column an observer reads (one- and two-owner batches skip np.unique) names each row's owner as its record
    does, every character of it: a batch all of one owner once came back cut to one character ('k' for 'kernel')."""
    n = len(owners)
    batch = RejectionBatch(
        tenant=1, tenant_name="alice", nic="nic0", queue=0, kind="tx",
        ring_index=np.arange(n, dtype=np.int64), reason=np.full(n, R.ADDR_NOT_PINNED, dtype=np.uint8),
        bad_byte=np.full(n, 4096, dtype=np.int64), owner=np.array(owners, dtype=np.int32),
        descs=np.zeros(n, dtype=TX_DESC),
    )  # fmt: skip
    expected = [record.detail.get("owner", "") for record in batch.records()]
    assert batch.owner_labels.tolist() == expected
    assert any(len(label) > 1 for label in expected) or all(o == NO_OWNER for o in owners)


def test_the_compiled_formatter_takes_every_batch_shape() -> None:
    """Every random batch's columns are written by encode.c (not handed back to Python) as ``interleave`` writes
    them."""
    fast = compiled_accelerator(encode.enabled(), encode.status())
    rng = np.random.default_rng(7)
    for _ in range(60):
        rows = random_batch(rng)
        columns = tail_columns(rows)
        assert columns is not None
        lines = [
            b"{",
            Ints(np.arange(len(rows), dtype=np.int64) + 2**62),
            *columns,
            [b"x%d" % i for i in range(len(rows))],
        ]
        assert encode.lines(fast, len(rows), lines) == interleave(len(rows), lines)


def test_the_compiled_formatter_refuses_hostile_columns() -> None:
    """An index outside its table is refused by C and by Python alike; a short buffer is refused, not overrun."""
    fast = compiled_accelerator(encode.enabled(), encode.status())
    for index in (np.array([0, 2], dtype=np.int64), np.array([0, -1], dtype=np.int64), np.array([0, 200], np.uint8)):
        columns: list[Column] = [b"a", Picks([b"x", b"y"], index)]
        assert encode.lines(fast, 2, columns) is None
        with pytest.raises(IndexError):
            encode.render(2, columns)
    assert encode.lines(fast, 3, [Ints(np.zeros(2, dtype=np.int64))]) is None  # a column shorter than the batch
    assert encode.lines(fast, 1, [HexRows(np.zeros((2, 16), dtype=np.uint8))]) is None
    assert encode.lines(fast, 2, [Ints(np.zeros(2, dtype=np.float64))]) is None  # not integers: Python decides
    spec = np.zeros(1, dtype=encode.ENC_COLUMN)
    text = fast.ffi.from_buffer(b"0123456789")
    spec["op"], spec["text"], spec["text_len"] = encode.CONST, int(fast.ffi.cast("uintptr_t", text)), 10
    out = np.zeros(64, dtype=np.uint8)
    columns_ptr = fast.ffi.from_buffer("struct enc_column[]", spec)
    assert fast.lib.enc_lines(columns_ptr, 1, 3, fast.ffi.from_buffer(out), 25) == fast.lib.ENC_ERR_ROOM
    assert not out[25:].any()  # nothing past the capacity
    assert fast.lib.enc_lines(columns_ptr, 1, 3, fast.ffi.from_buffer(out), 30) == 30
    spec["op"] = 99
    assert fast.lib.enc_lines(columns_ptr, 1, 3, fast.ffi.from_buffer(out), 64) == fast.lib.ENC_ERR_SPEC
    spec["op"], spec["width"] = encode.DEC, 3
    assert fast.lib.enc_lines(columns_ptr, 1, 3, fast.ffi.from_buffer(out), 64) == fast.lib.ENC_ERR_SPEC


def test_hexes_and_masks_write_what_python_writes(formatter: str) -> None:
    """Integers of every width and sign, at their edges, in decimal and hex, masked or not: ``str`` and ``hex``."""
    values = [0, 1, 9, 10, 99, 100, -1, -10, 2**63 - 1, -(2**63)]
    mask = np.array([i % 3 != 1 for i in range(len(values))])
    for dtype in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64):
        column = np.array(values).astype(dtype)
        n = len(column)
        columns: list[Column] = [
            Ints(column),
            b" ",
            Hexes(column),
            b" ",
            Ints(column, mask),
            Hexes(column, mask),
            b"\n",
        ]
        expected = b"".join(
            b"%d %s %s%s\n" % (v, hex(v).encode(), b"%d" % v if m else b"", hex(v).encode() if m else b"")
            for v, m in zip(column.tolist(), mask.tolist(), strict=True)
        )
        assert encode.render(n, columns) == expected == interleave(n, columns)
