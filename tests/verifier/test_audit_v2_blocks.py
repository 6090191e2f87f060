"""verifier/audit/read_v2.py ``batches`` against splitting the whole file at its checkpoint lines.

``batches`` reads a v2 file in blocks and joins only the batch that spans two blocks (the tail of one block and
the head of the next up to a checkpoint line).  The reference reads the file's lines at once and closes a batch at
every whole line that starts as a checkpoint does; what follows the last one (a torn batch, a torn checkpoint) is a
batch without a checkpoint.  Random files of real record and checkpoint lines, junk, carriage returns, lines that
start like a checkpoint but are cut, empty lines and no final newline, read with blocks of every size (one byte,
a few, a line's, a batch's), must give the same batches: lines, counts, line numbers and checkpoint lines.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from tests.verifier.test_audit_v2 import write
from verifier.audit import read_v2
from verifier.audit.log import CHECKPOINT_START

Seen = list[tuple[int, bytes, int, bytes | None]]


def reference(data: bytes) -> Seen:
    out: Seen = []
    held: list[bytes] = []
    line_number = 1
    for line in io.BytesIO(data).readlines():
        if line.startswith(CHECKPOINT_START) and line.endswith(b"\n"):
            out.append((line_number, b"".join(held), len(held), line))
            line_number += len(held) + 1
            held = []
        else:
            held.append(line)
    if held:
        out.append((line_number, b"".join(held), len(held), None))
    return out


def read(path: Path) -> Seen:
    return [(b.first_line, bytes(b.view), b.count, b.checkpoint) for b in read_v2.batches([path])]


@pytest.fixture(scope="module")
def v2_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    path = tmp_path_factory.mktemp("v2") / "audit.jsonl"
    write(path, doorbells=20)
    return path.read_bytes().splitlines(keepends=True)


def random_file(rng: random.Random, lines: list[bytes]) -> bytes:
    pieces = []
    start = rng.randrange(len(lines))
    for line in lines[start : start + rng.randrange(0, 80)]:
        roll = rng.random()
        if roll < 0.05:
            pieces.append(bytes(rng.choice(b'ab\r{}" ') for _ in range(rng.randrange(200))) + b"\n")
        elif roll < 0.08:
            pieces.append(CHECKPOINT_START[: rng.randrange(len(CHECKPOINT_START))] + b"\n")
        elif roll < 0.1:
            pieces.append(b"\n")
        pieces.append(line)
    data = b"".join(pieces)
    if data and rng.random() < 0.3:
        data = data[: rng.randrange(len(data))]  # cut anywhere: inside a record or a checkpoint line
    return data


def test_batches_are_the_files_batches(v2_lines: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    path = tmp_path / "audit.jsonl"
    average = len(b"".join(v2_lines)) // len(v2_lines)
    for _ in range(150):
        data = random_file(rng, v2_lines)
        path.write_bytes(data)
        want = reference(data)
        tiny = 1 if len(data) < 4096 else 61  # a byte at a time: every cut, in the small files
        for size in (tiny, rng.randrange(1, 2 * average), rng.randrange(1, 300 * average), 1 << 22):
            monkeypatch.setattr(read_v2, "BLOCK_BYTES", size)
            assert read(path) == want


def test_a_whole_log_reads_the_same_in_any_block_size(
    v2_lines: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    data = b"".join(v2_lines)
    path.write_bytes(data)
    want = reference(data)
    assert len(want) > 3 and all(checkpoint is not None for *_, checkpoint in want)
    for size in (100, 4096, 65536, len(data) // 3, len(data) - 1, len(data), len(data) + 1):
        monkeypatch.setattr(read_v2, "BLOCK_BYTES", size)
        assert read(path) == want
