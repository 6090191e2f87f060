"""The audit log (invariant 6): hash chain, tamper and tear detection, durability, rotation, determinism.

Everything runs on real files in ``tmp_path``.  The chain hash is recomputed
here with ``hashlib`` and ``json`` directly, not with the writer's helpers,
so a bug in those helpers cannot hide itself.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ring.descriptors import TX_DESC
from verifier.audit.log import FIELDS, GENESIS, AuditError, AuditLog, format_wall
from verifier.audit.memory import MemoryAudit
from verifier.audit.read import AuditFormatError, parse_wall, read_records, verify
from verifier.audit.record import AuditRecord

EPOCH_NS = 1_714_564_800_000_000_000  # 2024-05-01T12:00:00Z
REASONS = ("ADDR_NOT_PINNED", "LEN_ZERO", "RANGE_WRAPS", "NOT_DEVICE_READABLE")


def ticking_clock(step_ns: int = 1_000) -> Iterator[tuple[int, int]]:
    """A deterministic clock: wall and monotonic time advance by ``step_ns`` per call."""
    tick = 0
    while True:
        yield EPOCH_NS + tick * step_ns, 5_000_000 + tick * step_ns
        tick += 1


def clock(step_ns: int = 1_000) -> Any:
    ticks = ticking_clock(step_ns)
    return lambda: next(ticks)


def tx_raw(i: int) -> bytes:
    desc = np.zeros(1, dtype=TX_DESC)
    desc["addr"] = 0x40_0000 + 0x800 * i
    desc["length"] = 60 + i % 1400
    desc["cmd"] = 0x0B
    return desc.tobytes()


def decode_desc(raw: bytes) -> dict[str, int]:
    """The fields of a raw 16-byte e1000 legacy TX descriptor, as plain ints (an audit record's ``fields``)."""
    row = np.frombuffer(raw, dtype=TX_DESC)[0]
    return {name: int(row[name]) for name in TX_DESC.names or ()}


def add(log: AuditLog | MemoryAudit, i: int) -> int:
    """Record the ``i``-th rejection of a small, varied, deterministic stream."""
    raw = tx_raw(i)
    return log.record(
        AuditRecord(
            tenant=1 + i % 3,
            tenant_name=("alice", "bob", "mallory")[i % 3],
            nic="nic0",
            queue=i % 2,
            kind="tx",
            ring_index=i % 512,
            raw=raw,
            fields=decode_desc(raw),
            reason=REASONS[i % len(REASONS)],
            detail={"first_bad_byte": 0x40_0000 + 0x800 * i, "frame": (0x40_0000 + 0x800 * i) >> 12, "owner": "kernel"},
        )
    )


def write(path: Path, n: int, start: int = 0, **kwargs: Any) -> AuditLog:
    kwargs.setdefault("clock", clock())
    with AuditLog(path, "verifier", **kwargs) as log:
        for i in range(start, start + n):
            add(log, i)
            if i % 7 == 6:
                log.commit()
    return log


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# -- the chain ----------------------------------------------------------------------------
def test_records_follow_the_schema_and_the_chain_recomputes_independently(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = write(path, 10)
    prev = GENESIS
    for seq, line in enumerate(lines_of(path)):
        record = json.loads(line)
        assert tuple(record) == FIELDS
        assert record["v"] == 1 and record["seq"] == seq and record["prev"] == prev
        body = {k: v for k, v in record.items() if k != "hash"}
        canonical = json.dumps(body, separators=(",", ":"), sort_keys=False)
        assert record["hash"] == hashlib.sha256((prev + canonical).encode()).hexdigest()
        assert line == json.dumps(record, separators=(",", ":")).encode() + b"\n"
        prev = record["hash"]
    assert log.head == prev

    first = json.loads(lines_of(path)[0])
    assert first["wall"] == "2024-05-01T12:00:00.000000000Z" and parse_wall(first["wall"]) == EPOCH_NS
    assert first["mono_ns"] == 5_000_000
    assert first["desc_hex"] == tx_raw(0).hex() and len(bytes.fromhex(first["desc_hex"])) == 16
    assert first["desc"] == dict(addr=0x40_0000, length=60, cso=0, cmd=0x0B, status=0, css=0, special=0)
    assert first["detail"] == {"first_bad_byte": 0x40_0000, "frame": 0x400, "owner": "kernel"}
    assert first["protection"] == "verifier" and first["tenant_name"] == "alice"

    result = verify([path])
    assert result.ok and result.records == 10 and result.first_bad_seq is None and result.head == log.head


def test_format_wall_round_trips_nanoseconds() -> None:
    for ns in (0, 1, EPOCH_NS + 123_456_789, 2**62):
        assert parse_wall(format_wall(ns)) == ns
    assert parse_wall("2024-05-01T12:00:00.5Z") == EPOCH_NS + 500_000_000
    assert parse_wall("2024-05-01T12:00:00+00:00") == EPOCH_NS


@pytest.mark.parametrize("mask", [0x01, 0x20, 0x80])
def test_any_flipped_byte_of_a_record_is_reported_at_its_seq(tmp_path: Path, mask: int) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 10, fsync="never")
    lines = lines_of(path)
    start = sum(len(line) for line in lines[:5])
    original = path.read_bytes()
    for offset in range(start, start + len(lines[5])):
        damaged = bytearray(original)
        damaged[offset] ^= mask
        path.write_bytes(bytes(damaged))
        result = verify([path])
        where = f"byte {offset - start} of record 5 ({chr(original[offset])!r} ^ {mask:#x})"
        assert not result.ok, where
        assert result.first_bad_seq == 5, f"{where}: {result.problem}"
        assert result.records == 5


@pytest.mark.parametrize("victim", [0, 4, 8])
def test_a_deleted_record_breaks_the_chain_at_its_seq(tmp_path: Path, victim: int) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 10)
    lines = lines_of(path)
    del lines[victim]
    path.write_bytes(b"".join(lines))
    result = verify([path])
    assert not result.ok and result.first_bad_seq == victim
    assert result.problem is not None and "missing" in result.problem


