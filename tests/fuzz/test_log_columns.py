"""The on-disk audit log read as columns (fuzz/log_follow.py ``items``), held to the reference read as dicts.

The follower parses a step's lines into runs of columns (``LoggedSpan``) and
the end check takes the records it followed instead of re-reading the log
record by record.  Both are faster paths of a reference that stays: the same
records as dicts (``follower()``, ``AuditWatch._run_rows``) and the end check
that walks every verified record (``_LogTally``).  These tests hold the
columns to the reference rows and verdicts, odd chunks to the dicts, and the
short end check to the long one (same findings, planted problems caught).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fuzz import log_columns
from fuzz.arena import Arena
from fuzz.campaign import run_campaign
from fuzz.classes import CLASSES
from fuzz.log_follow import LogFollower, logged_chunk
from fuzz.oracle import audit
from fuzz.oracle.audit import AuditWatch, _runs, audit_complete
from fuzz.oracle.liveness import bounded_step
from fuzz.oracle.logged import LoggedSpan
from ring.compiled import SWITCH
from tests.fuzz.test_oracle_checks import FAST
from tests.verifier.compiled import compiled_accelerator, forget_accelerators
from verifier.audit.log import AuditLog
from verifier.audit.memory import MemoryAudit
from verifier.audit.read import verify

CLASSES_USED = ["kernel-tx", "kernel-rx", "bad-length", "fragments", "bad-cmd", "ring-index", "register", "wrap"]


def logged_items(lines: list[bytes]) -> list[dict[str, Any] | LoggedSpan] | None:
    """``logged_chunk`` of these lines (each without its newline)."""
    return logged_chunk(b"".join(line + b"\n" for line in lines)) if lines else []


@pytest.fixture(scope="module", params=[1, 2], ids=["v1", "v2"])
def log_lines(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Every line of a small campaign's log (records of every kind the fuzzer makes; v2: with checkpoints)."""
    path = tmp_path_factory.mktemp("columns") / "audit.jsonl"
    with AuditLog(path, "verifier", fsync="never", rotate_bytes=None, schema=request.param) as log:
        run_campaign("verifier", 1, classes=CLASSES_USED, iterations=48, batch=64, arena_every=3, audit=log)
    return path.read_bytes().split(b"\n")[:-1]


@pytest.fixture(scope="module")
def oracle_watch() -> tuple[AuditWatch, Any]:
    sink = MemoryAudit(keep=1 << 16)
    arena = Arena.build("verifier", 1, sink)
    watch = AuditWatch(sink)
    watch.watch(arena)
    return watch, arena.oracle


def reference(lines: list[bytes]) -> list[Any]:
    """The same chunk as the reference takes it: dicts, runs of descriptor records grouped by ``_runs``."""
    follower_dicts = _dicts_of(lines)
    virtq = [d for d in follower_dicts if (d.get("detail") or {}).get("format") == "virtq"]
    assert not virtq  # (the e1000 classes only: a virtq record is left out of the runs, as judged elsewhere)
    return _runs(follower_dicts)  # type: ignore[arg-type]


def _dicts_of(lines: list[bytes]) -> list[dict[str, Any]]:
    from fuzz.log_follow import _dicts

    return _dicts(lines)


def assert_same_rows(a: Any, b: Any) -> None:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray), f.name
            assert x.dtype == y.dtype and np.array_equal(x, y), f.name
        else:
            assert x == y, f.name


