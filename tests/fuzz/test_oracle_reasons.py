"""The oracle judges whether each audit record's reason is true (fuzz/oracle/reasons.py), from ground truth.

A sink that writes a wrong reason -- a different code, a first_bad_byte in
a pinned frame, an IOMMU fault of the other kind, a register claim that does
not hold -- is caught as an ``audit`` finding; honest campaigns in every
mode that refuses are not.  Tests may import verifier.rules.reasons (the oracle may not).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fuzz.campaign import run_campaign
from fuzz.classes import CLASSES
from fuzz.oracle import pin_claims
from fuzz.oracle.judge import Oracle
from fuzz.oracle.reasons import NOT_JUDGED, PREDICATES, RELEASED
from ring.memory import PAGE_SIZE, PhysicalMemory
from tests.verifier.compiled import compiled_accelerator
from verifier.audit.log import AuditLog
from verifier.audit.memory import MemoryAudit
from verifier.audit.record import AuditRecord
from verifier.audit.rejection_batch import IommuFaultBatch, RecordRows, RejectionBatch
from verifier.rules import reasons as R

SECURITY = {
    *("ADDR_WRAP", "ADDR_BEYOND_MEMORY", "ADDR_NOT_PINNED", "ACCESS_NO_READ", "ACCESS_NO_WRITE", "LEN_ZERO"),
    *("LEN_TOO_LONG", "CMD_UNSUPPORTED", "PIN_RELEASED", "IOMMU_NOT_MAPPED", "IOMMU_PERMISSION"),
}


def test_every_reason_is_judged_or_listed_with_why() -> None:
    real = set(R.BY_NAME)
    assert set(NOT_JUDGED) <= real and set(PREDICATES) <= real
    assert set(NOT_JUDGED) | set(PREDICATES) == real and not set(NOT_JUDGED) & set(PREDICATES)
    assert set(PREDICATES) >= SECURITY  # every address, length, access, IOMMU and wrap reason has a predicate
    assert all(why.strip() for why in NOT_JUDGED.values())


def wrong_reasons(result: Any) -> list[str]:
    return [f.escape.what for f in result.findings if f.kind == "audit"] + [e.what for e in result.audit_problems]


class Swaps(MemoryAudit):
    """Writes ``to`` wherever the verifier said ``frm`` (batch path)."""

    def __init__(self, frm: int, to: int) -> None:
        super().__init__(keep=1 << 20)
        self.frm, self.to = frm, to

    def record_batch(self, batch: RecordRows) -> Any:
        if isinstance(batch, RejectionBatch | IommuFaultBatch):
            reason = np.where(batch.reason == self.frm, self.to, batch.reason).astype(np.uint8)
            batch = dataclasses.replace(batch, reason=reason)
        return super().record_batch(batch)


def test_len_zero_on_a_nonzero_length_is_caught() -> None:
    result = run_campaign(
        "verifier", 1, ["kernel-tx"], iterations=2, batch=32, audit=Swaps(R.ADDR_NOT_PINNED, R.LEN_ZERO)
    )
    found = wrong_reasons(result)
    assert found and all("says LEN_ZERO, but a tx descriptor of length" in w for w in found), found


def test_an_iommu_fault_of_the_other_kind_is_caught() -> None:
    sink = Swaps(R.IOMMU_NOT_MAPPED, R.IOMMU_PERMISSION)
    found = wrong_reasons(run_campaign("iommu", 1, ["kernel-tx"], iterations=2, batch=32, audit=sink))
    assert found and all("says IOMMU_PERMISSION, but a page is not mapped" in w for w in found), found


class BadByteAtStart(MemoryAudit):
    """Names the descriptor's own first byte as first_bad_byte, where the verifier found a later one."""

    def record_batch(self, batch: RecordRows) -> Any:
        if isinstance(batch, RejectionBatch):
            later = (batch.reason == R.ADDR_NOT_PINNED) & (batch.bad_byte > batch.descs["addr"].astype(np.int64))
            bad = np.where(later, batch.descs["addr"].astype(np.int64), batch.bad_byte)
            batch = dataclasses.replace(batch, bad_byte=bad)
        return super().record_batch(batch)


def test_a_first_bad_byte_inside_a_pinned_frame_is_caught() -> None:
    found = wrong_reasons(run_campaign("verifier", 1, ["straddle"], iterations=4, batch=64, audit=BadByteAtStart()))
    assert found and all("says ADDR_NOT_PINNED" in w and "holds pin bits 0x" in w for w in found), found


class RowByRowLies(MemoryAudit):
    """The row-by-row path (``record``): a wrap called beyond memory, a register write called a foreign tail."""

    def record(self, entry: AuditRecord) -> int:
        lie = {"ADDR_WRAP": "ADDR_BEYOND_MEMORY", "REG_NOT_DOORBELL": "REG_NOT_OWNER"}
        return super().record(entry._replace(reason=lie.get(entry.reason, entry.reason)))

    def record_batch(self, batch: RecordRows) -> Any:
        return [self.record(entry) for entry in batch.records()]


