"""The web view's line index (auditor/web/index.py) on logs the real writer rotated, read a little at a time."""

from __future__ import annotations

from pathlib import Path

from auditor.web.index import LogIndex
from tests.auditor.web.logs import record, ticking
from verifier.audit.log import AuditLog
from verifier.audit.read import log_files, read_records


def rotated_log(path: Path, n: int) -> list[Path]:
    with AuditLog(path, "verifier", clock=ticking(), rotate_bytes=8192) as log:
        for i in range(n):
            log.record(record(i))
            log.commit()
    files = sorted(path.parent.glob(path.name + "*"))
    assert len(files) >= 3
    return files


def test_reading_in_small_steps_gives_every_record_once_and_nothing_torn(tmp_path: Path) -> None:
    """A file read past the per-call budget is not 'torn' because it is not finished yet."""
    path = tmp_path / "audit.jsonl"
    rotated_log(path, 200)
    index = LogIndex([path])
    while index.refresh(budget_bytes=1000):  # a few lines per file per call
        pass
    progress = index.progress()
    assert (progress.rows, progress.bad) == (200, 0)
    seqs = sorted(index.read(row).record["seq"] for row in range(200))  # type: ignore[index]
    assert seqs == list(range(200))
    assert [index.read(row).record for row in range(200)] == list(read_records(log_files([path])))
    index.close()


def test_an_older_file_that_ends_mid_line_is_one_torn_row(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    files = rotated_log(path, 200)
    oldest = max(files, key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    data = oldest.read_bytes()
    oldest.write_bytes(data[:-40])  # its last line cut: it will never be finished (a newer file exists)
    index = LogIndex([path])
    while index.refresh():
        pass
    progress = index.progress()
    assert (progress.rows, progress.bad) == (200, 1)
    torn = [index.read(row) for row in range(200) if index.read(row).status == "bad"]
    assert [(t.file, t.problem) for t in torn] == [(oldest.name, "file cut mid-record: the last line is torn")]
    index.close()