def test_a_record_deleted_from_the_end_needs_the_anchored_head(tmp_path: Path) -> None:
    """A chain cannot see its own tail cut at a line boundary; the head kept elsewhere can."""
    path = tmp_path / "audit.jsonl"
    log = write(path, 10)
    path.write_bytes(b"".join(lines_of(path)[:-1]))
    result = verify([path])
    assert result.ok and result.records == 9
    assert result.head != log.head


def test_swapped_records_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 10)
    lines = lines_of(path)
    lines[3], lines[4] = lines[4], lines[3]
    path.write_bytes(b"".join(lines))
    result = verify([path])
    assert not result.ok and result.first_bad_seq == 3


@pytest.mark.parametrize("cut_in", [0, 4, 9])
def test_a_file_cut_mid_line_names_the_torn_record(tmp_path: Path, cut_in: int) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 10)
    lines = lines_of(path)
    start = sum(len(line) for line in lines[:cut_in])
    for cut in (1, len(lines[cut_in]) // 2, len(lines[cut_in]) - 1):
        path.write_bytes(b"".join(lines)[: start + cut])
        result = verify([path])
        assert not result.ok
        assert result.first_bad_seq == cut_in, result.problem  # last good seq + 1
        assert result.problem is not None and "cut" in result.problem


def test_schema_errors_are_reported_even_with_a_valid_hash(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 3)
    lines = lines_of(path)
    last = json.loads(lines[2])
    for change, words in (({"v": 2}, "v=2"), ({"kind": "warp"}, "'kind'")):
        record = {**last, **change}
        del record["hash"]
        canonical = json.dumps(record, separators=(",", ":"))
        record["hash"] = hashlib.sha256((record["prev"] + canonical).encode()).hexdigest()
        path.write_bytes(b"".join(lines[:2]) + json.dumps(record, separators=(",", ":")).encode() + b"\n")
        result = verify([path])
        assert not result.ok and result.first_bad_seq == 2
        assert result.problem is not None and words in result.problem
    missing = {k: v for k, v in last.items() if k != "detail"}
    path.write_bytes(b"".join(lines[:2]) + json.dumps(missing, separators=(",", ":")).encode() + b"\n")
    result = verify([path])
    assert result.first_bad_seq == 2 and result.problem is not None and "missing key 'detail'" in result.problem


# -- reopening ----------------------------------------------------------------------------------
def test_reopening_continues_seq_and_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = write(path, 5)
    with AuditLog(path, "verifier", clock=clock()) as log:
        assert log.next_seq == 5 and log.head == first.head
        assert add(log, 5) == 5
    assert [r["seq"] for r in read_records([path])] == list(range(6))
    assert json.loads(lines_of(path)[5])["prev"] == first.head
    assert verify([path]).ok and verify([path]).records == 6


def test_a_torn_log_refuses_to_append(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 5)
    intact = path.read_bytes()
    path.write_bytes(intact[:-20])
    with pytest.raises(AuditError, match=r"torn after seq 3") as caught:
        AuditLog(path, "verifier")
    assert str(path) in str(caught.value)
    assert path.read_bytes() == intact[:-20]  # nothing was appended

    path.write_bytes(intact[: len(lines_of(path)[0]) // 2])
    with pytest.raises(AuditError, match="torn in its first record"):
        AuditLog(path, "verifier")

    damaged = bytearray(intact)
    damaged[-10] ^= 0x01  # inside the last hash: the line is whole, the record is not
    path.write_bytes(bytes(damaged))
    with pytest.raises(AuditError, match=r"seq 4\) fails its hash"):
        AuditLog(path, "verifier")


def test_a_foreign_file_is_never_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("dear diary\n")
    with pytest.raises(AuditError, match="not an audit log"):
        AuditLog(path, "verifier")
    assert path.read_text() == "dear diary\n"


# -- rotation -------------------------------------------------------------------------------------
def test_rotation_keeps_one_chain_across_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 40, rotate_bytes=2_000)
    rotated = sorted(tmp_path.glob("audit.jsonl.*"), key=lambda p: int(p.suffix[1:]))
    assert len(rotated) >= 4
    files = [*rotated, path]
    prev = GENESIS
    seq = 0
    for file in files:
        lines = lines_of(file)
        if file != path:
            assert file.stat().st_size > 2_000 and file.stat().st_size - len(lines[-1]) <= 2_000
        for line in lines:
            record = json.loads(line)
            assert record["seq"] == seq and record["prev"] == prev
            prev, seq = record["hash"], seq + 1
    assert seq == 40

    shuffled = files[:]
    random.Random(7).shuffle(shuffled)
    result = verify(shuffled)
    assert result.ok and result.records == 40 and result.files == tuple(str(p) for p in files)
    assert [r["seq"] for r in read_records(reversed(files))] == list(range(40))

    result = verify(files[1:])  # the oldest file is gone
    assert not result.ok and result.first_bad_seq == 0


def test_rotation_then_reopen_continues_numbering_and_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 20, rotate_bytes=1_500)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("audit.jsonl.*")}
    assert path.exists()
    write(path, 20, start=20, rotate_bytes=1_500)
    after = {p.name: p.read_bytes() for p in tmp_path.glob("audit.jsonl.*")}
    assert all(after[name] == data for name, data in before.items())  # no rotated file was touched
    assert len(after) > len(before)
    result = verify([path, *tmp_path.glob("audit.jsonl.*")])
    assert result.ok and result.records == 40