@pytest.mark.parametrize(("cls", "says"), [("wrap", "ADDR_BEYOND_MEMORY"), ("register", "REG_NOT_OWNER")])
def test_row_by_row_records_are_judged_too(cls: str, says: str) -> None:
    found = wrong_reasons(run_campaign("verifier", 1, [cls], iterations=3, batch=32, audit=RowByRowLies()))
    assert found and all(f"says {says}, but" in w for w in found), found


@pytest.mark.parametrize("mode", ["verifier", "iommu", "unsafe-inplace"])
def test_honest_campaigns_have_no_wrong_reason(mode: str) -> None:
    classes = [*CLASSES, "race-points"]
    sink = MemoryAudit(keep=1 << 20)
    result = run_campaign(mode, 2, classes, iterations=3 * len(classes), batch=64, arena_every=3, audit=sink)
    assert wrong_reasons(result) == [] and sink.seq > 1000
    short = run_campaign(mode, 5, classes, iterations=1, batch=1)
    assert wrong_reasons(short) == []


def test_a_record_is_judged_against_the_pins_of_its_moment() -> None:
    """Records made before a grant see the frame unpinned, records after it see it pinned (and then released)."""
    oracle = Oracle(PhysicalMemory(1 << 20, 1 << 16, seed=1), {"nicX": 7})
    count = [0]
    oracle.clock = lambda: count[0]
    count[0] = 5
    oracle.grant(7, 0x20000, PAGE_SIZE, 1, bus=0x90000)
    count[0] = 9
    oracle.revoke(7, 0x20000, PAGE_SIZE, bus=0x90000)
    runs = oracle.references(7, 0, 12)
    assert [(lo, hi) for lo, hi, _ in runs] == [(0, 5), (5, 9), (9, 12)]
    frame = 0x20000 // PAGE_SIZE
    assert [int(ref.table[frame]) for _, _, ref in runs] == [0, 1, RELEASED]
    assert [dict(ref.bus) for _, _, ref in runs] == [{}, {0x90: (frame, 1)}, {}]
    oracle.forget_history()
    assert [(lo, hi) for lo, hi, _ in oracle.references(7, 0, 12)] == [(0, 12)]


class LoggedSwaps(AuditLog):
    """A file-backed log that writes LEN_ZERO where the verifier said ADDR_WRAP."""

    def record_batch(self, rows: RecordRows) -> Any:
        if isinstance(rows, RejectionBatch):
            reason = np.where(rows.reason == R.ADDR_WRAP, R.LEN_ZERO, rows.reason).astype(np.uint8)
            rows = dataclasses.replace(rows, reason=reason)
        return super().record_batch(rows)


@pytest.mark.parametrize("lies", [False, True])
def test_a_file_backed_log_is_judged_at_the_end_without_the_pin_reference(tmp_path: Path, lies: bool) -> None:
    log = (LoggedSwaps if lies else AuditLog)(tmp_path / "audit.jsonl", protection="verifier", fsync="never")
    result = run_campaign("verifier", 1, ["wrap", "straddle", "register"], iterations=6, batch=32, audit=log)
    log.close()
    found = wrong_reasons(result)
    if lies:
        assert found and all("says LEN_ZERO, but a tx descriptor of length" in w for w in found), found
    else:
        assert found == [] and log.next_seq > 100


@pytest.mark.parametrize(
    ("cls", "sink"),
    [
        ("straddle", lambda: BadByteAtStart()),
        ("kernel-tx", lambda: Swaps(R.ADDR_NOT_PINNED, R.PIN_RELEASED)),
        ("access-mismatch", lambda: Swaps(R.ACCESS_NO_READ, R.ADDR_NOT_PINNED)),
        ("own-unpinned", lambda: Swaps(R.ADDR_NOT_PINNED, R.ACCESS_NO_READ)),
    ],
)
def test_pin_claims_compiled_and_numpy_find_the_same_slips(
    cls: str, sink: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled pin-claim pass (fuzz/oracle/pinclaim.c) and ``reasons._claim_status`` (the semantics): the same
    wrong reasons, word for word, on campaigns with a pin or access slip planted."""
    compiled_accelerator(*pin_claims.state())
    compiled = wrong_reasons(run_campaign("verifier", 1, [cls], iterations=3, batch=64, audit=sink()))
    monkeypatch.setattr(pin_claims, "judge", lambda *_args: None)
    numpy = wrong_reasons(run_campaign("verifier", 1, [cls], iterations=3, batch=64, audit=sink()))
    assert compiled and compiled == numpy
