"""The compiled v1 chain walk (check.c `chk_chain`, libcrypto's SHA-256) against the Python chain and the reference.

``verify`` without ``on_record`` links a chunk the line check passed in one C call (verifier/audit/check.py
``chain``); without it (no compiler, ``NIC_SANDBOX_FASTPATH=0``, no libcrypto) ``read._chained`` hashes each line
with hashlib, and the reference walk (``fast_chunk`` answering None) decides every chunk either of them refuses.
All three must give the same ``VerifyResult`` -- verdict, problem text and place, head hash, counts -- on every
tampering of tests/verifier/test_audit_verify_fast.py and every hostile log; and ``chain`` must name the same
first unlinked line as a plain Python walk of ``chain_hash`` on random chunks with random bytes changed.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

import verifier.audit.read as read
from tests.needs import missing
from tests.verifier.compiled import compiled_accelerator, forget_accelerators
from tests.verifier.test_audit_verify_fast import HOSTILE, TAMPERINGS
from tests.verifier.test_audit_verify_pass import big_log
from verifier.audit import check, libcrypto
from verifier.audit.log import GENESIS, chain_hash
from verifier.audit.read import AuditFormatError, VerifyResult, verify

#: Bytes written over a line's bytes (no newline: the chunk keeps its lines).
PROBES = b' "\\0159af,:{}[]\r\t\x00\x7f\xc3-.eZ'


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


def outcome(files: list[Path]) -> VerifyResult | str:
    try:
        return verify(files)
    except AuditFormatError as err:
        return f"format error: {err}"


def three_ways(files: list[Path], monkeypatch: pytest.MonkeyPatch) -> tuple[object, object, object]:
    """``verify`` with the compiled chain, with hashlib's (``chain`` answering None), and by the reference walk."""
    fast = outcome(files)
    with monkeypatch.context() as m:
        m.setattr(check, "chain", lambda *_: None)
        python = outcome(files)
    with monkeypatch.context() as m:
        m.setattr(read, "fast_chunk", lambda *_: None)
        slow = outcome(files)
    return fast, python, slow


def first_unlinked(lines: list[bytes], prev: str) -> int:
    """The first line that does not link (``len(lines)``: none), walked with ``chain_hash`` as the writer hashes."""
    for index, line in enumerate(lines):
        if (
            len(line) < 151
            or line[-3:] != b'"}\n'
            or line[-77:-67] != b'","hash":"'
            or line[-150:-141] != b',"prev":"'
            or line[-141:-77] != prev.encode()
        ):
            return index
        prev = chain_hash(prev, line[:-76] + b"}")
        if line[-67:-3] != prev.encode():
            return index
    return len(lines)


def prev_of(lines: list[bytes], start: int) -> str:
    return GENESIS if start == 0 else lines[start - 1][-67:-3].decode()


@pytest.mark.parametrize("name", TAMPERINGS)
def test_tampered_logs_verify_the_same_three_ways(
    name: str, good_lines: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(TAMPERINGS[name](good_lines)))
    fast, python, slow = three_ways([path], monkeypatch)
    assert fast == python == slow
    assert isinstance(fast, VerifyResult)
    if name == "intact":
        assert fast.ok and fast.records == len(good_lines)
        assert fast.head == good_lines[-1][-67:-3].decode()


@pytest.mark.parametrize("path", sorted(HOSTILE.glob("*.jsonl")), ids=lambda p: p.name)
def test_hostile_logs_verify_the_same_three_ways(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, python, slow = three_ways([path], monkeypatch)
    assert fast == python == slow


def test_random_chunks_link_where_python_says(good_lines: list[bytes]) -> None:
    rng = random.Random(12)
    for _ in range(300):
        start = rng.randrange(len(good_lines) - 1)
        lines = good_lines[start : start + rng.randrange(1, 200)]
        prev = prev_of(good_lines, start)
        assert check.chain(b"".join(lines), len(lines), prev) == len(lines) == first_unlinked(lines, prev)
        for _ in range(rng.randrange(1, 3)):  # a byte or two changed anywhere: body, prev, hash or the keys
            index = rng.randrange(len(lines))
            line = bytearray(lines[index])
            line[rng.randrange(len(line) - 1)] = rng.choice(PROBES)
            lines[index] = bytes(line)
        assert check.chain(b"".join(lines), len(lines), prev) == first_unlinked(lines, prev)


def test_a_wrong_prev_or_a_short_line_stops_the_walk(good_lines: list[bytes]) -> None:
    lines = good_lines[:10]
    raw = b"".join(lines)
    assert check.chain(raw, 10, GENESIS) == 10
    assert check.chain(raw, 10, "f" * 64) == 0
    assert check.chain(raw, 10, "0" * 63) is None  # not a hash: not this walk's to judge
    short = [*lines[:3], b'{"v":1}\n', *lines[4:]]
    assert check.chain(b"".join(short), 10, GENESIS) == 3 == first_unlinked(short, GENESIS)
    assert check.chain(raw[:-1], 10, GENESIS) == 9  # the last newline missing


def test_libcrypto_hashes_as_hashlib_does() -> None:
    digest = libcrypto.digest()
    assert digest is not None
    rng = random.Random(5)
    for length in [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 5000]:
        data = rng.randbytes(length)
        assert digest.sha256(data) == hashlib.sha256(data).hexdigest()


def test_without_libcrypto_verify_hashes_in_python_with_the_same_result(
    good_lines: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert libcrypto.digest("libno-such-crypto.so.3") is None
    path = tmp_path / "audit.jsonl"
    for name in ("intact", "a value altered", "prev replaced", "chunk boundary edit"):
        path.write_bytes(b"".join(TAMPERINGS[name](good_lines)))
        fast = outcome([path])
        with monkeypatch.context() as m:
            m.setattr(libcrypto, "digest", lambda: None)
            assert check.chain(b"".join(good_lines[:2]), 2, GENESIS) is None
            assert outcome([path]) == fast


def test_with_the_accelerators_off_verify_gives_the_same_result(
    good_lines: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    results = []
    for name in ("intact", "prev replaced"):
        path.write_bytes(b"".join(TAMPERINGS[name](good_lines)))
        results.append(outcome([path]))
    monkeypatch.setenv("NIC_SANDBOX_FASTPATH", "0")
    forget_accelerators()
    try:
        assert check.chain(b"".join(good_lines[:2]), 2, GENESIS) is None
        for name, fast in zip(("intact", "prev replaced"), results, strict=True):
            path.write_bytes(b"".join(TAMPERINGS[name](good_lines)))
            assert outcome([path]) == fast
    finally:
        monkeypatch.delenv("NIC_SANDBOX_FASTPATH")
        forget_accelerators()
