"""Every reader of the audit log on a schema v2 log: the same answers as on the v1 log of the same records.

v1 and v2 logs of the same records differ in their chain (a hash per record,
a checkpoint per batch) and nothing else a reader shows: summary, show,
follow, verify, seal, query and export must agree, and the web view's index
must list the records (not the checkpoints).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditor.web.index import LogIndex
from sandbox import cli
from tests.sandbox.test_audit_cli import add, clock, run
from verifier.audit.log import AuditLog
from verifier.audit.read import read_records


def make(path: Path, schema: int) -> Path:
    """30 records in batches of 7 (a commit each), one clock reading per record either way."""
    with AuditLog(path, "verifier", clock=clock(), schema=schema, fsync="never") as log:
        for i in range(30):
            add(log, i)
            if i % 7 == 6:
                log.commit()
    return path


@pytest.fixture
def logs(tmp_path: Path) -> dict[int, Path]:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    return {v: make(tmp_path / f"v{v}" / "audit.jsonl", v) for v in (1, 2)}


def without_chain(record: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in record.items() if k not in ("v", "prev", "hash")}


def test_the_records_are_the_same_in_both_schemas(logs: dict[int, Path]) -> None:
    v1, v2 = (list(read_records([logs[v]])) for v in (1, 2))
    assert [without_chain(r) for r in v1] == [without_chain(r) for r in v2]
    assert b'"checkpoint":' in logs[2].read_bytes()


@pytest.mark.parametrize(
    "args",
    [
        ["summary", "--json"],
        ["show", "--reason", "LEN_ZERO"],
        ["show", "--tenant", "mallory", "--json"],
        ["follow", "--from-start", "--max-records", "40", "--timeout", "1"],
    ],
)
def test_summary_show_and_follow_agree(
    logs: dict[int, Path], args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = []
    for v in (1, 2):
        code, out, err = run([args[0], str(logs[v]), *args[1:]], capsys)
        assert code == 0, err
        outputs.append(out.replace(str(logs[v]), "LOG"))
    if args[0] == "summary":
        first, second = (json.loads(o) for o in outputs)
        assert first.pop("head") != second.pop("head")  # different chains, same records
        assert first == second
    elif "--json" in args:
        assert [without_chain(json.loads(x)) for x in outputs[0].splitlines()] == [
            without_chain(json.loads(x)) for x in outputs[1].splitlines()
        ]
    else:
        assert outputs[0] == outputs[1]
        assert "checkpoint" not in outputs[1]


def test_verify_and_seal_on_a_v2_log(tmp_path: Path, logs: dict[int, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["verify", str(logs[2])], capsys)
    assert code == 0 and "OK: 30 records, chain intact" in out
    anchor = tmp_path / "anchor"
    assert run(["seal", str(logs[2]), "-o", str(anchor)], capsys)[0] == 0
    code, out, _ = run(["verify", str(logs[2]), "--anchor", str(anchor)], capsys)
    assert code == 0 and "anchored at seq 29" in out
    data = logs[2].read_bytes().splitlines(keepends=True)
    logs[2].write_bytes(b"".join(data[:8]))  # cut after the first batch and its checkpoint
    code, out, _ = run(["verify", str(logs[2]), "--anchor", str(anchor)], capsys)
    assert code == 1 and "log cut" in out


def test_query_and_export_see_the_records_not_the_checkpoints(
    tmp_path: Path, logs: dict[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("duckdb", reason="audit query needs the audit extra (duckdb)")
    answers = []
    for v in (1, 2):
        code, out, err = run(
            ["query", "--format", "csv", str(logs[v]), "SELECT seq, reason, tenant_name FROM records ORDER BY seq"],
            capsys,
        )
        assert code == 0, err
        answers.append(out)
    assert answers[0] == answers[1] and len(answers[0].splitlines()) == 31
    code, out, err = run(["export", str(logs[2]), "--format", "ocsf", "-o", str(tmp_path / "o.jsonl")], capsys)
    assert code == 0, err
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 30


def test_the_web_index_lists_v2_records(logs: dict[int, Path]) -> None:
    index = LogIndex([logs[2]])
    while index.refresh():
        pass
    progress = index.progress()
    assert (progress.rows, progress.bad) == (30, 0)
    assert [index.read(row).record for row in range(30)] == list(read_records([logs[2]]))
    index.close()


def test_a_v2_log_that_is_damaged_is_named_by_every_reader(
    logs: dict[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = logs[2].read_bytes().replace(b'"reason":"LEN_ZERO"', b'"reason":"LEN_ZER0"', 1)
    logs[2].write_bytes(data)
    code, out, _ = run(["verify", str(logs[2])], capsys)
    assert code == 1 and "batch altered: checkpoint hash mismatch" in out
    assert cli.main(["audit", "summary", str(logs[2])]) == 0  # summary reads, verify trusts


def test_query_names_the_file_line_of_a_damaged_v2_record(
    logs: dict[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """DuckDB numbers the records it loaded; the error names the line an editor shows (checkpoints counted)."""
    pytest.importorskip("duckdb", reason="audit query needs the audit extra (duckdb)")
    lines = logs[2].read_bytes().splitlines(keepends=True)
    target = next(i for i, line in enumerate(lines) if b'"seq":20,' in line and b'"checkpoint"' not in line)
    lines[target] = lines[target].replace(b'"seq":20,', b'"seq":"twenty",')
    logs[2].write_bytes(b"".join(lines))
    assert sum(b'"checkpoint"' in line for line in lines[:target]) == 2  # two batches of 7 before it
    code, _, err = run(["query", str(logs[2]), "SELECT count(*) FROM records"], capsys)
    assert code == 2 and f"{logs[2]}:{target + 1}: damaged record" in err, err


def test_the_web_index_reads_v2_batches_at_once_with_the_rows_of_the_line_by_line_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A v2 log's index (each batch decoded at once) equals the line-by-line one: same rows, lines, statuses and
    problems, a damaged record in a middle batch one bad row and its batch's other records still rows."""
    import auditor.web.index as index_module

    path = make(tmp_path / "audit.jsonl", 2)
    lines = path.read_bytes().splitlines(keepends=True)
    target = next(i for i, line in enumerate(lines) if b'"seq":17,' in line)
    lines[target] = lines[target].replace(b'"seq":17,', b'"seq":-17,')
    path.write_bytes(b"".join(lines))

    def rows_of() -> list[tuple[int, str, object, str | None]]:
        index = LogIndex([path])
        while index.refresh():
            pass
        rows = [index.read(row) for row in range(index.progress().rows)]
        index.close()
        return [(r.line, r.status, r.record, r.problem) for r in rows]

    decoded: list[int] = []
    fast_batch = index_module.fast_batch

    def counted(raw: bytes, n: int, expected: int) -> object:
        records = fast_batch(raw, n, expected)
        decoded.append(0 if records is None else len(records))
        return records

    monkeypatch.setattr(index_module, "fast_batch", counted)
    batched = rows_of()
    assert sum(decoded) == 30 - 7 and decoded.count(0) == 1  # every batch at once but the damaged one
    monkeypatch.setattr(index_module, "fast_batch", lambda *args: None)
    assert rows_of() == batched
    assert len(batched) == 30 and [r[1] for r in batched].count("bad") == 1
    assert batched[17][0] == target + 1 and batched[17][3] is not None
