"""The writer's compiled chain (encode.c ``enc_chain``, ``enc_template_chain``, ``enc_checkpoint``,
verifier/audit/chaining.py) against Python's, for both schemas.

Python's chain (``AuditLog._chain``: hashlib per record, the clock stamps formatted by ``format_wall``; v2's
``checkpoint_line`` and ``_stamps``) is the semantics.  Each test writes the same batches three ways -- the
compiled chain, the compiled formatter without libcrypto (opened under a name that is not there: what a machine
without OpenSSL 3 gets), and ``NIC_SANDBOX_FASTPATH=0`` -- with a deterministic clock, and compares every file
the log leaves and its head.
The batches take every shape the templates, the columns and the row-by-row path take; the pending limits,
rotations and group commits cut them at every record boundary; the clocks give walls across seconds, days,
leap years and the range's ends, and readings C does not take.  The default clock, which C reads itself, is
checked against the time around the write.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ring.compiled import SWITCH
from tests.needs import missing
from tests.verifier.compiled import compiled_accelerator, forget_accelerators
from tests.verifier.test_audit import clock
from tests.verifier.test_audit_encoders import random_batch
from verifier.audit import chaining, encode, libcrypto, programs
from verifier.audit.durability import GroupCommit
from verifier.audit.line_buffer import LineBuffer
from verifier.audit.log import AuditLog, checkpoint_line, clock_of, format_wall
from verifier.audit.read import parse_wall, read_records, verify
from verifier.audit.record import AuditRecord
from verifier.audit.rejection_batch import RecordRows, RejectionBatch

MODES = ("compiled", "no libcrypto", "python")
#: The protections a log names (its envelope, escaped once per writer), plain and hostile.
PROTECTIONS = ("verifier", 'verifier "\u00e9"', "iommu", "none\\\u2028\x7f")
real_digest = libcrypto.digest


@dataclasses.dataclass(frozen=True)
class RowByRow(RejectionBatch):
    """A batch of a type the templates and columns do not take: the row-by-row path (``record_tail`` per row)."""


def batches(seed: int, count: int = 10) -> list[RecordRows | AuditRecord]:
    """Random batches of every shape, a row-by-row one and single records among them."""
    rng = np.random.default_rng(seed)
    out: list[RecordRows | AuditRecord] = []
    for k in range(count):
        rows = random_batch(rng)
        if k % 4 == 1 and type(rows) is RejectionBatch:
            rows = RowByRow(**{f.name: getattr(rows, f.name) for f in dataclasses.fields(rows)})
        out.append(rows)
        if k % 3 == 2:
            out.append(next(iter(rows.records())))
    return out


def edge_clock() -> Callable[[], tuple[int, int]]:
    """Walls at the ends of seconds, days, months and years (leap and not, 2000 and 2100), the epoch and the last
    nanosecond an int64 holds; monotonic readings of every sign and size C takes."""
    walls = [
        0, 999_999_999, 1_000_000_000, 946_684_799_999_999_999, 946_684_800_000_000_000,  # 2000-01-01
        951_782_400_123_456_789, 951_868_799_000_000_001,  # 2000-02-29
        4_107_542_399_999_999_999, 4_107_542_400_000_000_000,  # 2100-02-28 / 03-01
        1_700_000_000_000_000_000, 2**63 - 1, 86_399_999_999_999, 31_535_999_999_999_999,
    ]  # fmt: skip
    monos = [0, 1, -1, 10**15, 2**63 - 1, -(2**63), 5_000_000]
    ticks = iter(range(10**9))

    def read() -> tuple[int, int]:
        k = next(ticks)
        return walls[k % len(walls)], monos[k % len(monos)]

    return read


def hostile_clock() -> Callable[[], tuple[int, int]]:
    """Now and then a wall before 1970 or a monotonic reading past 64 bits: batches C refuses, Python writes."""
    ticks = iter(range(10**9))

    def read() -> tuple[int, int]:
        k = next(ticks)
        wall = -1_500_000_000 if k % 53 == 7 else 1_700_000_000_000_000_000 + k * 7_000_000
        return wall, 2**70 + k if k % 97 == 11 else k

    return read


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    def switch(mode: str) -> None:
        forget_accelerators()
        monkeypatch.setenv(SWITCH, "0" if mode == "python" else "1")
        monkeypatch.setattr(libcrypto, "digest", real_digest)
        if mode == "no libcrypto":
            monkeypatch.setattr(libcrypto, "digest", lambda: real_digest("libcrypto-not-here.so.0"))
        if mode != "python":
            fast = compiled_accelerator(encode.enabled(), encode.status())
            if mode == "compiled" and real_digest() is None:
                missing(f"{libcrypto.LIBRARY} cannot be opened: the v1 writer chains in Python")
            assert (chaining.chainer(fast) is None) == (mode == "no libcrypto")

    yield switch
    forget_accelerators()


def write(
    path: Path, items: list[RecordRows | AuditRecord], protection: str, **settings: Any
) -> tuple[dict[str, bytes], str]:
    """Every file the log leaves in its folder, and its head."""
    path.parent.mkdir()
    with AuditLog(path, protection, **settings) as log:
        for k, item in enumerate(items):
            if isinstance(item, AuditRecord):
                log.record(item)
            else:
                assert log.record_batch(item) == range(log.next_seq - len(item), log.next_seq)
            if k % 3 == 1:
                log.commit()
    files = {p.name: p.read_bytes() for p in sorted(path.parent.iterdir()) if not p.name.startswith(".")}
    return files, log.head


def three_ways(
    tmp_path: Path,
    use: Callable[[str], None],
    items: list[RecordRows | AuditRecord],
    clocks: Callable[[], Any],
    protection: str = 'verifier "\u00e9"',
    schema: int = 1,
    **settings: Any,
) -> dict[str, bytes]:
    """The files the log leaves, written the three ways: all the same, heads too."""
    written = []
    for mode in MODES:
        use(mode)
        folder = tmp_path / f"{mode.replace(' ', '-')}-v{schema}"
        written.append(write(folder / "log", items, protection, clock=clocks(), schema=schema, **settings))
    assert written[0] == written[1] == written[2]
    return written[0][0]


SCHEMAS = pytest.mark.parametrize("schema", [1, 2], ids=["v1", "v2"])


@SCHEMAS
@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_chain_writes_what_python_writes(
    tmp_path: Path, use: Callable[[str], None], seed: int, schema: int
) -> None:
    protection = PROTECTIONS[seed % len(PROTECTIONS)]
    files = three_ways(
        tmp_path, use, batches(seed), lambda: clock(300_000_000), protection, schema, fsync="never", max_bytes=None
    )
    assert verify([tmp_path / f"compiled-v{schema}" / "log"]).ok and len(files) == 1


@pytest.mark.parametrize(
    "settings",
    [
        {"fsync": "never", "max_pending": 1},
        {"fsync": "never", "max_pending": 7},
        {"fsync": "always"},
        {"fsync": "batch", "group": GroupCommit(records=5, interval_ms=60_000)},
        {"fsync": "never", "rotate_bytes": 3_000, "max_bytes": None},
        {"fsync": "never", "rotate_bytes": 2_000, "max_bytes": 9_000, "max_pending": 3},
    ],
    ids=["pending-1", "pending-7", "always", "group-5", "rotated", "pruned"],
)
@SCHEMAS
def test_limits_and_rotations_cut_the_compiled_chain_where_they_cut_python(
    tmp_path: Path, use: Callable[[str], None], settings: dict[str, Any], schema: int
) -> None:
    files = three_ways(tmp_path, use, batches(7, 8), lambda: clock(1_000), schema=schema, **settings)
    if "rotate_bytes" in settings:
        assert len(files) > 2


@SCHEMAS
@pytest.mark.parametrize("clocks", [edge_clock, hostile_clock], ids=["edges", "hostile"])
def test_every_clock_reading_is_stamped_as_python_stamps_it(
    tmp_path: Path, use: Callable[[str], None], clocks: Callable[[], Any], schema: int
) -> None:
    three_ways(tmp_path, use, batches(3, 12), clocks, schema=schema, fsync="never", max_bytes=None)


def test_the_system_clock_read_in_c_stamps_the_time_of_the_write(tmp_path: Path, use: Callable[[str], None]) -> None:
    """The default clock, read by C per record: each stamp is the canonical form of a time between the readings
    taken around the write, both clocks never go back, and verify reads a wall clock's log."""
    use("compiled")
    items = [b for b in batches(5) if not isinstance(b, AuditRecord)]
    path = tmp_path / "log"
    wall_before, mono_before = time.time_ns(), time.monotonic_ns()
    with AuditLog(path, "verifier", fsync="never", max_bytes=None) as log:
        for rows in items:
            log.record_batch(rows)
        head = log.head
    wall_after, mono_after = time.time_ns(), time.monotonic_ns()
    records = list(read_records([path]))
    assert len(records) == sum(map(len, items)) > 100
    walls = [parse_wall(r["wall"]) for r in records]
    monos = [r["mono_ns"] for r in records]
    assert all(format_wall(w) == r["wall"] for w, r in zip(walls, records, strict=True))
    assert {clock_of(r["wall"], r["mono_ns"]) for r in records} == {"wall"}
    assert wall_before <= walls[0] and walls[-1] <= wall_after
    assert mono_before <= monos[0] and monos == sorted(monos) and monos[-1] <= mono_after
    result = verify([path])
    assert result.ok and result.head == head


