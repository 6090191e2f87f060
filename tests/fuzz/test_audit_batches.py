"""The batch audit path under attack: same records as row by row, and the oracle still sees every fault in it.

``MemoryAudit`` keeps a doorbell's rejections (and a DMA batch's IOMMU
faults) as columns, and the oracle's ``AuditWatch`` checks them in bulk
(``since``).  A sink that loses, doubles, misplaces or blanks a record on
that path must be caught exactly as on the row-by-row path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pytest

from fuzz.campaign import run_campaign
from tests.fuzz.test_oracle_checks import campaign
from tests.verifier.test_lazy_records import EagerAudit
from verifier.audit.memory import MemoryAudit
from verifier.audit.rejection_batch import RecordRows, RejectionBatch


@pytest.mark.parametrize("mode", ["verifier", "iommu", "unsafe-inplace"])
def test_a_campaign_records_the_same_either_way(mode: str) -> None:
    lazy, eager = MemoryAudit(keep=1 << 20), EagerAudit(keep=1 << 20)
    results = [run_campaign(mode, 3, iterations=40, batch=64, arena_every=4, audit=sink) for sink in (lazy, eager)]
    assert results[0].as_dict() == results[1].as_dict()
    assert results[0].audit_problems == [] and (results[0].escapes == 0 or mode == "unsafe-inplace")  # its race
    assert lazy.seq == eager.seq > 500
    assert list(lazy.records) == list(eager.records)
    assert lazy.counters == eager.counters and lazy.kind_counters == eager.kind_counters


def rows(batch: RejectionBatch, pick: list[int] | np.ndarray[Any, Any], **change: Any) -> RejectionBatch:
    """``batch`` with only rows ``pick`` (in that order, repeats allowed), then fields replaced."""
    cols = {k: getattr(batch, k)[pick] for k in ("ring_index", "reason", "bad_byte", "owner", "descs")}
    return dataclasses.replace(batch, **{**cols, **change})


class LosesOne(MemoryAudit):
    """Takes a batch but stores and counts all rows except the first; the seq numbers still cover it."""

    def record_batch(self, batch: RecordRows) -> Any:
        if not isinstance(batch, RejectionBatch) or len(batch) < 2:
            return super().record_batch(batch)
        super().record_batch(rows(batch, list(range(1, len(batch)))))
        self.seq += 1
        return range(self.seq - len(batch), self.seq)


class DoublesOne(MemoryAudit):
    """Records the first row of each batch twice."""

    def record_batch(self, batch: RecordRows) -> Any:
        if not isinstance(batch, RejectionBatch):
            return super().record_batch(batch)
        return super().record_batch(rows(batch, [0, *range(len(batch))]))


class MisplacesOne(MemoryAudit):
    """Names the wrong ring slot in the first record of each batch."""

    def record_batch(self, batch: RecordRows) -> Any:
        if not isinstance(batch, RejectionBatch):
            return super().record_batch(batch)
        slots = batch.ring_index.copy()
        slots[0] = 999
        return super().record_batch(dataclasses.replace(batch, ring_index=slots))


class ForgetsOne(MemoryAudit):
    """Numbers and counts every row of a batch, but keeps no record of its last one."""

    def record_batch(self, batch: RecordRows) -> Any:
        if not isinstance(batch, RejectionBatch) or len(batch) < 2:
            return super().record_batch(batch)
        super().record_batch(rows(batch, list(range(len(batch) - 1))))
        reason = batch.names[int(batch.reason[-1])]
        self.seq += 1
        self.tally.add(batch.nic, batch.kind, batch.queue, {reason: 1})
        return range(self.seq - len(batch), self.seq)


@dataclasses.dataclass(frozen=True, eq=False)
class Unnamed(RejectionBatch):
    names: ClassVar[Mapping[int, str]] = {code: "" for code in range(256)}


class BlanksReasons(MemoryAudit):
    """Records every row, but with an empty reason."""

    def record_batch(self, batch: RecordRows) -> Any:
        if not isinstance(batch, RejectionBatch):
            return super().record_batch(batch)
        return super().record_batch(Unnamed(**{f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}))


@pytest.mark.parametrize(
    ("sink", "says"),
    [
        (LosesOne, "refused in the ring"),
        (DoublesOne, "with several [0"),
        (MisplacesOne, "records for slots not refused [999]"),
        (BlanksReasons, "has no reason"),
    ],
)
def test_the_oracle_catches_a_bad_batch_record(sink: type[MemoryAudit], says: str) -> None:
    bad = sink()
    found = campaign(bad, "verifier", ["kernel-tx"], steps=1)
    assert found and {e.kind for e in found} == {"audit"}, found
    assert any(says in e.what for e in found), found
    assert campaign(MemoryAudit(), "verifier", ["kernel-tx"], steps=1) == []  # the honest sink passes


@pytest.mark.parametrize("keep", [64, 100_000])
def test_a_record_lost_from_a_full_store_is_not_taken_for_eviction(keep: int) -> None:
    """A full bounded store (the campaign keeps 1000) only drops its oldest records: a gap elsewhere was lost.

    The counters and seq numbers add up, and at the end a full store can only be checked in totals, so the
    per-step check of one held record per seq is what finds it.
    """
    found = campaign(ForgetsOne(keep=keep), "verifier", ["kernel-tx"], steps=3)
    assert found and {e.kind for e in found} == {"audit"}, found
    assert sum("not one per seq" in e.what for e in found) == 3, found
    assert campaign(MemoryAudit(keep=keep), "verifier", ["kernel-tx"], steps=3) == []