@pytest.mark.parametrize(("chunk", "run"), [(1, 4096), (7, 4096), (97, 4096), (4096, 4096), (4096, 8)])
def test_columns_are_the_reference_rows(
    log_lines: list[bytes], oracle_watch: tuple[AuditWatch, Any], chunk: int, run: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run by run, the columns are the rows ``_run_rows`` makes of the same records (``run``: the longest run, cut
    after a packet's end)."""
    monkeypatch.setattr(audit, "LOGGED_RUN", run)
    watch, oracle = oracle_watch
    spans = 0
    for lo in range(0, len(log_lines), chunk):
        lines = log_lines[lo : lo + chunk]
        items = logged_items(lines)
        assert items is not None, lines[:2]
        want = reference(lines)
        assert len(items) == len(want)
        for got, ref in zip(items, want, strict=True):
            if not isinstance(ref, list):
                assert got == ref
                continue
            assert isinstance(got, LoggedSpan)
            spans += 1
            rows, names, codes = watch._run_rows(oracle, ref)
            assert got.names == names and got.reason.dtype == codes.dtype and np.array_equal(got.reason, codes)
            assert got.seq == rows.seq and len(got) == len(ref) and (got.nic, got.kind) == (rows.nic, rows.kind)
            assert np.array_equal(got.ring_index, [r["ring_index"] for r in ref])
            assert_same_rows(got.rows(watch._context(oracle, got.nic, got.kind, got.queue)), rows)
    assert spans >= 5


def test_columns_are_judged_as_the_reference(log_lines: list[bytes], oracle_watch: tuple[AuditWatch, Any]) -> None:
    """Planted wrong reasons (a zero length called too long, and the other way round) are the same findings."""
    watch, _ = oracle_watch
    planted = [
        line.replace(b'"reason":"LEN_TOO_LONG"', b'"reason":"LEN_ZERO"', 1) if i % 3 == 0 else line
        for i, line in enumerate(log_lines)
    ]
    planted = [line.replace(b'"reason":"LEN_ZERO"', b'"reason":"CMD_UNSUPPORTED"', 1) for line in planted]
    wrong = 0
    for lo in range(0, len(planted), 128):
        lines = planted[lo : lo + 128]
        items = logged_items(lines)
        assert items is not None
        got = [(e.kind, e.what) for e in watch._judge_reasons(items)]  # type: ignore[arg-type]
        assert got == [(e.kind, e.what) for e in watch._judge_reasons(_dicts_of(lines))]  # type: ignore[arg-type]
        wrong += len(got)
    assert wrong > 0


ODD = {
    "damaged": lambda line: line[: len(line) // 2],
    "null first_bad_byte": lambda line: line.replace(b'"first_bad_byte":"0x', b'"first_bad_byte":null,"x":"', 1),
    "seq as bool": lambda line: line.replace(b'"seq":', b'"seq":true,"was":', 1),
    "no reason": lambda line: line.replace(b'"reason":"', b'"reason":"","was":"', 1),
    "slot null": lambda line: line.replace(b'"ring_index":', b'"ring_index":null,"was":', 1),
    "not an object": lambda line: b"[1,2]",
    "two values on a line": lambda line: line + b"," + line,
}


@pytest.mark.parametrize("odd", list(ODD))
def test_an_odd_chunk_is_taken_as_the_reference_takes_it(tmp_path: Path, odd: str) -> None:
    """A chunk that is not plain is taken as dicts (a damaged line dropped: its record is then reported lost)."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    columns, dicts = LogFollower(path), LogFollower(path)
    with AuditLog(tmp_path / "src.jsonl", "verifier", fsync="never", schema=2) as log:
        run_campaign("verifier", 1, classes=["kernel-tx", "kernel-rx"], iterations=2, batch=16, audit=log)
    lines = (tmp_path / "src.jsonl").read_bytes().split(b"\n")[:-1]
    victim = next(i for i, line in enumerate(lines) if b'"first_bad_byte"' in line and b'"desc_hex":"' in line)
    lines[victim] = ODD[odd](lines[victim])
    assert lines[victim] != (tmp_path / "src.jsonl").read_bytes().split(b"\n")[victim]
    assert logged_items(lines) is None
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert columns.items() == dicts()
    columns.close()
    dicts.close()


def followed_campaign(
    tmp_path: Path, classes: list[str], steps: int = 3, rotate_bytes: int | None = 48 << 10, schema: int = 2
) -> tuple[AuditLog, AuditWatch, list[Any], list[Any]]:
    """A campaign loop (tests/fuzz/test_oracle_checks.py ``campaign``) whose watch follows its on-disk log as
    fuzz/campaign.py wires it; ``verify`` is wrapped to tell which end check ran (``on_record`` None: the short)."""
    log = AuditLog(tmp_path / "audit.jsonl", "verifier", fsync="never", rotate_bytes=rotate_bytes, schema=schema)
    calls: list[Any] = []

    def spy(files: Any, on_record: Callable[..., Any] | None = None) -> Any:
        calls.append(on_record)
        return verify(files, on_record=on_record)

    watch = AuditWatch(log, verify=spy)
    log.commit()
    follower = LogFollower(log.path)
    watch.follow, watch.holds = follower.items, follower.holds
    found: list[Any] = []
    for block, name in enumerate(classes):
        arena = Arena.build("verifier", 1, log, detail_limit=4)
        watch.watch(arena)
        rng = np.random.default_rng([1, block])
        for _ in range(steps):
            b = CLASSES[name].generate(rng, arena.map, 64)
            found += bounded_step(arena.oracle, partial(b.run, arena), FAST)
            arena.settle()
    follower.close()
    return log, watch, found, calls


def slow(watch: AuditWatch) -> list[tuple[str, str]]:
    """The end check the long way: every verified record walked again."""
    holds, watch.holds = watch.holds, None
    try:
        return [(e.kind, e.what) for e in audit_complete(watch)]
    finally:
        watch.holds = holds


@pytest.mark.parametrize("schema", [1, 2])
def test_the_short_end_check_finds_what_the_long_one_finds(tmp_path: Path, schema: int) -> None:
    classes = ["kernel-tx", "kernel-rx", "ring-index", "register"]
    log, watch, found, calls = followed_campaign(tmp_path, classes, schema=schema)
    assert found == []
    assert len(list(tmp_path.glob("audit.jsonl.*"))) >= 1  # rotated while followed
    assert audit_complete(watch) == [] and calls == [None]  # the short way: the chain verified, no record walked
    assert slow(watch) == [] and calls[-1] is not None
    watch.marks[("nic2", "tx", 0, 999)] += 1  # a refusal the oracle saw that no record names
    short = [(e.kind, e.what) for e in audit_complete(watch)]
    assert short == slow(watch) and "1 refused descriptors without a record" in short[0][1]
    assert calls[-2] is None
    watch.marks[("nic2", "tx", 0, 999)] -= 1
    watch._start_counters[next(iter(log.counters))] += 1  # the counters say one record fewer than the file holds
    short = [(e.kind, e.what) for e in audit_complete(watch)]
    assert short == slow(watch) and "counters do not equal records" in short[0][1]
    log.close()


def test_a_log_changed_after_it_was_followed_is_re_read(tmp_path: Path) -> None:
    """The short end check takes the records followed only when the files hold exactly the bytes followed (a
    byte changed, a line added, a followed file gone: not); the chain is verified either way."""
    log, watch, found, _ = followed_campaign(tmp_path, ["kernel-tx", "bad-length"], rotate_bytes=None)
    assert found == []
    path = log.path
    follower = LogFollower(path)  # (a second follower, to see ``holds`` alone)
    files = [path]
    assert watch.holds is not None and watch.holds(files)
    data = path.read_bytes()
    at = data.index(b'"reason":"') + len(b'"reason":"')
    path.write_bytes(data[:at] + b"X" + data[at + 1 :])  # one byte of a followed record
    assert not watch.holds(files)
    found_end = audit_complete(watch)
    assert [e.kind for e in found_end] == ["audit"] and "does not verify" in found_end[0].what
    path.write_bytes(data)
    assert watch.holds(files) and audit_complete(watch) == []
    path.write_bytes(data + data.split(b"\n")[0] + b"\n")  # a line no step followed
    assert not watch.holds(files)
    found_end = audit_complete(watch)  # (a repeated record: the chain says so before anything is compared)
    assert [e.kind for e in found_end] == ["audit"] and "does not verify" in found_end[0].what
    path.write_bytes(data)
    assert not watch.holds([tmp_path / "elsewhere.jsonl"])
    follower.close()
    log.close()


def test_a_record_after_the_last_step_takes_the_long_way(tmp_path: Path) -> None:
    log, watch, _, calls = followed_campaign(tmp_path, ["kernel-tx"], rotate_bytes=None)
    arena = Arena.build("verifier", 2, log, detail_limit=4)  # a machine whose refusals no step followed
    b = CLASSES["kernel-tx"].generate(np.random.default_rng(5), arena.map, 16)
    b.run(arena)
    log.commit()
    assert log.next_seq > watch._seq
    long_way = audit_complete(watch)
    assert calls[-1] is not None  # not every record was followed: the end check walked them all
    assert [(e.kind, e.what) for e in long_way] == slow(watch)
    log.close()


def rechain_v2(data: bytes) -> bytes:
    """A v2 log's checkpoints recomputed over its lines as they are now (docs/audit-log.md's own check, writing):
    what a log rewritten by someone who can write the file looks like -- its chain verifies."""
    out, batch, prev = [], b"", "0" * 64
    for line in data.splitlines(keepends=True):
        if not line.startswith(b'{"v":2,"checkpoint":'):
            batch += line
            out.append(line)
            continue
        checkpoint = json.loads(line)
        checkpoint["prev"] = prev
        body = json.dumps({k: v for k, v in checkpoint.items() if k != "hash"}, separators=(",", ":")).encode()
        checkpoint["hash"] = prev = hashlib.sha256(prev.encode() + batch + body).hexdigest()
        out.append(json.dumps(checkpoint, separators=(",", ":")).encode() + b"\n")
        batch = b""
    return b"".join(out)


def test_a_record_edited_on_disk_after_it_was_followed_is_caught(tmp_path: Path) -> None:
    """A followed record rewritten afterwards, its chain re-hashed so that it still verifies: the followed bytes
    are not the file's (``holds``, run beside ``verify``), so the end check walks the file again and judges the
    edited record (a wrong reason: it claims a zero length of a descriptor that has one)."""
    log, watch, found, calls = followed_campaign(tmp_path, ["kernel-tx", "bad-length"], rotate_bytes=None)
    assert found == [] and audit_complete(watch) == [] and calls[-1] is None
    path = log.path
    data = path.read_bytes()
    victim = next(line for line in data.split(b"\n") if b'"length":0,' not in line and b'"desc_hex":"' in line)
    edited = json.loads(victim)
    edited["reason"] = "LEN_ZERO"
    at = data.index(victim)
    path.write_bytes(
        rechain_v2(data[:at] + json.dumps(edited, separators=(",", ":")).encode() + data[at + len(victim) :])
    )
    assert verify([path]).ok  # the chain alone no longer tells
    assert watch.holds is not None and not watch.holds([path])
    end = audit_complete(watch)
    assert calls[-1] is not None  # the long way: every record walked and judged again
    assert any("wrong reason" in e.what and "LEN_ZERO" in e.what for e in end), end
    assert [(e.kind, e.what) for e in end] == slow(watch)
    path.write_bytes(data)
    assert audit_complete(watch) == [] and calls[-1] is None
    log.close()


# -- the compiled reader (fuzz/logcols.c through fuzz/log_columns.py) against the msgspec path ----------------------
def msgspec_path(chunk: bytes, monkeypatch: pytest.MonkeyPatch) -> list[Any] | None:
    """``logged_chunk`` with the compiled reader off: the msgspec path, the compiled reader's reference."""
    with monkeypatch.context() as m:
        m.setattr(log_columns, "spans", lambda _chunk: None)
        return logged_chunk(chunk)


def assert_same_items(got: list[Any] | None, want: list[Any] | None) -> None:
    """The compiled reader's spans are the msgspec path's; None from it (not sure) leaves the chunk to that path."""
    if got is None:
        return
    assert want is not None
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert type(a) is type(b)
        if isinstance(a, dict):
            assert a == b
        else:
            assert_same_rows(a, b)


@pytest.fixture(scope="module")
def reader() -> None:
    """The compiled reader must be loaded (a failure where it could be compiled, a skip elsewhere, not in CI)."""
    compiled_accelerator(*log_columns.state())


@pytest.mark.parametrize(("chunk", "run"), [(1, 4096), (7, 4096), (97, 4096), (4096, 4096), (4096, 8), (300, 3)])
def test_the_compiled_reader_gives_the_msgspec_spans(
    reader: None, log_lines: list[bytes], chunk: int, run: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk by chunk, the compiled reader's spans are the msgspec path's (or it is not sure), and it is sure of
    most chunks of a campaign's log."""
    monkeypatch.setattr(audit, "LOGGED_RUN", run)
    taken = tried = 0
    for lo in range(0, len(log_lines), chunk):
        data = b"".join(line + b"\n" for line in log_lines[lo : lo + chunk])
        got = log_columns.spans(data)
        tried += 1
        if got is None:
            continue
        taken += 1
        assert_same_items(got, msgspec_path(data, monkeypatch))
    assert taken >= tried // 2 if chunk < 100 else taken >= 0  # (a long chunk holds an event: the reference's)


EDITS: dict[str, Callable[[bytes], bytes]] = {
    **ODD,
    "space": lambda line: line.replace(b",", b", ", 1),
    "escape": lambda line: line.replace(b'"owner":"', b'"owner":"\\u0041', 1),
    "float seq": lambda line: line.replace(b'"seq":', b'"seq":1.5,"was":', 1),
    "big addr": lambda line: line.replace(b'"addr":', b'"addr":18446744073709551615,"was":', 1),
    "addr past 64 bits": lambda line: line.replace(b'"addr":', b'"addr":18446744073709551616,"was":', 1),
    "negative addr": lambda line: line.replace(b'"addr":', b'"addr":-1,"was":', 1),
    "leading zero": lambda line: line.replace(b'"queue":0', b'"queue":00', 1),
    "cmd past a byte": lambda line: line.replace(b'"cmd":', b'"cmd":256,"was":', 1),
    "repeated key": lambda line: line.replace(b'"seq":', b'"seq":1,"seq":', 1),
    "upper hex": lambda line: line.replace(b'"first_bad_byte":"0x', b'"first_bad_byte":"0xAB', 1),
    "0X": lambda line: line.replace(b'"first_bad_byte":"0x', b'"first_bad_byte":"0X', 1),
    "format": lambda line: line.replace(b'"detail":{', b'"detail":{"format":"e1000",', 1),
    "virtq": lambda line: line.replace(b'"detail":{', b'"detail":{"format":"virtq",', 1),
    "detail null": lambda line: line.replace(b'"detail":{', b'"detail":null,"was":{', 1),
    "an event's reason": lambda line: line.replace(b'"reason":"', b'"reason":"RING_OVERRUN","was":"', 1),
    "another kind": lambda line: line.replace(b'"kind":"tx"', b'"kind":"rx"', 1).replace(
        b'"kind":"rx"', b'"kind":"tx"', 1
    ),
    "a wrong reason": lambda line: line.replace(b'"reason":"', b'"reason":"LEN_ZERO","was":"', 1),
    "an array": lambda line: line.replace(b'"protection":', b'"x":[1],"protection":', 1),
    "no desc_hex": lambda line: line.replace(b'"desc_hex":"', b'"desc_hex":null,"was":"', 1),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_line_is_read_as_the_msgspec_path_reads_it(
    reader: None, log_lines: list[bytes], edit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line edited (as by someone who can write the file) in chunks of a campaign's log: the compiled reader gives
    the msgspec path's spans, or is not sure and leaves the chunk to it."""
    rng = np.random.default_rng(12)
    edited = 0
    for lo in range(0, len(log_lines), 64):
        lines = list(log_lines[lo : lo + 64])
        candidates = [i for i, line in enumerate(lines) if b'"desc_hex":"' in line and b'"first_bad_byte"' in line]
        if not candidates:
            continue
        victim = candidates[int(rng.integers(len(candidates)))]
        lines[victim] = EDITS[edit](lines[victim])
        edited += lines[victim] != log_lines[lo + victim]
        data = b"".join(line + b"\n" for line in lines)
        assert_same_items(log_columns.spans(data), msgspec_path(data, monkeypatch))
    assert edited > 0


def test_random_byte_edits_are_read_as_the_msgspec_path_reads_them(
    reader: None, log_lines: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes of random lines replaced by structure, digits, quotes, escapes, control and non-ASCII bytes."""
    rng = np.random.default_rng(7)
    alphabet = b'{}[]:,"\\0123456789-+.eExnulltruefalse \t\x01\x7f\xc3\xa9az'
    sure = 0
    for _ in range(400):
        lo = int(rng.integers(max(1, len(log_lines) - 16)))
        lines = list(log_lines[lo : lo + 16])
        i = int(rng.integers(len(lines)))
        line = bytearray(lines[i])
        for _ in range(int(rng.integers(1, 3))):
            line[int(rng.integers(len(line)))] = alphabet[int(rng.integers(len(alphabet)))]
        lines[i] = bytes(line)
        data = b"".join(line + b"\n" for line in lines)
        got = log_columns.spans(data)
        sure += got is not None
        assert_same_items(got, msgspec_path(data, monkeypatch))
    assert sure > 0


def test_a_record_edited_on_disk_is_caught_through_the_compiled_reader(
    reader: None, log_lines: list[bytes], oracle_watch: tuple[AuditWatch, Any]
) -> None:
    """Records whose reason was rewritten (a zero length claimed of a descriptor that has one) are read by the
    compiled reader and judged wrong, as the records as dicts are."""
    watch, _ = oracle_watch
    wrong = 0
    for lo in range(0, len(log_lines), 128):
        lines = [
            line.replace(b'"reason":"LEN_TOO_LONG"', b'"reason":"LEN_ZERO"', 1) if i % 3 == 0 else line
            for i, line in enumerate(log_lines[lo : lo + 128])
        ]
        data = b"".join(line + b"\n" for line in lines)
        items = log_columns.spans(data)
        if items is None or not any(b'"LEN_ZERO"' in line and b'"length":0,' not in line for line in lines):
            continue
        got = [(e.kind, e.what) for e in watch._judge_reasons(items)]  # type: ignore[arg-type]
        assert got == [(e.kind, e.what) for e in watch._judge_reasons(_dicts_of(lines))]  # type: ignore[arg-type]
        wrong += sum("LEN_ZERO" in what for _, what in got)
    assert wrong > 0


def test_the_switch_turns_the_compiled_reader_off(monkeypatch: pytest.MonkeyPatch, log_lines: list[bytes]) -> None:
    monkeypatch.setenv(SWITCH, "0")
    forget_accelerators()
    try:
        assert not log_columns.enabled()
        assert log_columns.spans(b"".join(line + b"\n" for line in log_lines[:64])) is None
    finally:
        monkeypatch.delenv(SWITCH)
        forget_accelerators()
