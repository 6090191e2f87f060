"""The compiled line check (verifier/audit/check.c) against the reference: it may say "not sure", never "OK" where
the reference refuses.

The reference for a run of lines: each line is canonical JSON (``parse_line``), a record of the schema
(``schema_problem``), and holds the next seq.  The check is asked the same of the same bytes; whenever it says OK
the reference must agree -- on the writer's own lines, on random records, on every field out of range or of the
wrong type, on non-canonical forms (escapes, whitespace, key order, floats, big integers), and on every byte of a
sample of lines deleted, replaced or inserted.  It must also say OK on the writer's lines (else it checks
nothing), and ``verify`` must give the same results with it and without it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import verifier.audit.read as read
from measure.refusals import doorbell_batch
from tests.verifier.compiled import compiled_accelerator
from tests.verifier.test_audit_v2 import write
from tests.verifier.test_audit_verify_fast import HOSTILE, TAMPERINGS, reference
from tests.verifier.test_audit_verify_pass import big_log
from verifier.audit import check, read_v2
from verifier.audit.log import (
    CHECKPOINT_START,
    FIELDS,
    SCHEMA_V2,
    SCHEMA_VERSION,
    AuditError,
    AuditLog,
    is_checkpoint,
    parse_line,
)
from verifier.audit.read import read_records, schema_problem, verify

#: Bytes tried at every position of a sampled line: structure, escapes, digits, number forms, control and non-ASCII.
PROBES = b' "\\0159af,:{}[]\n\r\t\x00\x1f\x7f\xc3\xff-+.eEZTAz_'


@pytest.fixture(autouse=True)
def compiled() -> None:
    compiled_accelerator(check.enabled(), check.status())


def reference_ok(lines: list[bytes], expected: int, schema: int) -> bool:
    """Every line canonical, of ``schema``, seqs ``expected`` on: what ``verify``'s reference walk accepts."""
    for seq, line in enumerate(lines, expected):
        record = parse_line(line) if line.endswith(b"\n") else None
        if record is None or schema_problem(record, schema) is not None or record["seq"] != seq:
            return False
    return True


def check_ok(lines: list[bytes], expected: int, schema: int) -> bool:
    return check.lines_ok(b"".join(lines), len(lines), expected, schema, read._wall_ok)


def assert_sound(lines: list[bytes], expected: int, schema: int) -> bool:
    """The check's answer, having asserted that an OK is the reference's too."""
    ok = check_ok(lines, expected, schema)
    if ok:
        assert reference_ok(lines, expected, schema), lines
    return ok


def record_lines(path: Path) -> list[bytes]:
    """The record lines of a log (v2 checkpoints left out)."""
    return [line for line in path.read_bytes().splitlines(keepends=True) if not line.startswith(CHECKPOINT_START)]


@pytest.fixture(scope="module")
def v2_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Lines of every kind the writer writes: a doorbell's TX refusals, IOMMU faults, a register write."""
    folder = tmp_path_factory.mktemp("v2")
    write(folder / "mixed.jsonl", 3)
    with AuditLog(folder / "doorbell.jsonl", "verifier", fsync="never", schema=SCHEMA_V2) as log:
        log.record_batch(doorbell_batch(64))
        log.commit()
    return record_lines(folder / "mixed.jsonl") + renumber(record_lines(folder / "doorbell.jsonl"), 3 * 14)


@pytest.fixture(scope="module")
def v1_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    path = tmp_path_factory.mktemp("v1") / "mixed.jsonl"
    write(path, 3, schema=SCHEMA_VERSION)
    return record_lines(path)


def renumber(lines: list[bytes], first: int) -> list[bytes]:
    """The lines with seqs from ``first`` on (canonical still: only the integer changes)."""
    out = []
    for seq, line in enumerate(lines, first):
        record = json.loads(line)
        record["seq"] = seq
        out.append(encode(record))
    return out