def test_enc_chain_refuses_what_it_cannot_write(use: Callable[[str], None]) -> None:
    """Too few tails, too little room, a wall before 1970: a refusal, the hash it was given left as it was."""
    use("compiled")
    linker = chaining.chainer(encode.enabled())
    assert linker is not None
    lead, prev = b'{"v":1,"seq":', "0" * 64
    stamps = np.array([[1_700_000_000_000_000_000, 5]], dtype=np.int64)
    out = LineBuffer()
    assert linker.chain(b',"x":1,"prev":"\n', 2, lead, 0, np.repeat(stamps, 2, axis=0), prev, out) is None
    assert linker.chain(b',"x":1,"prev":"', 1, lead, 0, stamps, prev, out) is None  # no newline: no whole tail
    assert linker.chain(b',"x":1,"prev":"\n', 1, lead, 0, -stamps, prev, out) is None
    assert linker.chain(b',"x":1,"prev":"\n', 1, lead, 0, stamps.astype(np.int32), prev, out) is None
    done = linker.chain(b',"x":1,"prev":"\n', 1, lead, 41, stamps, prev, out)
    assert done is not None
    written, head, ends = done
    line = out.room(0)[:written].tobytes()
    assert ends.tolist() == [written] and line.startswith(b'{"v":1,"seq":41,"wall":"2023-11-14T22:13:20.000000000Z"')
    assert line.endswith(b',"x":1,"prev":"' + prev.encode() + b'","hash":"' + head.encode() + b'"}\n')
    fast = encode.enabled()
    assert fast is not None
    room = np.zeros(64, dtype=np.uint8)
    given = bytearray(prev.encode())
    tails = b',"x":1,"prev":"\n'
    sha = real_digest()
    assert sha is not None
    handed = libcrypto.arguments(sha, fast.ffi, "struct enc_sha256")
    assert handed is not None
    refused = fast.lib.enc_chain(
        tails, len(tails), 1, lead, len(lead), 0, fast.ffi.NULL, fast.ffi.from_buffer(given), handed[0],
        fast.ffi.from_buffer(room), len(room), fast.ffi.NULL,
    )  # fmt: skip
    assert refused == -1 and given == prev.encode() and not room.any()  # ENC_ERR_ROOM before a byte is written


