"""``AuditLog.record_batch``: a whole doorbell's rejections encoded at once, byte for byte the per-record log.

The file format's guarantees do not depend on how records arrive: one record
per rejection, one hash per record, the chain verifying across rotation, the
counters equal to the records.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from ring.descriptors import RX_DESC
from tests.verifier.test_audit import clock
from tests.verifier.test_lazy_records import fault_batch, tx_batch
from verifier.audit.lines import record_tails
from verifier.audit.log import AuditError, AuditLog, rotated_siblings
from verifier.audit.read import read_records, verify
from verifier.audit.record import AuditRecord
from verifier.audit.rejection_batch import RecordRows, RejectionBatch
from verifier.audit.rejections import record_rows


def batches() -> list[RecordRows]:
    rx = dataclasses.replace(tx_batch(7, seed=5, extra={"checked_bytes": 2048}), kind="rx")
    return [tx_batch(40, seed=1), fault_batch(5), rx, tx_batch(1, seed=2), fault_batch(3, write=False)]


def write(path: Path, batched: bool, items: list[RecordRows], **kw: Any) -> AuditLog:
    """A log of ``items``: through ``record_batch`` or one ``record()`` per row, a register event in between."""
    kw = {"fsync": "never", "clock": clock(), **kw}
    with AuditLog(path, "verifier", **kw) as log:
        for rows in items:
            if batched:
                assert list(record_rows(log, rows)) == list(range(log.next_seq - len(rows), log.next_seq))
            else:
                for row in rows.records():
                    log.record(row)
            log.record(AuditRecord(tenant=1, tenant_name="bob", nic="nic1", queue=None, kind="register",
                                   ring_index=None, raw=None, fields=None, reason="REG_NOT_DOORBELL",
                                   detail={"rule": "x"}))  # fmt: skip
            log.commit()
    return log


def files(path: Path) -> list[Path]:
    return [*(p for _, p in rotated_siblings(path)), path]


@pytest.mark.parametrize(
    "kw", [{}, {"fsync": "always"}, {"fsync": "batch", "max_pending": 7}, {"rotate_bytes": 8 << 10}]
)
def test_a_batch_writes_the_bytes_of_one_record_per_row(tmp_path: Path, kw: dict[str, Any]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, many = tmp_path / "a" / "audit.jsonl", tmp_path / "b" / "audit.jsonl"
    by_row, by_batch = write(one, False, batches(), **kw), write(many, True, batches(), **kw)
    assert [p.read_bytes() for p in files(one)] == [p.read_bytes() for p in files(many)]
    if "rotate_bytes" in kw:
        assert len(files(many)) > 2
    result = verify(files(many))
    assert result.ok and result.records == 61 and result.head == by_batch.head == by_row.head
    records = list(read_records(files(many)))
    assert [r["seq"] for r in records] == list(range(61))
    assert Counter((r["nic"], r["queue"], r["reason"]) for r in records) == by_batch.counters == by_row.counters
    assert by_batch.statistics("nic2", None, "iommu") == {"IOMMU_NOT_MAPPED": 5, "IOMMU_PERMISSION": 3}


def test_a_value_that_looks_like_the_placeholder_falls_back_to_one_encode_per_record(tmp_path: Path) -> None:
    sly = tx_batch(4, extra={"note": {"prev": "~" * 64}})  # a nested "prev" with the placeholder's value
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write(tmp_path / "a" / "log", False, [sly])
    write(tmp_path / "b" / "log", True, [sly])
    assert (tmp_path / "a" / "log").read_bytes() == (tmp_path / "b" / "log").read_bytes()
    assert verify([tmp_path / "b" / "log"]).ok


def test_a_batch_with_a_bad_reason_records_nothing(tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True, eq=False)
    class Odd(RejectionBatch):
        names: ClassVar[Mapping[int, str]] = {code: "not a code" for code in range(256)}

    log = AuditLog(tmp_path / "log", "verifier", fsync="never", clock=clock())
    with pytest.raises(ValueError, match="stable code"):
        record_rows(log, Odd(**{f.name: getattr(tx_batch(), f.name) for f in dataclasses.fields(tx_batch())}))
    assert log.next_seq == 0 and log.counters == {}
    log.close()


@pytest.mark.parametrize("batched", [False, True])
def test_a_write_error_part_way_counts_the_records_chained(tmp_path: Path, batched: bool) -> None:
    """An early flush (``max_pending``) that fails stops the batch: counters equal the records chained."""
    log = AuditLog(tmp_path / "log", "verifier", fsync="never", clock=clock(), max_pending=7)
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE, a real OS error as a full disk's
    log._file.close()
    log._file = open(write_end, "wb", buffering=0)  # noqa: SIM115 (log.close closes it)
    with pytest.raises(AuditError, match="cannot write"):
        if batched:
            record_rows(log, tx_batch(20))
        else:
            for row in tx_batch(20).records():
                log.record(row)
    assert log.next_seq == 7 and sum(log.counters.values()) == 7
    log.close()


class Sub(RejectionBatch):
    """A batch type ``audit_lines`` does not know: it must take the dict path."""


def real_rx(n: int) -> RejectionBatch:
    """RX rejections in the real RX descriptor format, addresses at and above 2**63, every detail key."""
    base = tx_batch(n, seed=9)
    descs = np.zeros(n, dtype=RX_DESC)
    descs["addr"] = np.arange(n, dtype=np.uint64) * np.uint64(4097) + np.uint64(2**63 - 3)
    descs["length"], descs["csum"], descs["errors"] = 2048, 0xFFFF, 0x80
    bad = (descs["addr"].astype(np.uint64) + np.uint64(5)).view(np.int64)  # negative in int64 past 2**63
    return dataclasses.replace(base, kind="rx", descs=descs, bad_byte=bad)


def odd(batch: Any, **change: Any) -> Any:
    """``batch`` with fields of types its annotations do not promise (numpy scalars, None)."""
    return dataclasses.replace(batch, **change)


ESCAPED = 'm"al\\lo%sry\n\u00e9\u2028'  # quote, backslash, %, control, non-ASCII, a JS line separator
HIGH = np.full(4, 2**64 - 4096, dtype=np.uint64)
#: Every shape ``record_batch`` takes, whether ``audit_lines`` formats it (True) or the dict path does (False).
SHAPES: dict[str, tuple[RecordRows, bool]] = {
    "tx, every detail": (tx_batch(48, seed=3), True),
    "tx, shared extra": (tx_batch(12, extra={"checked_bytes": 2048, "why": ESCAPED}), True),
    "rx, RX_DESC, >= 2**63": (real_rx(9), True),
    "rx, no queue": (odd(tx_batch(5), kind="rx", queue=None), True),
    "numpy tenant and queue": (odd(tx_batch(5), tenant=np.int64(2), queue=np.int32(1)), True),
    "names to escape": (odd(tx_batch(8), tenant_name=ESCAPED, nic='n%d"ic'), True),
    "iommu write": (fault_batch(6), True),
    "iommu read, iova >= 2**63": (odd(fault_batch(4, write=False), iova=HIGH), True),
    "iommu, names to escape": (odd(fault_batch(3), tenant=-1, tenant_name=ESCAPED, nic="nic%s"), True),
    "extra overrides a row key": (tx_batch(6, extra={"owner": "someone", "zz": 1}), False),
    "extra: numpy, bytes, nested": (
        tx_batch(6, extra={"n": np.uint16(7), "b": b"\x01", "x": {"prev": "~" * 64}}),
        True,
    ),
    "float length column": (odd(fault_batch(3), length=np.full(3, 64.5)), False),
    "subclass": (Sub(**{f.name: getattr(tx_batch(4), f.name) for f in dataclasses.fields(tx_batch(4))}), False),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("protection", ["verifier", 'odd "mode" \\ é'])
def test_the_template_lines_are_the_bytes_of_record(tmp_path: Path, shape: str, protection: str) -> None:
    """Each shape, through ``record()`` row by row and through ``record_batch``: identical files, byte for byte.

    The clock steps 0.3 s a record so walls cross seconds inside a batch.
    """
    batch, templated = SHAPES[shape]
    assert (record_tails(batch) is not None) == templated
    logs = []
    for name, batched in (("rows", False), ("batch", True)):
        path = tmp_path / name
        with AuditLog(path, protection, fsync="never", clock=clock(300_000_000)) as log:
            for _ in range(2):
                if batched:
                    assert log.record_batch(batch) == range(log.next_seq - len(batch), log.next_seq)
                else:
                    for row in batch.records():
                        log.record(row)
                log.commit()
        logs.append(log)
    assert (tmp_path / "rows").read_bytes() == (tmp_path / "batch").read_bytes()
    assert logs[0].counters == logs[1].counters and logs[0].head == logs[1].head
    assert verify([tmp_path / "batch"]).ok