def encode(record: dict[str, Any]) -> bytes:
    """A record as the writer's canonical form writes it (verifier/audit/lines.py: ``json.dumps``, ASCII)."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


def test_the_writers_lines_pass_both(v2_lines: list[bytes], v1_lines: list[bytes]) -> None:
    assert reference_ok(v2_lines, 0, SCHEMA_V2) and check_ok(v2_lines, 0, SCHEMA_V2)
    assert reference_ok(v1_lines, 0, SCHEMA_VERSION) and check_ok(v1_lines, 0, SCHEMA_VERSION)
    assert {json.loads(line)["kind"] for line in v2_lines} == {"tx", "iommu", "register"}


def test_seqs_schema_and_line_count_must_be_as_asked(v2_lines: list[bytes]) -> None:
    raw = b"".join(v2_lines[:10])
    assert check.lines_ok(raw, 10, 0, SCHEMA_V2, read._wall_ok)
    assert not check.lines_ok(raw, 10, 1, SCHEMA_V2, read._wall_ok)  # seqs from another start
    assert not check.lines_ok(raw, 9, 0, SCHEMA_V2, read._wall_ok)  # a line more than said
    assert not check.lines_ok(raw, 11, 0, SCHEMA_V2, read._wall_ok)
    assert not check.lines_ok(raw, 10, 0, SCHEMA_VERSION, read._wall_ok)  # v2 lines are not v1 records
    assert not check.lines_ok(raw[:-1], 10, 0, SCHEMA_V2, read._wall_ok)  # torn
    assert not check.lines_ok(b"".join([v2_lines[0], v2_lines[2]]), 2, 0, SCHEMA_V2, read._wall_ok)  # a gap
    assert not check.lines_ok(raw, 10, 0, SCHEMA_V2, lambda wall: False)  # the reference's say on `wall` counts
    assert not check.lines_ok(b"", 0, 0, SCHEMA_V2, read._wall_ok)
    for hostile in (-1, 2**63, 2**64, 10**30):  # a first seq read from a hostile line: not sure, no exception
        assert not check.lines_ok(raw, 10, hostile, SCHEMA_V2, read._wall_ok)


def test_a_v2_log_starting_at_a_huge_seq_reads_as_the_reference_says(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 1)
    path.write_bytes(path.read_bytes().replace(b'"seq":0,', b'"seq":%d,' % 10**30, 1))
    with pytest.raises(AuditError, match="damaged record"):
        list(read_records([path]))


def edits(line: bytes) -> Iterator[bytes]:
    """Every byte of ``line`` deleted, replaced by each probe, and each probe inserted before it."""
    for i in range(len(line)):
        yield line[:i] + line[i + 1 :]
        for probe in PROBES:
            yield line[:i] + bytes([probe]) + line[i + 1 :]
            yield line[:i] + bytes([probe]) + line[i:]


@pytest.mark.parametrize("schema", [SCHEMA_V2, SCHEMA_VERSION])
def test_every_byte_edit_of_sampled_lines_is_never_wrongly_ok(
    schema: int, v2_lines: list[bytes], v1_lines: list[bytes]
) -> None:
    lines = v2_lines if schema == SCHEMA_V2 else v1_lines
    kinds: dict[str, int] = {}
    for index, line in enumerate(lines):
        kinds.setdefault(json.loads(line)["kind"], index)
    accepted = tried = 0
    for index in kinds.values():
        seq = json.loads(lines[index])["seq"]
        for edited in edits(lines[index]):
            tried += 1
            accepted += assert_sound([edited], seq, schema)
    assert tried > 10_000 and accepted > 100  # edits inside strings stay records: the check took some


Edit = Callable[[dict[str, Any]], dict[str, Any] | bytes]


def setting(name: str, value: Any) -> Edit:
    return lambda r: {**r, name: value}


def in_dict(name: str, value: Any) -> Edit:
    return lambda r: {**r, name: {**(r[name] or {}), "note": value}}


def dropping(name: str) -> Edit:
    return lambda r: {k: v for k, v in r.items() if k != name}


def moving_last(name: str) -> Edit:
    return lambda r: {**{k: v for k, v in r.items() if k != name}, name: r.get(name)}


def retyping(name: str) -> Edit:
    return lambda r: {**r, name: 1.5 if isinstance(r.get(name), str) else "x"}


def replacing(old: bytes, new: bytes, **record: Any) -> Edit:
    """The canonical line (with ``record``'s values set first) with ``old`` replaced by ``new`` once."""
    return lambda r: encode({**r, **record}).replace(old, new, 1)


def field_edits() -> dict[str, Edit]:
    """Record edits: a new record (written canonically) or the line's new bytes."""
    edits: dict[str, Edit] = {}
    bounds = {"seq": (0, 2**63 - 1), "mono_ns": (0, 2**64 - 1), "tenant": (-1, 2**32 - 1)}
    bounds |= {"queue": (0, 2**32 - 1), "ring_index": (0, 2**32 - 1)}
    wrong: list[Any] = [2**64, -(2**63) - 1, 10**30, -(10**30), 1.0, 1e3, True, "1", None, [1], {}]
    for name, (low, high) in bounds.items():
        for value in [low - 1, high + 1, *wrong]:
            edits[f"{name}={value!r}"] = setting(name, value)
    for name in FIELDS:
        edits[f"{name} dropped"] = dropping(name)
        edits[f"{name} moved last"] = moving_last(name)
        edits[f"{name} wrong type"] = retyping(name)
    edits["unknown key"] = setting("extra", 1)
    edits["unknown key first"] = lambda r: {"extra": 1, **r}
    scalars: list[Any] = [
        1.5, 2**63, 2**64, 10**30, -(2**63), -(2**63) - 1, [1], {"a": 1}, "\x7f", "\u00e9", "\U0001f600", "\ud800",
        "tab\there", 'quote"back\\slash', "\x00\x1f", "\u2028", True, None, "",
    ]  # fmt: skip
    for value in scalars:
        edits[f"detail value {value!r}"] = in_dict("detail", value)
        edits[f"desc value {value!r}"] = in_dict("desc", value)
    for text in ("", "\x7f", "x" * 300, "\u00e9", "\U0001f600", "\ud83d", "a\nb"):
        for name in ("tenant_name", "protection", "nic"):
            edits[f"{name} {text!r}"] = setting(name, text)
    edits["detail empty"] = setting("detail", {})
    edits["desc null"] = setting("desc", None)
    edits["detail null"] = setting("detail", None)
    edits["detail a list"] = setting("detail", [1])
    edits["detail 40 keys"] = setting("detail", {f"k{i}": i for i in range(40)})
    for reason in ("", "A", "a", "A" * 64, "A" * 65, "ABC\n", "1ABC", "A-B", "A B", "\u00c9"):
        edits[f"reason {reason!r}"] = setting("reason", reason)
    for kind in ("tx", "rx", "register", "iommu", "pin", "TX", "txx", "", "t"):
        edits[f"kind {kind!r}"] = setting("kind", kind)
    for hexes in ("0" * 32, "0" * 31, "0" * 33, "A" * 32, "g" * 32, "0" * 64):
        edits[f"desc_hex {hexes!r}"] = setting("desc_hex", hexes)
    for wall in (
        "2026-12-07T13:12:52.569938495Z", "2026-13-07T13:12:52.569938495Z", "2023-02-30T00:00:00.000000000Z",
        "1969-12-31T23:59:59.000000000Z", "2026-12-07T13:12:52.569Z", "2026-12-07T13:12:52.569938495+00:00",
        "2026-12-07T13:12:52Z", "2026-12-07T24:00:00.000000000Z", "2026-12-07 13:12:52.569938495Z",
        "2026-12-07T13:12:60.000000000Z", "\uff12026-12-07T13:12:52.569938495Z",
    ):  # fmt: skip
        edits[f"wall {wall!r}"] = setting("wall", wall)
    edits["v true"] = setting("v", True)
    edits["v 3"] = setting("v", 3)
    edits["v '2'"] = lambda r: {**r, "v": str(r["v"])}
    edits["spaces"] = lambda r: json.dumps(r).encode() + b"\n"
    edits["sorted keys"] = lambda r: json.dumps(r, separators=(",", ":"), sort_keys=True).encode() + b"\n"
    edits["raw UTF-8"] = lambda r: json.dumps(
        {**r, "tenant_name": "é"}, separators=(",", ":"), ensure_ascii=False
    ).encode()
    edits["escaped slash"] = replacing(b'"verifier"', b'"veri\\/fier"')
    edits["u-escaped letter"] = replacing(b'"verifier"', b'"v\\u0065rifier"')
    edits["upper-case u-escape"] = replacing(b"\\u00e9", b"\\u00E9", tenant_name="\u00e9")
    edits["u-escaped newline"] = replacing(b"\\n", b"\\u000a", tenant_name="\n")
    edits["-0"] = replacing(b'"queue":0', b'"queue":-0', queue=0)
    edits["leading zero"] = replacing(b'"queue":7', b'"queue":07', queue=7)
    edits["1.0 in desc"] = replacing(b'"cso":0', b'"cso":0.0')
    edits["exponent"] = replacing(b'"queue":1', b'"queue":1e0', queue=1)
    edits["duplicate key"] = replacing(b'"nic":', b'"nic":"x","nic":')
    edits["duplicate detail key"] = replacing(b'"detail":{', b'"detail":{"rule":"x",')
    edits["NaN in detail"] = replacing(b'"detail":{', b'"detail":{"x":NaN,')
    edits["trailing space"] = lambda r: encode(r)[:-1] + b" \n"
    edits["CRLF"] = lambda r: encode(r)[:-1] + b"\r\n"
    edits["two records"] = lambda r: encode(r)[:-1] + encode(r)
    return edits


FIELD_EDITS = field_edits()


@pytest.mark.parametrize("schema", [SCHEMA_V2, SCHEMA_VERSION])
def test_every_field_edit_is_never_wrongly_ok(schema: int, v2_lines: list[bytes], v1_lines: list[bytes]) -> None:
    lines = v2_lines if schema == SCHEMA_V2 else v1_lines
    samples: dict[str, bytes] = {}
    for line in lines:
        samples.setdefault(json.loads(line)["kind"], line)
    agree = 0
    for edit in FIELD_EDITS.values():
        for line in samples.values():
            record = json.loads(line)
            changed = edit(dict(record))
            edited = changed if isinstance(changed, bytes) else encode(changed)
            edited = edited if edited.endswith(b"\n") else edited + b"\n"
            agree += assert_sound([edited], record["seq"], schema) == reference_ok([edited], record["seq"], schema)
    # "not sure" stays the exception: floats, integers past 64 bits, nested values, surrogates, more than
    # CHK_MAX_KEYS keys, a reason the reference's `$` lets end in a newline, `wall` forms the writer never writes
    assert agree > 0.85 * len(FIELD_EDITS) * len(samples)


@pytest.mark.parametrize(
    "value",
    ["\x7f", "\u00e9", "\x00\x1f", "tab\there", 'quote"back\\slash', "\u2028", "", 2**64 - 1, -(2**63), None],
)
def test_escapes_and_edges_the_writer_may_write_pass(value: Any, v2_lines: list[bytes]) -> None:
    """Not vacuous: what json.dumps writes for any non-surrogate string, and 64-bit integers, are OK."""
    record = json.loads(v2_lines[0])
    record["detail"] = {**record["detail"], "note": value}
    record["tenant_name"] = value if isinstance(value, str) else "t"
    record.update(tenant=-1, mono_ns=2**64 - 1, queue=2**32 - 1, ring_index=None, reason="A" * 64)
    line = encode(record)
    assert reference_ok([line], record["seq"], SCHEMA_V2) and check_ok([line], record["seq"], SCHEMA_V2)


def random_string(rng: random.Random) -> str:
    pool = "abcXYZ019 _-/:\"\\'\n\t\x00\x1f\x7f\u00e9\u2028\uffff"
    return "".join(rng.choice(pool) for _ in range(rng.randrange(0, 12)))


def random_scalar(rng: random.Random) -> Any:
    return rng.choice([rng.randrange(-(2**63), 2**64), rng.randrange(0, 1000), random_string(rng), True, False, None])


def random_record(rng: random.Random, seq: int, schema: int) -> dict[str, Any]:
    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.3 else value

    record = {
        "v": schema,
        "seq": seq,
        "wall": f"20{rng.randrange(0, 99):02d}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T"
        f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(10**9):09d}Z",
        "mono_ns": rng.choice([0, 2**64 - 1, rng.randrange(2**64)]),
        "tenant": rng.choice([-1, 0, 2**32 - 1, rng.randrange(2**32)]),
        "tenant_name": random_string(rng),
        "nic": maybe(random_string(rng)),
        "queue": maybe(rng.randrange(2**32)),
        "kind": rng.choice(["tx", "rx", "register", "iommu", "pin"]),
        "ring_index": maybe(rng.randrange(2**32)),
        "desc_hex": maybe(rng.randbytes(16).hex()),
        "desc": maybe({random_string(rng): random_scalar(rng) for _ in range(rng.randrange(0, 8))}),
        "reason": rng.choice("ABCXYZ") + "".join(rng.choice("ABZ09_") for _ in range(rng.randrange(0, 63))),
        "detail": {random_string(rng): random_scalar(rng) for _ in range(rng.randrange(0, 8))},
        "protection": random_string(rng),
    }
    if schema == SCHEMA_VERSION:
        record |= {"prev": rng.randbytes(32).hex(), "hash": rng.randbytes(32).hex()}
    return record


