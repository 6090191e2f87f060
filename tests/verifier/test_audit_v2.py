"""Schema v2: records in batches, one chained checkpoint per batch -- what it keeps, what it detects, what it names.

docs/audit-log.md states the contract: an edit anywhere in a batch fails
that batch's checkpoint; a batch deleted, reordered or spliced breaks the
next checkpoint's ``prev``; a file cut inside a batch leaves records with no
checkpoint; a problem names the batch (its seqs, the checkpoint's line),
not the record.  Rotation, the disk budget, reopening, torn tails, group
commit and anchors hold as in v1.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.verifier.test_audit import clock
from tests.verifier.test_lazy_records import fault_batch, tx_batch
from verifier.audit.durability import GroupCommit
from verifier.audit.log import AuditError, AuditLog, read_pruned, rotated_siblings
from verifier.audit.read import Anchor, log_files, read_records, verify
from verifier.audit.record import AuditRecord

REGISTER = AuditRecord(1, "bob", "nic1", None, "register", None, None, None, "REG_NOT_DOORBELL", {"rule": "x"})


def write(path: Path, doorbells: int = 6, **kw: Any) -> AuditLog:
    """A v2 log: ``doorbells`` batches of 10 TX rejections and 3 IOMMU faults, and a register record each."""
    kw = {"fsync": "never", "clock": clock(), "schema": 2, **kw}
    with AuditLog(path, "verifier", **kw) as log:
        for i in range(doorbells):
            log.record_batch(tx_batch(10, seed=i))
            log.record_batch(fault_batch(3))
            log.record(REGISTER)
            log.commit()
    return log


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def is_checkpoint(line: bytes) -> bool:
    return line.startswith(b'{"v":2,"checkpoint":')


def test_a_v2_log_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = write(path)
    all_lines = lines(path)
    assert sum(map(is_checkpoint, all_lines)) == 6  # one checkpoint per commit
    assert all(json.loads(line)["v"] == 2 for line in all_lines)  # every line is JSON: jq reads it
    result = verify([path])
    assert result.ok and result.records == 6 * 14 and result.head == log.head and result.head_seq == 6 * 14 - 1
    assert result.lines == 6 * 14  # `audit verify` reports these as its records: checkpoint lines are not records
    records = list(read_records([path]))
    assert [r["seq"] for r in records] == list(range(6 * 14))
    assert "hash" not in records[0] and records[-1]["reason"] == "REG_NOT_DOORBELL"
    seen: list[dict[str, Any]] = []
    verify([path], on_record=seen.append)
    assert seen == records


def test_a_v2_log_reopens_where_it_ended_and_keeps_its_schema(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = write(path, 2)
    with AuditLog(path, "verifier", fsync="never", schema=1) as log:  # asks for v1: the log's own schema wins
        assert log.schema == 2 and log.next_seq == first.next_seq and log.head == first.head
        log.record(REGISTER)
    assert verify([path]).ok and verify([path]).records == first.next_seq + 1


def test_a_v1_log_stays_v1_when_a_v2_writer_opens_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 2, schema=1)
    with AuditLog(path, "verifier", fsync="never", schema=2) as log:
        assert log.schema == 1
        log.record(REGISTER)
    assert verify([path]).ok and b'"checkpoint"' not in path.read_bytes()


@pytest.mark.parametrize(
    "kw",
    [
        {"fsync": "always"},
        {"fsync": "batch", "max_pending": 7},
        {"rotate_bytes": 4 << 10, "max_bytes": None},
        {"group": GroupCommit(records=5, interval_ms=1000.0), "fsync": "batch"},
    ],
)
def test_every_policy_writes_a_log_that_verifies(tmp_path: Path, kw: dict[str, Any]) -> None:
    path = tmp_path / "audit.jsonl"
    log = write(path, **kw)
    files = log_files([path])
    result = verify(files)
    assert result.ok and result.records == 6 * 14 and result.head == log.head
    if "max_pending" in kw:
        assert all(json.loads(x)["records"] <= 7 for x in lines(path) if is_checkpoint(x))
    if "rotate_bytes" in kw:
        assert len(files) > 2
        for path_n in files:  # rotation cuts between batches: every file ends with a checkpoint
            assert not path_n.stat().st_size or is_checkpoint(lines(path_n)[-1])


def test_the_disk_budget_prunes_v2_files_and_the_rest_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = write(path, 40, rotate_bytes=4 << 10, max_bytes=16 << 10)
    pruned = read_pruned(path)
    assert pruned is not None and log.disk.pruned_files > 0
    result = verify(log_files([path]))
    assert result.ok and result.first_seq == pruned[0] + 1 and result.head == log.head
    with AuditLog(path, "verifier", fsync="never", rotate_bytes=4 << 10, max_bytes=16 << 10) as again:
        assert again.schema == 2 and again.next_seq == log.next_seq


def test_a_group_commit_close_writes_the_last_partial_group(tmp_path: Path) -> None:
    """As Ctrl-C unwinds into ``close()``: the records waiting for their group are written with a checkpoint."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, "verifier", fsync="batch", schema=2, group=GroupCommit(records=1000, interval_ms=60_000.0))
    log.record_batch(tx_batch(10))
    log.commit()
    assert log.pending == 10 and path.read_bytes() == b""
    log.close()
    assert log.acknowledged == 9 and verify([path]).records == 10


def test_the_group_timer_writes_a_checkpoint_on_time(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, "verifier", fsync="batch", schema=2, group=GroupCommit(records=1000, interval_ms=5.0)) as log:
        log.record_batch(tx_batch(4))
        deadline = time.monotonic() + 10
        while log.acknowledged < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert log.acknowledged == 3 and verify([path]).ok


