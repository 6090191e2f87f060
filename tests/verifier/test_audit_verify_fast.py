"""``verify``'s compiled fast path (verifier/audit/fast_read.py) against the line-by-line reference walk.

Same inputs, compared outputs: every field of ``VerifyResult`` (verdict,
problems with their places, head, counts) and every record handed to
``on_record``.  The reference is ``verify`` with the fast path turned away
(``fast_chunk`` answering None: every chunk walked by ``json.loads`` and
``schema_problem``).  The corpus: tampered logs, lines re-hashed after an
edit only the canonical or schema check can see (including the forms where
msgspec and ``json`` write differently: DEL, ``\\u00e9``, floats, ``v`` as
``true``), two records on one line and one record on two, and the hostile
logs of tests/hostile/audit.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import verifier.audit.read as read
from tests.verifier.test_audit_verify_pass import big_log
from verifier.audit.log import GENESIS
from verifier.audit.read import AuditFormatError, VerifyResult, verify

HOSTILE = Path(__file__).resolve().parents[1] / "hostile" / "audit"


def reference(files: list[Path], monkeypatch: pytest.MonkeyPatch) -> tuple[VerifyResult | str, list[Any]]:
    """``verify`` walking every line with the reference checks."""
    with monkeypatch.context() as m:
        m.setattr(read, "fast_chunk", lambda *_: None)
        return run(files)


def run(files: list[Path]) -> tuple[VerifyResult | str, list[Any]]:
    seen: list[Any] = []
    try:
        return verify(files, on_record=seen.append), seen
    except AuditFormatError as err:
        return f"format error: {err}", seen


def rehash(lines: list[bytes]) -> list[bytes]:
    """The lines with every ``prev`` and ``hash`` recomputed from their text: only canonical/schema checks can tell."""
    out, prev = [], GENESIS
    for line in lines:
        cut = line.rfind(b',"hash":"')
        body = line[:cut] + b"}" if cut >= 0 else line.rstrip(b"\n")
        start = body.find(b'"prev":"')
        if start >= 0:
            body = body[: start + 8] + prev.encode() + body[start + 8 + 64 :]
        prev = hashlib.sha256(prev.encode() + body).hexdigest()
        out.append(body[:-1] + b',"hash":"' + prev.encode() + b'"}\n')
    return out


def at(index: int, edit: Callable[[bytes], bytes], chained: bool = True) -> Callable[[list[bytes]], list[bytes]]:
    """Edit line ``index``; ``chained``: then recompute the chain so the hash holds."""

    def change(lines: list[bytes]) -> list[bytes]:
        lines = list(lines)
        lines[index] = edit(lines[index])
        return rehash(lines) if chained else lines

    return change


def record_edit(index: int, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[list[bytes]], list[bytes]]:
    """Decode line ``index``, change the record, write it back canonically (``json.dumps``), re-chain."""

    def edit(line: bytes) -> bytes:
        record = change(json.loads(line))
        return json.dumps(record, separators=(",", ":")).encode() + b"\n"

    return at(index, edit)


def swap(i: int, j: int) -> Callable[[list[bytes]], list[bytes]]:
    def change(lines: list[bytes]) -> list[bytes]:
        lines = list(lines)
        lines[i], lines[j] = lines[j], lines[i]
        return lines

    return change


def set_detail(value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda r: {**r, "detail": {**r["detail"], "note": value}}


TAMPERINGS: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "intact": lambda lines: lines,
    "a value altered": at(100, lambda line: line.replace(b'"nic2"', b'"nic3"', 1), chained=False),
    "a line deleted": lambda lines: lines[:500] + lines[501:],
    "lines swapped": swap(300, 301),
    "a line repeated": lambda lines: [*lines[:700], lines[650], *lines[701:]],
    "prev replaced": at(900, lambda line: line.replace(line[line.find(b'"prev":"') + 8 :][:64], b"0" * 64), False),
    "torn end": lambda lines: [*lines[:-1], lines[-1][:-40]],
    "spaces, re-hashed": at(5, lambda line: line.replace(b'"seq":', b'"seq": ', 1)),
    "keys reordered, re-hashed": record_edit(7, lambda r: {"seq": r["seq"], "v": r["v"], **r}),
    "DEL raw, re-hashed": at(9, lambda line: line.replace(b'"mallory"', b'"mal\x7flory"', 1)),
    "DEL escaped, re-hashed": record_edit(11, lambda r: {**r, "tenant_name": "mal\x7flory"}),
    "u00e9 escaped, re-hashed": record_edit(13, lambda r: {**r, "tenant_name": "mallor\u00e9"}),
    "float in detail, re-hashed": record_edit(15, set_detail(1e16)),
    "nested detail, re-hashed": record_edit(17, set_detail({"a": [1, {"v": 2}]})),
    "v true, re-hashed": at(19, lambda line: line.replace(b'{"v":1,', b'{"v":true,', 1)),
    "wall +00:00, re-hashed": at(21, lambda line: line.replace(b'Z","mono_ns"', b'+00:00","mono_ns"', 1)),
    "wall 3 digits, re-hashed": at(23, lambda line: line.replace(b".000001", b".0", 1).replace(b'000Z"', b'Z"', 1)),
    "wall Feb 30, re-hashed": at(25, lambda line: line.replace(b'"wall":"2023-11-14', b'"wall":"2023-02-30', 1)),
    "desc_hex upper, re-hashed": at(27, lambda line: line.replace(b'"desc_hex":"', b'"desc_hex":"A', 1)),
    "reason lower, re-hashed": at(29, lambda line: line.replace(b'"reason":"', b'"reason":"x', 1)),
    "queue 2**32, re-hashed": record_edit(31, lambda r: {**r, "queue": 2**32}),
    "mono 2**64, re-hashed": record_edit(33, lambda r: {**r, "mono_ns": 2**64}),
    "seq huge, re-hashed": record_edit(35, lambda r: {**r, "seq": 10**30}),
    "extra key, re-hashed": record_edit(
        37, lambda r: {**{k: v for k, v in r.items() if k != "prev"}, "x": 1, "prev": 0}
    ),
    "duplicate key, re-hashed": at(39, lambda line: line.replace(b'"nic":"nic2",', b'"nic":"nic9","nic":"nic2",', 1)),
    "escaped slash, re-hashed": at(41, lambda line: line.replace(b'"nic2"', b'"nic\\/2"', 1)),
    "two records on one line": lambda lines: [*lines[:50], lines[50][:-1] + lines[51], *lines[52:]],
    "one record on two lines, re-hashed": at(60, lambda line: line.replace(b',"kind":', b',\n"kind":', 1)),
    "a blank line": lambda lines: [*lines[:70], b"\n", *lines[70:]],
    "chunk boundary edit": at(read.CHUNK_LINES - 1, lambda line: line.replace(b'"tx"', b'"rx"', 1), chained=False),
}


@pytest.fixture(scope="module")
def good_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    path = tmp_path_factory.mktemp("good") / "audit.jsonl"
    big_log(path)
    return path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize("name", TAMPERINGS)
def test_the_fast_path_finds_what_the_reference_finds(
    name: str, good_lines: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = TAMPERINGS[name](good_lines)
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(lines))
    fast, ref = run([path]), reference([path], monkeypatch)
    assert fast == ref
    assert isinstance(fast[0], VerifyResult)
    if name == "intact":
        assert fast[0].ok and fast[0].records == len(good_lines) == len(fast[1])
    elif "re-hashed" not in name:  # the others may be valid JSON the reference accepts: it decides, both agree
        assert not fast[0].ok, name


@pytest.mark.parametrize("path", sorted(HOSTILE.glob("*.jsonl")), ids=lambda p: p.name)
def test_hostile_logs_get_the_same_verdict(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run([path]) == reference([path], monkeypatch)


WITHOUT_MSGSPEC = """
import sys
sys.modules["msgspec"] = None  # as in the lab guest: the import fails
from pathlib import Path
from tests.verifier.test_audit_verify_pass import big_log
from verifier.audit import read
assert read._fast is None
files = big_log(Path(sys.argv[1]))
result = read.verify(files)
assert result.ok and result.records > 2 * read.CHUNK_LINES, result
"""


def test_without_msgspec_the_writer_writes_the_same_bytes_and_verify_still_verifies(tmp_path: Path) -> None:
    """The lab guest has no msgspec: integer columns by ``%d``, every chunk by the reference walk."""
    root = Path(__file__).resolve().parents[2]
    bare = tmp_path / "bare.jsonl"
    subprocess.run([sys.executable, "-c", WITHOUT_MSGSPEC, str(bare)], cwd=root, check=True, timeout=300)
    big_log(tmp_path / "full.jsonl")
    assert bare.read_bytes() == (tmp_path / "full.jsonl").read_bytes()