@pytest.mark.parametrize("schema", [SCHEMA_V2, SCHEMA_VERSION])
def test_random_records_pass_both_and_their_batches_too(schema: int) -> None:
    rng = random.Random(12)
    for batch in range(200):
        first = rng.randrange(2**62)
        lines = [encode(random_record(rng, seq, schema)) for seq in range(first, first + rng.randrange(1, 20))]
        assert reference_ok(lines, first, schema), batch
        assert check_ok(lines, first, schema), (batch, lines)  # no surrogates, integers of 64 bits: all OK
        cut = rng.randrange(len(lines))
        swapped = lines[:cut] + lines[cut + 1 :] + lines[cut : cut + 1]
        assert_sound(swapped, first, schema)


def test_the_table_comparison_refuses_a_module_that_disagrees(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = compiled_accelerator(check.enabled(), check.status())
    assert check._tables_differ(fast) is None
    monkeypatch.setattr(check, "KINDS", ("tx", "rx", "register", "iommu", "pin", "mmio"))
    assert "kinds" in (check._tables_differ(fast) or "")
    monkeypatch.setattr(check, "FIELDS_V2", ("v", "seq"))
    assert "fields v2" in (check._tables_differ(fast) or "")


def test_find_line_is_the_search_and_count_it_replaces() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        parts = [rng.choice([b"", b"\n", b"x", CHECKPOINT_START, CHECKPOINT_START[:7], b'{"v":2,', b"\n\n"])]
        data = b"".join(parts + [rng.choice([b"", b"\n", b"ab", CHECKPOINT_START]) for _ in range(rng.randrange(8))])
        starts = [0] + [i + 1 for i, byte in enumerate(data) if byte == 0x0A]
        start = rng.choice(starts)
        at = read_v2._next_checkpoint(data, start)
        lines = data.count(b"\n", start, at if at >= 0 else len(data))
        assert check.find_line(data, start, CHECKPOINT_START) == (at, lines), (data, start)


def without_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "enabled", lambda: None)


