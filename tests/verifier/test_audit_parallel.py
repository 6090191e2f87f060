"""The v1 chunk checked on several threads (check.py ``lines_and_chain``) against the serial calls it replaces.

``lines_and_chain`` cuts a chunk at line ends into parts, checks each part's lines and walks each part's chain on a
thread of its own, each part after the first chained from the ``hash`` the line before it states, and joins them at
the boundaries.  Its answer must be exactly ``lines_ok`` and then ``chain`` over the whole chunk: whatever bytes are
changed, and especially next to a part's boundary (the stated hash a part starts from, the first line's ``prev``, a
newline moved across the cut).  ``verify`` with threads must give the same ``VerifyResult`` as without, on every
tampering of tests/verifier/test_audit_verify_fast.py and every hostile log.  And ``chk_chain`` hashes the same
through libcrypto's SHA256_* functions as through its EVP ones.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

import verifier.audit.read as read
from tests.needs import missing
from tests.verifier.compiled import compiled_accelerator
from tests.verifier.test_audit_chain import PROBES, first_unlinked, outcome, prev_of
from tests.verifier.test_audit_check import v2_tamperings
from tests.verifier.test_audit_v2 import write
from tests.verifier.test_audit_verify_fast import HOSTILE, TAMPERINGS
from tests.verifier.test_audit_verify_pass import big_log
from verifier.audit import check, libcrypto, read_v2
from verifier.audit.log import CHECKPOINT_START, GENESIS, SCHEMA_VERSION, chain_hash
from verifier.audit.read import VerifyResult


@pytest.fixture(autouse=True)
def compiled() -> None:
    compiled_accelerator(check.enabled(), check.status())
    if libcrypto.digest() is None:
        missing(f"{libcrypto.LIBRARY} cannot be opened: audit verify hashes in Python")


@pytest.fixture(scope="module")
def good_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    path = tmp_path_factory.mktemp("good") / "audit.jsonl"
    big_log(path)
    return path.read_bytes().splitlines(keepends=True)


def in_parts(monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    """Cut every chunk of more than a few bytes into ``threads`` parts, whatever this machine's CPUs."""
    monkeypatch.setattr(check, "threads", lambda: threads)
    monkeypatch.setattr(check, "MIN_PART_BYTES", 1)


def serial(lines: list[bytes], expected: int, prev: str) -> tuple[bool, int | None]:
    """What ``lines_and_chain`` replaces: the line check over the whole chunk, then its chain walk."""
    raw = b"".join(lines)
    if not check.lines_ok(raw, len(lines), expected, SCHEMA_VERSION, read._wall_ok):
        return False, None
    return True, check.chain(raw, len(lines), prev)


def together(lines: list[bytes], expected: int, prev: str) -> tuple[bool, int | None]:
    return check.lines_and_chain(b"".join(lines), len(lines), expected, prev, read._wall_ok)


def relink(lines: list[bytes], index: int) -> None:
    """Line ``index`` given a fresh ``hash`` (from its stated ``prev``), as a forger who re-hashes one line does."""
    line = lines[index]
    lines[index] = line[:-67] + chain_hash(line[-141:-77].decode(), line[:-76] + b"}").encode() + b'"}\n'


#: Edits at a part's boundary ``at`` (the first line of a part; ``at - 1`` the last of the part before).
BOUNDARY_EDITS: dict[str, Callable[[list[bytes], int, random.Random], None]] = {
    # a byte of the last line before the cut: its hash no longer holds
    "byte before": lambda lines, at, rng: edit_byte(lines, at - 1, rng),
    # a byte of the first line after the cut: its prev, its body or its hash
    "byte after": lambda lines, at, rng: edit_byte(lines, at, rng),
    # the stated hash before the cut and the prev after it changed alike: the parts join on the stated values, but
    # the line before does not hash to what it states
    "hash and prev alike": lambda lines, at, rng: same_link(lines, at, "f" * 64),
    # the line before edited and re-hashed: its hash holds, the next line's prev does not name it
    "re-hashed before": lambda lines, at, rng: rehashed(lines, at - 1),
    # the line after's prev repointed at GENESIS and re-hashed: it links to nothing before it
    "prev after repointed": lambda lines, at, rng: repoint(lines, at),
    # the two lines across the cut swapped
    "swapped across": lambda lines, at, rng: lines.__setitem__(slice(at - 1, at + 1), [lines[at], lines[at - 1]]),
    # the newline between them moved into the line after: the cut falls elsewhere
    "newline moved": lambda lines, at, rng: lines.__setitem__(
        slice(at - 1, at + 1), [lines[at - 1][:-1] + lines[at][:1], lines[at][1:-1] + b"\n\n"]
    ),
    # the last line before the cut deleted
    "deleted before": lambda lines, at, rng: lines.__delitem__(at - 1),
}