# -- tampering -------------------------------------------------------------------------------------------------
def tampered(tmp_path: Path, change: Any) -> tuple[Path, list[bytes]]:
    path = tmp_path / "audit.jsonl"
    write(path)
    original = lines(path)
    path.write_bytes(b"".join(change(list(original))))
    return path, original


def first_problem(path: Path) -> str:
    result = verify([path])
    assert not result.ok
    return str(result.problem)


def test_an_edit_inside_a_batch_fails_its_checkpoint_and_names_the_batch(tmp_path: Path) -> None:
    def edit(ls: list[bytes]) -> list[bytes]:
        ls[3] = ls[3].replace(b'"reason":"', b'"reason":"X', 1)  # still canonical, still of the schema
        return ls

    path, _ = tampered(tmp_path, edit)
    result = verify([path])
    assert not result.ok and result.records == 0  # the first batch: nothing before it verified
    assert result.problem == "batch altered: checkpoint hash mismatch for seqs 0..13 (v2 names the batch, not the " \
        "record) (audit.jsonl:15)"  # fmt: skip


def test_an_edit_of_the_checkpoint_fails_it(tmp_path: Path) -> None:
    def edit(ls: list[bytes]) -> list[bytes]:
        i = next(i for i, x in enumerate(ls) if is_checkpoint(x) and i > 20)
        ls[i] = ls[i][:-4] + (b"0" if ls[i][-4:-3] != b"0" else b"1") + ls[i][-3:]
        return ls

    path, _ = tampered(tmp_path, edit)
    result = verify([path])
    assert "batch altered: checkpoint hash mismatch for seqs 14..27" in str(result.problem)
    assert result.records == 14  # the first batch verified


def test_a_record_deleted_inside_a_batch_is_caught_there(tmp_path: Path) -> None:
    path, _ = tampered(tmp_path, lambda ls: ls[:20] + ls[21:])
    problems = [p.what for p in verify([path]).problems]
    assert any("records missing" in p for p in problems)
    assert any("13 record lines, the checkpoint says 14" in p for p in problems)
    assert any("checkpoint hash mismatch for seqs 14..27" in p for p in problems)


def test_records_reordered_inside_a_batch_are_caught(tmp_path: Path) -> None:
    path, _ = tampered(tmp_path, lambda ls: [*ls[:2], ls[3], ls[2], *ls[4:]])
    problem = first_problem(path)
    assert problem.startswith("records missing: expected seq 2, found 3")


def test_a_batch_deleted_breaks_the_next_checkpoint(tmp_path: Path) -> None:
    path, _ = tampered(tmp_path, lambda ls: ls[:15] + ls[30:])
    problems = [p.what for p in verify([path]).problems]
    assert any(p.startswith("records missing: expected seq 14, found 28") for p in problems)
    assert any(p.startswith("chain broken: the checkpoint of seqs 28..41") for p in problems)


def test_batches_swapped_break_the_chain(tmp_path: Path) -> None:
    path, _ = tampered(tmp_path, lambda ls: ls[15:30] + ls[:15] + ls[30:])
    problems = [p.what for p in verify([path]).problems]
    assert any("chain broken" in p for p in problems)


def test_a_batch_spliced_from_another_log_breaks_the_chain(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    write(other / "audit.jsonl", clock=clock(7))  # same seqs, other stamps: another chain
    foreign = lines(other / "audit.jsonl")[15:30]
    path, _ = tampered(tmp_path, lambda ls: ls[:15] + foreign + ls[30:])
    result = verify([path])
    assert result.records == 14
    assert result.problem is not None and result.problem.startswith("chain broken: the checkpoint of seqs 14..27")


def test_a_file_cut_inside_a_batch_is_reported(tmp_path: Path) -> None:
    path, _ = tampered(tmp_path, lambda ls: ls[:20])
    result = verify([path])
    assert result.records == 14 and result.head_seq == 13
    assert result.problem == "file cut mid-batch: seqs 14..18 have no checkpoint (audit.jsonl:16)"
    with pytest.raises(AuditError, match="torn"):
        AuditLog(path, "verifier", schema=2)


def test_a_file_cut_mid_line_is_reported(tmp_path: Path) -> None:
    path, _ = tampered(tmp_path, lambda ls: [*ls[:20], ls[20][:30]])
    assert "have no checkpoint (the last line is torn)" in first_problem(path)
    with pytest.raises(AuditError, match="torn"):
        list(read_records([path]))


def test_a_cut_at_a_batch_boundary_is_caught_by_an_anchor(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = write(path)
    anchor = Anchor(log.next_seq - 1, log.head)
    assert verify([path], anchor=anchor).ok
    path.write_bytes(b"".join(lines(path)[:30]))
    assert verify([path]).ok  # a clean cut between batches: the chain alone cannot tell
    result = verify([path], anchor=anchor)
    assert result.problem is not None and result.problem.startswith(f"log cut: the anchor holds seq {anchor.seq}")


def test_a_rewritten_chain_is_caught_by_an_anchor(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = write(path, 2)
    anchor = Anchor(log.next_seq - 1, log.head)
    path.unlink()
    write(path, 2, clock=clock(3))  # a fresh chain over the same seqs
    result = verify([path], anchor=anchor)
    assert result.problem is not None and result.problem.startswith("chain rewritten")


def test_the_problems_are_the_same_in_rotated_files_given_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, rotate_bytes=4 << 10, max_bytes=None)
    files = [p for _, p in rotated_siblings(path)] + [path]
    assert verify(files).ok and verify(list(reversed(files))).ok
