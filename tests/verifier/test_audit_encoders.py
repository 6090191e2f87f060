"""The writer's batch encoder against a frozen reference encoder: the same bytes, both schemas, hostile details.

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

from ring.descriptors import RX_DESC, TX_DESC
from tests.verifier.test_audit import clock, ticking_clock
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


@pytest.mark.parametrize("schema", [1, 2])
@pytest.mark.parametrize("seed", range(6))
def test_the_writer_writes_the_reference_bytes(tmp_path: Path, schema: int, seed: int) -> None:
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
