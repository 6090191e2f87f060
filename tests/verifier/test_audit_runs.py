"""verifier/audit/runs.py against iterating the file: the same lines, in the same runs, whatever the bytes.

``verify`` and ``read_records`` read v1 files as runs of ``CHUNK_LINES`` lines cut from large blocks; the
reference is ``itertools.islice`` over the open file, which is how they read them before.  Random files (lines
of every length, carriage returns, empty lines, no final newline, lines longer than a block) are cut with
small blocks and small runs so that every case of a run spanning blocks happens, with the compiled line finder
and without it.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from verifier.audit import check, runs


def reference(path: Path, lines: int) -> list[list[bytes]]:
    with path.open("rb") as f:
        return list(iter(lambda: list(itertools.islice(f, lines)), []))


def random_file(rng: random.Random) -> bytes:
    pieces = []
    for _ in range(rng.randrange(0, 60)):
        length = rng.choice([0, 1, 5, 30, 200, 3000])
        pieces.append(bytes(rng.choice(b'ab\r{}" ') for _ in range(rng.randrange(length + 1))) + b"\n")
    data = b"".join(pieces)
    return data + (b"torn" if rng.random() < 0.3 else b"")


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_runs_are_the_files_lines(compiled: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not compiled:
        monkeypatch.setattr(check, "line_end", lambda *_: None)
    rng = random.Random(7)
    path = tmp_path / "audit.jsonl"
    for _ in range(200):
        path.write_bytes(random_file(rng))
        lines = rng.choice([1, 2, 3, 7, 50])
        monkeypatch.setattr(runs, "BLOCK_BYTES", rng.choice([1, 7, 64, 1000, 1 << 20]))
        got = list(runs.runs(path, lines))
        want = reference(path, lines)
        assert [list(run) for run in got] == want
        assert [len(run) for run in got] == [len(each) for each in want]
        for run, each in zip(got, want, strict=True):
            assert bytes(run.raw) == b"".join(each)
            assert run[-1] == each[-1] and run.last() == each[-1]


def test_an_empty_file_has_no_runs(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert list(runs.runs(path, 5)) == []


def test_a_line_longer_than_many_blocks_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "BLOCK_BYTES", 1000)
    path = tmp_path / "long.jsonl"
    path.write_bytes(b"x" * 100_000 + b"\nshort\n")
    assert [list(run) for run in runs.runs(path, 2)] == [[b"x" * 100_000 + b"\n", b"short\n"]]