def edit_byte(lines: list[bytes], index: int, rng: random.Random) -> None:
    line = bytearray(lines[index])
    line[rng.randrange(len(line) - 1)] = rng.choice(PROBES)
    lines[index] = bytes(line)


def same_link(lines: list[bytes], at: int, link: str) -> None:
    lines[at - 1] = lines[at - 1][:-67] + link.encode() + b'"}\n'
    lines[at] = lines[at][:-150] + b',"prev":"' + link.encode() + lines[at][-77:]


def rehashed(lines: list[bytes], index: int) -> None:
    lines[index] = lines[index].replace(b'"mallory"', b'"mallorx"', 1)
    relink(lines, index)


def repoint(lines: list[bytes], index: int) -> None:
    lines[index] = lines[index][:-141] + GENESIS.encode() + lines[index][-77:]
    relink(lines, index)


def boundaries(n: int, threads: int) -> list[int]:
    """The first line of each part but the first, as ``check._parts`` cuts ``n`` lines into ``threads``."""
    return [n * k // threads for k in range(1, threads)]


@pytest.mark.parametrize("threads", [2, 3, 4, 7])
def test_parts_answer_as_the_serial_calls(
    threads: int, good_lines: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    in_parts(monkeypatch, threads)
    rng = random.Random(threads)
    for _ in range(60):
        start = rng.randrange(len(good_lines) - 40)
        lines = good_lines[start : start + rng.randrange(threads, 400)]
        prev = prev_of(good_lines, start)
        assert together(lines, start, prev) == serial(lines, start, prev) == (True, len(lines))
        cuts = [at for at in boundaries(len(lines), threads) if at > 0]
        at = rng.choice(cuts)
        name = rng.choice(sorted(BOUNDARY_EDITS))
        BOUNDARY_EDITS[name](lines, at, rng)
        want = serial(lines, start, prev)
        assert together(lines, start, prev) == want, name
        if want[0]:  # lines that pass: the count is the serial walk's, the first line that does not link
            assert want[1] == first_unlinked(lines, prev)


@pytest.mark.parametrize("name", sorted(BOUNDARY_EDITS))
def test_every_boundary_edit_is_found_at_the_same_line(
    name: str, good_lines: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    in_parts(monkeypatch, 4)
    rng = random.Random(name)
    lines = good_lines[:800]
    for at in boundaries(len(lines), 4):
        edited = list(lines)
        BOUNDARY_EDITS[name](edited, at, rng)
        assert together(edited, 0, GENESIS) == serial(edited, 0, GENESIS)


def test_random_edits_anywhere_answer_as_the_serial_calls(
    good_lines: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    in_parts(monkeypatch, 3)
    rng = random.Random(31)
    for _ in range(150):
        start = rng.randrange(len(good_lines) - 100)
        lines = good_lines[start : start + rng.randrange(3, 300)]
        for _ in range(rng.randrange(1, 3)):
            edit_byte(lines, rng.randrange(len(lines)), rng)
        prev = prev_of(good_lines, start)
        assert together(lines, start, prev) == serial(lines, start, prev)


def test_a_wrong_first_prev_or_seq_is_the_serial_answer(
    good_lines: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    in_parts(monkeypatch, 4)
    lines = good_lines[:500]
    for expected, prev in [(0, "f" * 64), (1, GENESIS), (0, "0" * 63), (2**63, GENESIS), (-1, GENESIS)]:
        assert together(lines, expected, prev) == serial(lines, expected, prev)
    raw = b"".join(lines)
    for n in (499, 501):  # fewer or more lines said than there are
        assert check.lines_and_chain(raw, n, 0, GENESIS, read._wall_ok) == (False, None)


def test_without_a_compiled_chain_the_parts_say_so(good_lines: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """``chain`` answering None (no libcrypto) in a part: the caller hashes the chunk in Python, as serially."""
    in_parts(monkeypatch, 3)
    monkeypatch.setattr(check, "chain", lambda *_: None)
    assert together(good_lines[:300], 0, GENESIS) == (True, None)


def v1_outcome(path: Path, monkeypatch: pytest.MonkeyPatch, threads: int, group: int) -> VerifyResult | str:
    """``verify`` on ``threads`` threads: chunks checked ahead ``group`` at a time (one: each chunk cut in parts)."""
    with monkeypatch.context() as m:
        in_parts(m, threads)
        m.setattr(read, "AHEAD_CHUNKS", group)
        return outcome([path])


@pytest.mark.parametrize("name", TAMPERINGS)
def test_verify_on_threads_gives_the_serial_result(
    name: str, good_lines: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(TAMPERINGS[name](good_lines)))
    alone = v1_outcome(path, monkeypatch, 1, read.AHEAD_CHUNKS)
    for threads, group in [(4, 1), (2, 2), (3, 8)]:
        assert v1_outcome(path, monkeypatch, threads, group) == alone


@pytest.mark.parametrize("path", sorted(HOSTILE.glob("*.jsonl")), ids=lambda p: p.name)
def test_hostile_logs_verify_the_same_on_threads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alone = v1_outcome(path, monkeypatch, 1, read.AHEAD_CHUNKS)
    assert v1_outcome(path, monkeypatch, 3, 1) == v1_outcome(path, monkeypatch, 2, 2) == alone


def test_random_v1_edits_near_chunk_group_and_thread_boundaries(
    good_lines: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edits next to where a chunk, a group of chunks checked ahead, or a thread's share ends (every
    ``CHUNK_LINES`` lines): ``verify`` on threads says what it says alone, with the same problem first."""
    path = tmp_path / "audit.jsonl"
    rng = random.Random(23)
    edges = [k * read.CHUNK_LINES for k in range(1, len(good_lines) // read.CHUNK_LINES + 1)]
    for _ in range(12):
        lines = list(good_lines)
        for _ in range(rng.randrange(1, 3)):
            at = min(rng.choice(edges) + rng.choice([-2, -1, 0, 1]), len(lines) - 2)
            name = rng.choice(sorted(BOUNDARY_EDITS))
            BOUNDARY_EDITS[name](lines, max(at, 1), rng)
        path.write_bytes(b"".join(lines))
        alone = v1_outcome(path, monkeypatch, 1, read.AHEAD_CHUNKS)
        assert isinstance(alone, VerifyResult) and not alone.ok
        threads, group = rng.choice([(2, 2), (3, 3), (2, 8), (4, 1)])
        assert v1_outcome(path, monkeypatch, threads, group) == alone


def test_chunks_are_checked_ahead_only_from_where_the_walk_stands(
    good_lines: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line deleted in the first chunk: the second chunk, asked ahead from seq CHUNK_LINES, starts at seq
    CHUNK_LINES + 1 once the first is walked, so its answer is not taken (asked again); the next group is asked from
    where the walk then stands, and taken."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(good_lines[:100] + good_lines[101:]))
    taken: list[int] = []
    answer = check.Ahead.answer

    def spy(self: check.Ahead, raw: bytes | memoryview, wall_ok: Callable[[str], bool]) -> tuple[bool, int | None]:
        taken.append(self.expected)
        return answer(self, raw, wall_ok)

    monkeypatch.setattr(check.Ahead, "answer", spy)
    alone = v1_outcome(path, monkeypatch, 1, read.AHEAD_CHUNKS)
    assert not taken
    assert v1_outcome(path, monkeypatch, 2, 2) == alone
    assert taken[0] == 0 and read.CHUNK_LINES not in taken
    assert 2 * read.CHUNK_LINES + 1 in taken  # the second group: from the walk as it resynchronised


def test_a_small_chunk_stays_on_the_calling_thread(good_lines: list[bytes]) -> None:
    assert 1 <= check.threads() <= (os.cpu_count() or 1)
    raw = b"".join(good_lines[:100])
    assert len(raw) < 2 * check.MIN_PART_BYTES
    assert check._parts(raw, 100) == [(0, len(raw), 0, 100)]


def test_the_parts_are_whole_lines_in_order(good_lines: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    in_parts(monkeypatch, 4)
    raw = b"".join(good_lines[:10])
    parts = check._parts(raw, 10)
    assert [(first, lines) for _, _, first, lines in parts] == [(0, 2), (2, 3), (5, 2), (7, 3)]
    assert b"".join(raw[start:end] for start, end, _, _ in parts) == raw
    assert all(raw[start:end] == b"".join(good_lines[first : first + n]) for start, end, first, n in parts)


def test_evp_and_the_sha256_functions_link_alike(good_lines: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """chk_chain through SHA256_Init/Update/Final (when libcrypto has them) and through EVP: the same answers."""
    if libcrypto.direct() is None:
        missing(f"{libcrypto.LIBRARY} has no SHA256_Init/Update/Final: chk_chain hashes through EVP")
    rng = random.Random(3)
    for _ in range(100):
        start = rng.randrange(len(good_lines) - 1)
        lines = good_lines[start : start + rng.randrange(1, 100)]
        edit_byte(lines, rng.randrange(len(lines)), rng)
        prev, raw = prev_of(good_lines, start), b"".join(lines)
        direct = check.chain(raw, len(lines), prev)
        with monkeypatch.context() as m:
            m.setattr(libcrypto, "direct", lambda: None)
            assert check.chain(raw, len(lines), prev) == direct == first_unlinked(lines, prev)


def test_the_sha256_functions_hash_as_hashlib_does() -> None:
    found = libcrypto.direct()
    if found is None:
        missing(f"{libcrypto.LIBRARY} has no SHA256_Init/Update/Final: chk_chain hashes through EVP")
    assert libcrypto.direct("libno-such-crypto.so.3") is None
    rng = random.Random(5)
    for length in [0, 1, 55, 56, 63, 64, 65, 119, 120, 613, 5000]:
        data = rng.randbytes(length)
        assert libcrypto._direct_sha256(found.ffi, found.lib, data) == hashlib.sha256(data).hexdigest()


def v2_ahead(monkeypatch: pytest.MonkeyPatch, threads: int, group: int) -> None:
    """Every v2 ``verify`` prechecks its batches ``group`` at a time on ``threads`` threads, however small."""
    in_parts(monkeypatch, threads)
    monkeypatch.setattr(read_v2, "PRECHECK_BATCHES", group)


def v2_outcome(path: Path, monkeypatch: pytest.MonkeyPatch, threads: int, group: int) -> VerifyResult | str:
    with monkeypatch.context() as m:
        v2_ahead(m, threads, group)
        return outcome([path])


@pytest.mark.parametrize("name", v2_tamperings())
def test_tampered_v2_logs_verify_the_same_checked_ahead(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 8)
    path.write_bytes(b"".join(v2_tamperings()[name](path.read_bytes().splitlines(keepends=True))))
    alone = v2_outcome(path, monkeypatch, 1, read_v2.PRECHECK_BATCHES)
    for threads, group in [(2, 2), (3, 4), (4, 32)]:
        assert v2_outcome(path, monkeypatch, threads, group) == alone


@pytest.mark.parametrize("path", sorted(HOSTILE.glob("v2-*.jsonl")), ids=lambda p: p.name)
def test_hostile_v2_logs_verify_the_same_checked_ahead(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert v2_outcome(path, monkeypatch, 3, 2) == v2_outcome(path, monkeypatch, 1, read_v2.PRECHECK_BATCHES)


def test_random_v2_edits_near_group_and_thread_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes changed, records and checkpoints deleted, batches swapped next to where a group or a thread's share of
    it ends: ``verify`` checked ahead on threads says what it says alone."""
    path = tmp_path / "audit.jsonl"
    write(path, 12)
    good = path.read_bytes().splitlines(keepends=True)
    checkpoints = [i for i, line in enumerate(good) if line.startswith(CHECKPOINT_START)]
    rng = random.Random(17)
    for _ in range(40):
        threads, group = rng.choice([(2, 4), (3, 6), (2, 3)])
        lines = list(good)
        # the checkpoint closing a batch at the end of a thread's share or of a group, or the line next to it
        batch = rng.choice([group * k // threads for k in range(1, threads)] + [group - 1, group])
        at = checkpoints[min(batch, len(checkpoints) - 1)] + rng.choice([-1, 0, 1])
        at = min(at, len(lines) - 1)
        action = rng.choice(["byte", "delete", "swap batches", "duplicate"])
        if action == "byte":
            edit_byte(lines, at, rng)
        elif action == "delete":
            del lines[at]
        elif action == "duplicate":
            lines.insert(at, lines[at])
        else:
            first, second = sorted(rng.sample(range(len(checkpoints) - 1), 2))
            a = slice(checkpoints[first] + 1, checkpoints[first + 1] + 1)
            b = slice(checkpoints[second] + 1, checkpoints[second + 1] + 1)
            lines = lines[: a.start] + lines[b] + lines[a.stop : b.start] + lines[a] + lines[b.stop :]
        path.write_bytes(b"".join(lines))
        assert v2_outcome(path, monkeypatch, threads, group) == v2_outcome(path, monkeypatch, 1, group), action


def test_a_small_v2_log_is_checked_on_the_calling_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 3)
    batches = list(read_v2.batches([path]))

    def no_pool() -> None:
        raise AssertionError("a small log started a thread")

    seen = list(read_v2.prechecked(iter(batches), read._check_v2, 4, no_pool, check.MIN_PART_BYTES))
    assert [batch for batch, _ in seen] == batches and all(ahead is None for _, ahead in seen)
    monkeypatch.setattr(check, "threads", lambda: 4)
    assert outcome([path]) == v2_outcome(path, monkeypatch, 1, read_v2.PRECHECK_BATCHES)
