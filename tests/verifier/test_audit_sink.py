"""Every audit sink keeps the whole ``AuditSink`` contract, so no caller has to probe one for what it has."""

from __future__ import annotations

from pathlib import Path

from tests.verifier.test_audit import clock
from tests.verifier.test_lazy_records import fault_batch, tx_batch
from verifier.audit.log import AuditLog
from verifier.audit.memory import MemoryAudit
from verifier.audit.record import AuditRecord
from verifier.audit.rejections import AuditSink

EVENT = AuditRecord(1, "bob", "nic1", None, "register", None, None, None, "REG_NOT_DOORBELL", {"rule": "x"})


def feed(sink: AuditSink) -> None:
    """The same refusals, one by one and in batches."""
    assert sink.record(EVENT) == 0
    assert list(sink.record_batch(tx_batch(6))) == list(range(1, 7))
    assert list(sink.record_batch(fault_batch(4))) == list(range(7, 11))
    sink.commit()


def test_memory_and_file_sinks_answer_alike(tmp_path: Path) -> None:
    memory: AuditSink = MemoryAudit(keep=5)
    log: AuditSink = AuditLog(tmp_path / "audit.jsonl", "verifier", fsync="never", clock=clock())
    for sink in (memory, log):
        feed(sink)
    assert memory.next_seq == log.next_seq == 11
    assert dict(memory.counters) == dict(log.counters) and sum(log.counters.values()) == 11
    for key in [("nic2", 0, "tx"), ("nic2", None, "iommu"), ("nic1", None, None)]:
        assert memory.statistics(*key) == log.statistics(*key) != {}
    # what each holds to be read back: the newest ``capacity`` in memory, everything in the file
    assert memory.path is None and memory.capacity == 5
    assert sum(1 if isinstance(r, dict) else len(r) for r in memory.since(0)) == 5
    assert log.path == tmp_path / "audit.jsonl" and log.capacity == 0 and log.since(0) == []
    for sink in (memory, log):
        sink.close()
    assert len((tmp_path / "audit.jsonl").read_bytes().splitlines()) == 11