def both(files: list[Path], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """``verify`` (plain and handing records over) with the line check, and without it."""

    def run() -> Any:
        seen: list[Any] = []
        try:
            result = verify(files, on_record=seen.append)
            return verify(files), result, seen
        except read.AuditFormatError as err:
            return str(err)

    fast = run()
    with monkeypatch.context() as m:
        without_check(m)
        return fast, run()


V2_HOSTILE = sorted(HOSTILE.glob("v2-*.jsonl"))


@pytest.mark.parametrize("path", V2_HOSTILE, ids=lambda p: p.name)
def test_hostile_v2_logs_verify_the_same_with_and_without_the_check(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = both([path], monkeypatch)
    assert fast == slow


def v2_tamperings() -> dict[str, Callable[[list[bytes]], list[bytes]]]:
    def at(index: int, edit: Callable[[bytes], bytes]) -> Callable[[list[bytes]], list[bytes]]:
        return lambda lines: [edit(line) if i == index else line for i, line in enumerate(lines)]

    return {
        "intact": lambda lines: lines,
        "a value altered": at(3, lambda line: line.replace(b'"tx"', b'"rx"', 1)),
        "a space": at(5, lambda line: line.replace(b'"seq":', b'"seq": ', 1)),
        "a line deleted": lambda lines: lines[:4] + lines[5:],
        "lines swapped": lambda lines: [*lines[:4], lines[5], lines[4], *lines[6:]],
        "a checkpoint deleted": lambda lines: [line for i, line in enumerate(lines) if i != 14],
        "torn": lambda lines: [*lines[:-1], lines[-1][:-9]],
        "wall month 13": at(16, lambda line: line.replace(b'"wall":"2024-05', b'"wall":"2024-13', 1)),
    }


@pytest.mark.parametrize("name", v2_tamperings())
def test_tampered_v2_logs_verify_the_same_with_and_without_the_check(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 4)
    lines = v2_tamperings()[name](path.read_bytes().splitlines(keepends=True))
    path.write_bytes(b"".join(lines))
    fast, slow = both([path], monkeypatch)
    assert fast == slow
    assert fast[0].ok == (name == "intact")


def test_without_the_accelerator_verify_still_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    log = write(path, 3)
    monkeypatch.setenv("NIC_SANDBOX_FASTPATH", "0")
    check.state.cache_clear()
    try:
        assert check.enabled() is None and "NIC_SANDBOX_FASTPATH=0" in check.status()
        result = verify([path])
        assert result.ok and result.records == 3 * 14 and result.head == log.head
    finally:
        monkeypatch.delenv("NIC_SANDBOX_FASTPATH")
        check.state.cache_clear()


def test_a_checkpoint_read_without_json_is_what_json_reads(tmp_path: Path) -> None:
    """``parse_checkpoint``'s pattern for the writer's form against ``parse_line`` and ``is_checkpoint``."""
    path = tmp_path / "audit.jsonl"
    write(path, 2)
    lines = [line for line in path.read_bytes().splitlines(keepends=True) if line.startswith(CHECKPOINT_START)]
    first = lines[0]
    assert first.startswith(b'{"v":2,"checkpoint":13,"records":14,')
    forms = [first.replace(b'"checkpoint":13', b'"checkpoint":%d' % n) for n in (0, 2**63 - 1, 2**63, 10**19, -1)]
    forms += [first.replace(b'"records":14', b'"records":%d' % n) for n in (0, 1, 2**63 - 1, 2**63, 10**20)]
    samples = lines + forms + list(edits(first))

    def slow(line: bytes) -> dict[str, Any] | None:
        parsed = parse_line(line) if line.endswith(b"\n") else None
        return parsed if parsed is not None and is_checkpoint(parsed) else None

    assert all(read_v2.parse_checkpoint(line) == slow(line) for line in samples)
    assert all(read_v2.parse_checkpoint(line) is not None for line in lines)


@pytest.fixture(scope="module")
def v1_log_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    path = tmp_path_factory.mktemp("v1log") / "audit.jsonl"
    big_log(path)
    return path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize("name", TAMPERINGS)
def test_v1_verify_without_records_finds_what_the_reference_finds(
    name: str, v1_log_lines: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``verify`` with no ``on_record`` checks v1 chunks with the line check and chains them from the lines' bytes."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(TAMPERINGS[name](v1_log_lines)))
    try:
        fast: Any = verify([path])
    except read.AuditFormatError as err:
        fast = f"format error: {err}"
    assert fast == reference([path], monkeypatch)[0]