def test_the_one_pass_calls_refuse_what_they_cannot_write(use: Callable[[str], None]) -> None:
    """``enc_checkpoint``: a checkpoint without its room is refused, the hash it was given left as it was; one that
    fits is ``checkpoint_line``'s bytes.  ``enc_template_chain``: a template with its own lead (v2's) is not its
    shape, and too little room is refused before a byte is written; readings it does not take go back to Python."""
    use("compiled")
    fast = encode.enabled()
    linker = chaining.chainer(fast)
    assert fast is not None and linker is not None
    prev = "ab" * 32
    held = LineBuffer()
    held.append(b'{"v":2,"seq":7}\n')
    assert linker.checkpoint(held, -1, 1, prev) is None and linker.checkpoint(held, 7, 0, prev) is None
    assert linker.checkpoint(held, 7, 1, prev[:-1]) is None and len(held) == 16
    sha = real_digest()
    assert sha is not None
    handed = libcrypto.arguments(sha, fast.ffi, "struct enc_sha256")
    assert handed is not None
    given = bytearray(prev.encode())
    room = np.zeros(16 + chaining.CHECKPOINT_MAX - 1, dtype=np.uint8)
    room[:16] = np.frombuffer(b'{"v":2,"seq":7}\n', dtype=np.uint8)
    refused = fast.lib.enc_checkpoint(fast.ffi.from_buffer(room), 16, len(room), 7, 1, fast.ffi.from_buffer(given),
                                      handed[0])  # fmt: skip
    assert refused == -1 and given == prev.encode() and not room[16:].any()  # ENC_ERR_ROOM
    for last, records in ((7, 1), (2**63 - 1, 2**63 - 1), (0, 1)):
        line, digest = checkpoint_line(prev, held.view(), last, records)
        copy = LineBuffer()
        copy.append(held.tail(0))
        assert linker.checkpoint(copy, last, records, prev) == digest
        assert copy.tail(16) == line
    rows = next(b for b in batches(1) if type(b) is RejectionBatch)
    n = len(rows)
    out = LineBuffer()
    lead, end = b'{"v":1,"seq":', b',"protection":"verifier","prev":"'
    readings = np.array([[1_700_000_000_000_000_000, k] for k in range(n)], dtype=np.int64)
    owners = frozenset(np.unique(rows.owner).tolist())
    v2 = programs._build(fast.ffi, b'{"v":2,"seq":', b"}\n", rows, programs._place(rows), b"", owners)
    assert linker.chain_rejections(v2, rows, lead, 0, readings, prev, out) == encode.ERR_SHAPE
    v1 = programs._build(fast.ffi, None, end, rows, programs._place(rows), b"", owners)
    assert linker.chain_rejections(v1, rows, lead, 0, readings[:-1], prev, out) == encode.ERR_SHAPE
    assert linker.chain_rejections(v1, rows, lead, 0, -readings, prev, out) == fast.lib.ENC_ERR_CLOCK
    written = linker.chain_rejections(v1, rows, lead, 5, readings, prev, out)
    assert written > 0
    _, head, ends = linker.result(written, n)
    lines = out.room(0)[:written].tobytes().splitlines(keepends=True)
    assert len(lines) == n and ends.tolist() == list(itertools.accumulate(map(len, lines)))
    assert lines[0].startswith(b'{"v":1,"seq":5,"wall":"2023-11-14T22:13:20.000000000Z","mono_ns":0,"tenant":')
    assert lines[-1].endswith(b'","hash":"' + head.encode() + b'"}\n')
    given = bytearray(prev.encode())
    room = np.zeros(written - 1, dtype=np.uint8)
    refused = fast.lib.enc_template_chain(
        v1.specs, v1.columns, *[fast.ffi.from_buffer(a) for a in (rows.descs, rows.ring_index, rows.reason,
        rows.bad_byte, rows.owner)], lead, len(lead), 5, n, fast.ffi.from_buffer("int64_t[]", readings),
        fast.ffi.from_buffer(given), handed[0], fast.ffi.from_buffer(room), len(room), linker._ends_at,
    )  # fmt: skip
    assert refused == -1 and given == prev.encode()  # ENC_ERR_ROOM: the chain not moved on