def test_tampering_inside_a_rotated_file_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 30, rotate_bytes=2_000)
    second = tmp_path / "audit.jsonl.2"
    lines = lines_of(second)
    victim = json.loads(lines[1])["seq"]
    lines[1] = lines[1].replace(b'"owner":"kernel"', b'"owner":"tenant1"')
    second.write_bytes(b"".join(lines))
    result = verify(tmp_path.glob("audit.jsonl*"))
    assert not result.ok and result.first_bad_seq == victim
    assert result.problem is not None and "hash mismatch" in result.problem


# -- durability -------------------------------------------------------------------------------------
def test_every_fsync_policy_writes_the_same_bytes(tmp_path: Path) -> None:
    contents = set()
    for policy in ("always", "batch", "never"):
        path = tmp_path / f"{policy}.jsonl"
        write(path, 50, fsync=policy, max_pending=8)
        contents.add(path.read_bytes())
    assert len(contents) == 1


def test_always_is_on_disk_before_record_returns(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, "verifier", fsync="always", clock=clock()) as log:
        for i in range(3):
            seq = add(log, i)
            with path.open("rb") as other:  # another handle sees the whole record now
                assert json.loads(other.read().splitlines()[-1])["seq"] == seq
            assert log.acknowledged == seq and log.pending == 0


def test_batch_is_written_at_commit(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, "verifier", fsync="batch", clock=clock()) as log:
        for i in range(3):
            add(log, i)
        assert path.read_bytes() == b"" and log.pending == 3 and log.acknowledged == -1
        log.commit()
        assert len(lines_of(path)) == 3 and log.pending == 0 and log.acknowledged == 2
        add(log, 3)
        assert len(lines_of(path)) == 3
    assert len(lines_of(path)) == 4  # close() commits


def test_a_flood_without_commit_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    cap = 4096
    with AuditLog(path, "verifier", fsync="batch", clock=clock(), max_pending=cap, rotate_bytes=None) as log:
        most = 0
        for i in range(100_000):
            log.record(AuditRecord(
                tenant=1, tenant_name="mallory", nic="nic0", queue=0, kind="tx", ring_index=i & 511,
                raw=None, fields=None, reason="ADDR_NOT_PINNED", detail={},
            ))  # fmt: skip
            most = max(most, log.pending)
        assert cap // 2 < most <= cap  # the buffer is used, and never grows past the cap
        assert log.acknowledged == 100_000 - log.pending - 1
    assert verify([path]).records == 100_000


def test_same_clock_same_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write(a, 200, rotate_bytes=None)
    write(b, 200, rotate_bytes=None)
    assert a.read_bytes() == b.read_bytes()


def test_a_closed_log_refuses_records(tmp_path: Path) -> None:
    log = write(tmp_path / "audit.jsonl", 1)
    log.close()  # twice is fine
    with pytest.raises(AuditError, match="closed"):
        add(log, 1)


