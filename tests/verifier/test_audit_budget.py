"""The audit log under hostile edits and hard limits: every problem named truly, one writer, a disk budget, anchors.

Real files in ``tmp_path``; the records come from tests/verifier/test_audit.py's
small deterministic stream.  Re-hashing is done here with ``hashlib`` and
``json``, as an attacker without the writer's code would do it.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from tests.verifier.test_audit import add, clock, lines_of, write
from verifier.audit.log import (
    GENESIS,
    AuditError,
    AuditLog,
    DiskUse,
    clock_of,
    format_wall,
    pruned_path,
    rotated_siblings,
)
from verifier.audit.read import PROBLEM_LIMIT, Anchor, read_records, verify
from verifier.audit.seal import read_anchor, seal


def rehash(lines: list[bytes], start: int) -> list[bytes]:
    """Recompute ``prev`` and ``hash`` of every line from ``start`` on: a rewritten suffix, as an attacker writes it."""
    out = lines[:start]
    prev = json.loads(lines[start - 1])["hash"] if start else GENESIS
    for line in lines[start:]:
        record = json.loads(line)
        record["prev"] = prev
        body = {k: v for k, v in record.items() if k != "hash"}
        canonical = json.dumps(body, separators=(",", ":")).encode()
        record["hash"] = prev = hashlib.sha256(prev.encode() + canonical).hexdigest()
        out.append(json.dumps(record, separators=(",", ":")).encode() + b"\n")
    return out


# -- every problem, named truly -----------------------------------------------------------------------
def test_swapped_lines_are_out_of_order_not_missing(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 10)
    lines = lines_of(path)
    lines[3], lines[4] = lines[4], lines[3]
    path.write_bytes(b"".join(lines))
    result = verify([path])
    assert [(p.seq, p.what, p.where) for p in result.problems] == [
        (3, "records out of order: seq 3 comes after seq 4", "audit.jsonl:5")
    ]


def test_every_problem_of_a_log_is_reported_in_line_order(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 30)
    lines = lines_of(path)
    lines[2], lines[3] = lines[3], lines[2]  # out of order
    lines[10] = lines[10].replace(b'"owner":"kernel"', b'"owner":"kernal"')  # altered
    lines[16] = lines[15]  # seq 15 again, seq 16 gone
    del lines[21:23]  # seqs 21 and 22 gone
    path.write_bytes(b"".join(lines) + lines[-1][:40])  # and a torn last line
    result = verify([path])
    assert not result.ok and result.records == 2 and result.first_bad_seq == 2
    got = [(p.seq, p.what.split(":")[0], p.where) for p in result.problems]
    assert got == [
        (2, "records out of order", "audit.jsonl:4"),
        (10, "record altered", "audit.jsonl:11"),
        (15, "record repeated", "audit.jsonl:17"),
        (16, "records missing", "audit.jsonl:18"),
        (21, "records missing", "audit.jsonl:22"),
        (30, "file cut mid-record", "audit.jsonl:29"),
    ]
    assert "seqs 21..22 missing" in result.problems[4].what
    assert result.problem == result.problems[0].text


def test_a_damaged_line_is_one_problem_and_the_chain_resumes_after_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 5000)
    lines = lines_of(path)
    for bad in (7, 3000):
        lines[bad] = lines[bad].replace(b'"seq":', b'"seq" :', 1)
    path.write_bytes(b"".join(lines))
    result = verify([path])
    assert [(p.seq, p.what) for p in result.problems] == [
        (7, "record damaged: not canonical JSON"),
        (3000, "record damaged: not canonical JSON"),
    ]
    assert result.lines == 5000 and result.head == json.loads(lines[-1])["hash"]


# -- one writer --------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = AuditLog(path, "verifier", clock=clock())
    add(first, 0)
    with pytest.raises(AuditError, match=r"audit.jsonl: another writer has this audit log open.*one writer per log"):
        AuditLog(path, "verifier")
    first.close()
    with AuditLog(path, "verifier", clock=clock()) as again:
        assert again.next_seq == 1
    assert verify([path]).ok


# -- the disk budget ------------------------------------------------------------------------------------
def test_the_budget_prunes_oldest_files_and_the_kept_chain_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = write(path, 3000, fsync="never", rotate_bytes=64 << 10, max_bytes=256 << 10)
    disk = log.disk
    files = [p for _, p in rotated_siblings(path)] + [path]
    on_disk = sum(p.stat().st_size for p in files)
    assert disk.pruned_files > 0 and disk.kept_files == len(files) and disk.kept_bytes == on_disk
    assert on_disk <= (256 << 10) + (64 << 10)  # the budget, plus at most one rotation's overshoot
    assert disk.written == on_disk + disk.pruned_bytes
    assert f"{disk.pruned_files} pruned" in disk.line()
    result = verify(files)
    first = next(read_records(files))
    assert result.ok, result.problems
    assert result.first_seq == first["seq"] > 0 and result.first_seq + result.records == 3000
    marker = json.loads(pruned_path(path).read_bytes())
    assert (marker["seq"], marker["hash"]) == (first["seq"] - 1, first["prev"])
    with AuditLog(path, "verifier", clock=clock(), max_bytes=256 << 10) as again:  # reopening continues the chain
        add(again, 3000)
    assert verify([p for _, p in rotated_siblings(path)] + [path]).ok


def test_a_kept_file_removed_by_hand_is_missing_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 3000, fsync="never", rotate_bytes=64 << 10, max_bytes=256 << 10)
    rotated = [p for _, p in rotated_siblings(path)]
    oldest_kept = json.loads(rotated[0].read_bytes().splitlines()[0])["seq"]
    rotated[0].unlink()
    result = verify([*rotated[1:], path])
    assert not result.ok and result.first_bad_seq == oldest_kept
    assert "records missing after the pruned head" in (result.problem or "")


def test_without_a_budget_nothing_is_deleted(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = write(path, 2000, fsync="never", rotate_bytes=64 << 10, max_bytes=None)
    assert log.disk.pruned_files == 0 and not pruned_path(path).exists()
    assert verify([p for _, p in rotated_siblings(path)] + [path]).records == 2000


def test_the_disk_line_reads_like_df() -> None:
    use = DiskUse(written=98_500_000, kept_files=2, kept_bytes=98_500_000, pruned_files=0, pruned_bytes=0)
    assert use.line() == "98.5 MB written, 2 files kept (98.5 MB), 0 pruned"
    use = DiskUse(written=6_357, kept_files=1, kept_bytes=512, pruned_files=3, pruned_bytes=2_500_000_000)
    assert use.line() == "6.4 kB written, 1 file kept (512 B), 3 pruned (2.5 GB)"


# -- anchors ----------------------------------------------------------------------------------------------
@pytest.fixture
def sealed(tmp_path: Path) -> tuple[Path, Path]:
    path = tmp_path / "audit.jsonl"
    write(path, 20)
    result = verify([path])
    anchor = tmp_path / "audit.anchor"
    anchor.write_bytes(seal(19, result.head, 20, path.stat().st_size, 0, b"k3y"))
    return path, anchor


def test_an_anchor_catches_a_cut_at_a_line_boundary(sealed: tuple[Path, Path]) -> None:
    path, anchor_file = sealed
    anchor, problems, notes = read_anchor(anchor_file, b"k3y")
    assert (problems, notes) == ([], []) and verify([path], anchor=anchor).ok
    path.write_bytes(b"".join(lines_of(path)[:17]))
    assert verify([path]).ok  # the chain alone cannot see it
    result = verify([path], anchor=anchor)
    assert not result.ok and result.problem == "log cut: the anchor holds seq 19, the log ends at seq 16 (anchor)"


def test_an_anchor_catches_a_rehashed_suffix(sealed: tuple[Path, Path]) -> None:
    path, anchor_file = sealed
    lines = lines_of(path)
    lines[12] = lines[12].replace(b'"owner":"kernel"', b'"owner":"tenant1"')
    path.write_bytes(b"".join(rehash(lines, 12)))
    assert verify([path]).ok  # re-hashed: the chain alone cannot see it
    anchor, _, _ = read_anchor(anchor_file, b"k3y")
    result = verify([path], anchor=anchor)
    assert [p.what for p in result.problems] == ["chain rewritten: seq 19 does not have the anchored hash"]


def test_an_anchor_under_a_key_cannot_be_forged_or_unsealed(sealed: tuple[Path, Path]) -> None:
    _, anchor_file = sealed
    assert read_anchor(anchor_file, None)[2] == [
        "audit.anchor is sealed with a key; no key given, so its MAC was not checked"
    ]
    assert read_anchor(anchor_file, b"other")[1] == ["anchor forged: the MAC of audit.anchor does not match the key"]
    data = json.loads(anchor_file.read_bytes())
    del data["mac"]
    anchor_file.write_text(json.dumps(data))
    assert read_anchor(anchor_file, b"k3y")[1] == ["anchor not sealed: audit.anchor has no MAC, but a key was given"]
    anchor_file.write_text("{}")
    with pytest.raises(AuditError, match=r"audit\.anchor: not an audit anchor"):
        read_anchor(anchor_file, None)


def test_an_anchor_of_a_pruned_record_is_a_note_not_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 3000, fsync="never", rotate_bytes=64 << 10, max_bytes=256 << 10)
    files = [p for _, p in rotated_siblings(path)] + [path]
    result = verify(files, anchor=Anchor(3, "0" * 64))
    assert result.ok and result.notes == ("the anchor's record (seq 3) was pruned by the disk budget: not checked",)


# -- which clock ------------------------------------------------------------------------------------------
def test_clock_of_tells_the_virtual_clock_from_a_real_one() -> None:
    epoch = 1_700_000_000 * 1_000_000_000
    assert clock_of(format_wall(epoch + 42_000), 42_000) == "virtual"
    assert clock_of(format_wall(epoch + 42_000), 41_000) == "wall"
    assert clock_of("2024-05-01T12:00:00.000000000Z", 5_000_000) == "wall"


def test_a_damaged_prune_marker_refuses_to_append_and_to_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 3000, fsync="never", rotate_bytes=64 << 10, max_bytes=256 << 10)
    pruned_path(path).write_text('{"seq": "x"}\n')
    with pytest.raises(AuditError, match=r"audit\.jsonl\.pruned: not a prune marker"):
        AuditLog(path, "verifier")
    with pytest.raises(AuditError, match=r"audit\.jsonl\.pruned: not a prune marker"):
        verify([path])


def test_an_anchor_at_the_pruned_head_is_checked_against_the_marker(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 3000, fsync="never", rotate_bytes=64 << 10, max_bytes=256 << 10)
    files = [p for _, p in rotated_siblings(path)] + [path]
    marker = json.loads(pruned_path(path).read_bytes())
    assert verify(files, anchor=Anchor(marker["seq"], marker["hash"])).ok
    result = verify(files, anchor=Anchor(marker["seq"], "f" * 64))
    assert [p.what for p in result.problems] == [
        f"chain rewritten: seq {marker['seq']} does not have the anchored hash"
    ]


def test_the_seal_of_an_empty_log_holds_for_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    assert verify([path], anchor=Anchor(-1, GENESIS)).ok


def test_a_shuffled_log_gives_bounded_problems(tmp_path: Path) -> None:
    """Hostile input: every line out of place.  The walk keeps at most PROBLEM_LIMIT texts and counts the rest."""
    path = tmp_path / "audit.jsonl"
    write(path, 6000, fsync="never")
    lines = lines_of(path)
    order = list(range(len(lines)))
    random.Random(11).shuffle(order)
    path.write_bytes(b"".join(lines[i] for i in order))
    result = verify([path])
    assert not result.ok and len(result.problems) == PROBLEM_LIMIT and result.more_problems > 0
    assert result.lines == 6000
    names = {p.what.split(":")[0] for p in result.problems}
    assert names <= {"records out of order", "records missing", "log starts at seq 1", "chain broken"}, names
