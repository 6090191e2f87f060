"""``read_records`` with ``verify``'s fast path (chunks decoded by msgspec) against its line-by-line reference.

``audit summary`` of a million records took 3.5 minutes when every line went
through ``json.loads``, a canonical re-encode and ``schema_problem``; it now
reads intact chunks with ``fast_chunk``.  These hold the two to the same
output: the same records (as ``json.loads`` gives them) or the same error
text, and the same ``audit summary`` (JSON and table), on the tampered logs
of test_audit_verify_fast.py, the hostile logs of tests/hostile/audit, a
rotated log, two logs read together and a campaign's log.  The reference is
``fast_chunk`` answering None, as there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import verifier.audit.read as read
from sandbox import cli
from tests.verifier.test_audit_verify_fast import HOSTILE, TAMPERINGS
from tests.verifier.test_audit_verify_pass import big_log
from verifier.audit.log import AuditError
from verifier.audit.read import read_records


def records(files: list[Path]) -> tuple[list[dict[str, Any]], str | None]:
    """What ``read_records`` yields, and the error it ends with (None: read to the end)."""
    seen: list[dict[str, Any]] = []
    try:
        for record in read_records(files):
            seen.append(record)
    except AuditError as err:  # AuditFormatError too
        return seen, f"{type(err).__name__}: {err}"
    return seen, None


def reference(files: list[Path], monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict[str, Any]], str | None]:
    with monkeypatch.context() as m:
        m.setattr(read, "fast_chunk", lambda *_: None)
        return records(files)


def summaries(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["audit", "summary", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def both_summaries(files: list[Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``audit summary`` (JSON and table) is the same on the fast path and on the reference."""
    for extra in (["--json"], []):
        argv = [*map(str, files), *extra]
        fast = summaries(argv, capsys)
        with monkeypatch.context() as m:
            m.setattr(read, "fast_chunk", lambda *_: None)
            ref = summaries(argv, capsys)
        assert fast == ref


@pytest.fixture(scope="module")
def good_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    path = tmp_path_factory.mktemp("good") / "audit.jsonl"
    big_log(path)
    return path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize("name", TAMPERINGS)
def test_the_same_records_or_error_on_every_tampering(
    name: str, good_lines: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(TAMPERINGS[name](good_lines)))
    fast = records([path])
    assert fast == reference([path], monkeypatch)
    if name == "intact":
        assert fast[1] is None and len(fast[0]) == len(good_lines) > 2 * read.CHUNK_LINES


@pytest.mark.parametrize("name", ["intact", "a value altered", "lines swapped", "a line deleted", "torn end"])
def test_the_same_summary_on_tampered_logs(
    name: str,
    good_lines: list[bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(TAMPERINGS[name](good_lines)))
    both_summaries([path], monkeypatch, capsys)


@pytest.mark.parametrize("path", sorted(HOSTILE.glob("*.jsonl")), ids=lambda p: p.name)
def test_hostile_logs_get_the_same_records_and_summary(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert records([path]) == reference([path], monkeypatch)
    both_summaries([path], monkeypatch, capsys)


def test_rotated_and_several_logs_get_the_same_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rotated = big_log(tmp_path / "a" / "audit.jsonl", rotate_bytes=1 << 20)
    other = big_log(tmp_path / "b" / "audit.jsonl")
    assert len(rotated) > 2
    assert records(rotated) == reference(rotated, monkeypatch)
    both_summaries([*reversed(rotated), *other], monkeypatch, capsys)


def test_a_campaign_log_gets_the_same_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fuzz", "--protection", "verifier", "--iterations", "30", "--batch", "255", "--seed", "5"]
    argv += ["--out", str(tmp_path), "--audit-max-bytes", "0"]  # the real clock: walls of many seconds
    assert cli.main(argv) == 0
    capsys.readouterr()
    log = tmp_path / "audit.jsonl"
    fast = records([log])
    assert fast[1] is None and len(fast[0]) > read.CHUNK_LINES
    assert fast == reference([log], monkeypatch)
    both_summaries([log], monkeypatch, capsys)
