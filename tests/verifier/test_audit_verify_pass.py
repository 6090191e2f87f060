"""``verify`` in one pass: the records it hands on, and its fast path's verdict equal to the line-by-line walk.

The fuzzer's end-of-campaign check (fuzz/oracle/judge.py ``AuditWatch.finish``)
reads the log once through ``verify(..., on_record=...)``; ``verify`` checks
``CHUNK_LINES`` lines at a time and walks a chunk line by line only when
something in it is wrong.  Both must give what the strict walk gives.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.verifier.test_audit import clock
from tests.verifier.test_lazy_records import fault_batch, tx_batch
from verifier.audit.log import AuditLog, rotated_siblings
from verifier.audit.read import CHUNK_LINES, read_records, verify
from verifier.audit.rejections import record_rows


def big_log(path: Path, **kw: Any) -> list[Path]:
    """A log of a few chunks: TX rejections and IOMMU faults, one commit per batch."""
    with AuditLog(path, "verifier", fsync="never", clock=clock(), **kw) as log:
        for i in range(4 * CHUNK_LINES // 60):
            record_rows(log, tx_batch(90, seed=i) if i % 3 else fault_batch(10))
            log.commit()
    return [*(p for _, p in rotated_siblings(path)), path]


def test_on_record_hands_on_every_record_once_in_chain_order(tmp_path: Path) -> None:
    files = big_log(tmp_path / "audit.jsonl", rotate_bytes=2 << 20)
    assert len(files) > 2
    seen: list[dict[str, Any]] = []
    result = verify(reversed(files), on_record=seen.append)
    assert result.ok and result.records == len(seen) > 2 * CHUNK_LINES
    assert seen == list(read_records(files))


def rewrite(path: Path, index: int, edit: Any) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[index] = edit(lines[index])
    path.write_bytes(b"".join(lines))


def test_damage_in_a_later_chunk_is_named_and_stops_the_records_there(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    big_log(path)
    bad = CHUNK_LINES + 17
    rewrite(path, bad, lambda line: line.replace(b'"seq":', b'"seq" :', 1))
    seen: list[dict[str, Any]] = []
    result = verify([path], on_record=seen.append)
    assert not result.ok and result.first_bad_seq == bad and "not canonical" in (result.problem or "")
    assert f"audit.jsonl:{bad + 1}" in (result.problem or "")
    assert [r["seq"] for r in seen] == list(range(bad))


def test_a_re_hashed_line_that_is_not_canonical_is_still_refused(tmp_path: Path) -> None:
    """Whitespace inside a line, its hash recomputed: the chain holds, only the canonical check sees it."""
    path = tmp_path / "audit.jsonl"
    big_log(path)
    lines = path.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[5])
    loose = json.dumps({k: v for k, v in record.items() if k != "hash"}, separators=(", ", ":")).encode()
    digest = hashlib.sha256(record["prev"].encode() + loose).hexdigest()
    if digest == record["hash"]:  # pragma: no cover - the spaces change the bytes
        raise AssertionError("the edit changed nothing")
    lines[5] = loose[:-1] + b', "hash":"' + digest.encode() + b'"}\n'
    path.write_bytes(b"".join(lines))
    result = verify([path])
    assert not result.ok and result.first_bad_seq == 5 and "not canonical" in (result.problem or "")