# -- counters and input checks -----------------------------------------------------------------------
def test_counters_and_statistics_per_queue(tmp_path: Path) -> None:
    log = write(tmp_path / "audit.jsonl", 16)
    assert sum(log.counters.values()) == 16
    assert log.counters[("nic0", 0, "ADDR_NOT_PINNED")] == 4
    assert log.statistics("nic0", 0) == {"ADDR_NOT_PINNED": 4, "RANGE_WRAPS": 4}
    assert log.statistics("nic0", 1) == {"LEN_ZERO": 4, "NOT_DEVICE_READABLE": 4}
    assert log.statistics("nic9", 0) == {}
    # the per-queue total the fuzzer's oracle reads is the statistics' sum, kept as a count (and TX apart from RX)
    assert log.statistics("nic0", 1, "tx") == log.statistics("nic0", 1) and log.records_of("nic0", 1, "tx") == 8
    assert log.records_of("nic0", 1, "rx") == 0 and log.records_of("nic9", 0, "tx") == 0
    memory = MemoryAudit()
    for i in range(16):
        add(memory, i)  # the same stream in memory
    assert memory.records_of("nic0", 0, "tx") == 8 and memory.statistics("nic0", 0, "tx") == log.statistics("nic0", 0)

    with AuditLog(tmp_path / "reg.jsonl", "verifier", clock=clock()) as reg:
        reg.record(AuditRecord(
            tenant=3, tenant_name="mallory", nic="nic0", queue=None, kind="register", ring_index=None,
            raw=None, fields=None, reason="REGISTER_NOT_DOORBELL", detail={"register": "TDBAL", "offset": 0x3800},
        ))  # fmt: skip
        assert reg.statistics("nic0", None) == {"REGISTER_NOT_DOORBELL": 1}
    record = next(read_records([tmp_path / "reg.jsonl"]))
    assert record["queue"] is None and record["desc"] is None and record["desc_hex"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "disk"}, "kind"),
        ({"reason": "bad address"}, "reason"),
        ({"raw": b"\x00" * 15}, "16 bytes"),
    ],
)
def test_bad_records_are_refused(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "tenant": 1, "tenant_name": "alice", "nic": "nic0", "queue": 0, "kind": "tx", "ring_index": 0,
        "raw": None, "fields": None, "reason": "LEN_ZERO", "detail": {},
    }  # fmt: skip
    with AuditLog(tmp_path / "audit.jsonl", "verifier") as log:
        with pytest.raises(ValueError, match=message):
            log.record(AuditRecord(**{**args, **change}))
        assert log.next_seq == 0


def test_numpy_values_are_stored_as_plain_json(tmp_path: Path) -> None:
    desc = np.zeros(1, dtype=TX_DESC)
    desc["addr"] = 2**63 + 5
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, "verifier", clock=clock()) as log:
        log.record(AuditRecord(
            tenant=np.int64(1), tenant_name="alice", nic="nic0", queue=np.uint8(0), kind="tx",  # type: ignore[arg-type]
            ring_index=np.uint32(7),  # type: ignore[arg-type]
            raw=desc.tobytes(), fields={"addr": desc["addr"][0]}, reason="RANGE_WRAPS",
            detail={"ok": np.bool_(False), "end": np.uint64(2**64 - 1)},
        ))  # fmt: skip
    record = next(read_records([path]))
    assert record["desc"] == {"addr": 2**63 + 5} and record["ring_index"] == 7
    assert record["detail"] == {"ok": False, "end": 2**64 - 1}
    assert verify([path]).ok


# -- foreign input ---------------------------------------------------------------------------------------
FOREIGN = {
    "pcap": bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000") + bytes(range(256)),
    "random": random.Random(1).randbytes(3000),
    "text": b"GET / HTTP/1.1\nHost: example\n\n",
    "other json lines": b'{"level":"info","msg":"hello"}\n{"level":"warn"}\n',
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_foreign_input_is_a_format_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "input"
    path.write_bytes(FOREIGN[kind])
    with pytest.raises(AuditFormatError, match="not an audit log") as caught:
        verify([path])
    assert len(str(caught.value).splitlines()) == 1
    with pytest.raises(AuditFormatError):
        list(read_records([path]))


def test_read_records_stops_at_damage(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 5)
    lines = lines_of(path)
    for offset, words in ((0, "not canonical JSON"), (10, "missing key 'seq'")):
        damaged = [*lines]
        damaged[3] = lines[3][:offset] + b"#" + lines[3][offset + 1 :]
        path.write_bytes(b"".join(damaged))
        seen: list[int] = []
        with pytest.raises(AuditError, match=f"audit.jsonl:4: damaged record after seq 2 .*{words}"):
            seen.extend(r["seq"] for r in read_records([path]))
        assert seen == [0, 1, 2]
