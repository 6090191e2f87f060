"""``audit query`` and ``audit export`` on real logs written by verifier-mode campaigns (issue 15, parts 1, 2, 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox import cli
from tests.hostile.test_hostile import V2_CHAIN_ONLY
from tests.needs import missing

try:
    import duckdb
    import pyarrow.parquet as pq  # type: ignore[import-untyped]
except ImportError:  # the audit extra
    missing("duckdb and pyarrow are not installed (pip install 'nic-sandbox[audit]')")

from auditor.export import PARQUET_KEY
from auditor.ocsf import OCSF_VERSION, REQUIRED

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ROOT / "tests" / "hostile" / "audit"
#: Hostile logs whose records are well-typed values and only their bytes are wrong (not canonical JSON, a detail
#: nested deeper than the writer writes): ``query`` reads values, as the docs say; ``verify``/``export`` refuse them
#: (``export --force`` then writes them, marked unverified); so are v2 logs whose damage is in the checkpoints.
QUERY_READS = {"not-canonical.jsonl", "detail-deep.jsonl", *(f"v2-{name}.jsonl" for name in V2_CHAIN_ONLY)}


def campaign(out: Path, iterations: int, rotate: bool = False) -> Path:
    """A verifier-mode fuzz campaign's audit log (virtual clock: the same log every run)."""
    argv = ["fuzz", "--protection", "verifier", "--iterations", str(iterations), "--batch", "255", "--seed", "3"]
    argv += ["--classes", "kernel-tx,other-tenant,straddle,wrap,bad-length,register", "--out", str(out)]
    # schema v1 (a hash and a clock reading per record): these tests read per-record hashes and stamps; the
    # readers on the v2 log that fuzz writes by default are held to the v1 answers in test_audit_v2_cli.py
    argv += ["--audit-clock", "virtual", "--audit-max-bytes", "0", "--audit-schema", "1"]
    assert cli.main(argv) == 0
    return out / "audit.jsonl"


@pytest.fixture(scope="session")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return campaign(tmp_path_factory.mktemp("small"), 40)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def summary(log: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, _ = run(["audit", "summary", str(log), "--json"], capsys)
    assert code == 0
    return dict(json.loads(out))


def query(log: Path, sql: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    code, out, err = run(["audit", "query", str(log), sql, "--format", "jsonl"], capsys)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_query_counts_match_summary(small_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    want = summary(small_log, capsys)
    rows = query(small_log, "SELECT reason, count(*) AS n FROM records GROUP BY reason", capsys)
    assert {r["reason"]: r["n"] for r in rows} == want["by_reason"]
    (head,) = query(small_log, "SELECT hash, seq FROM records ORDER BY seq DESC LIMIT 1", capsys)
    assert (head["hash"], head["seq"]) == (want["head"], want["last_seq"])


def test_the_documented_examples(small_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    per_minute = query(
        small_log,
        "SELECT date_trunc('minute', wall) AS minute, tenant_name, reason, count(*) AS n FROM records "
        "GROUP BY 1, 2, 3 QUALIFY row_number() OVER (PARTITION BY minute, tenant_name ORDER BY n DESC) <= 3",
        capsys,
    )
    assert per_minute and all(r["minute"].endswith(":00.000000000Z") for r in per_minute)
    kernel = query(small_log, "SELECT seq, first_bad_byte, frame FROM records WHERE owner = 'kernel'", capsys)
    assert kernel and all(r["first_bad_byte"] >> 12 == r["frame"] for r in kernel)
    (first,) = query(small_log, "SELECT seq FROM records WHERE seq > 1000 ORDER BY seq LIMIT 1", capsys)
    assert first["seq"] == 1001
    _, out, _ = run(
        ["audit", "query", str(small_log), "SELECT seq, wall FROM records LIMIT 2", "--format", "csv"], capsys
    )
    assert out.splitlines() == ["seq,wall", "0,2023-11-14T22:13:20.000000000Z", "1,2023-11-14T22:13:20.000001000Z"]


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 1) TO '{tmp}/x.csv'",
        "COPY (SELECT 1 AS a) TO '{log}' (FORMAT json, USE_TMP_FILE false)",
        "SELECT * FROM read_csv('/etc/passwd')",
        "ATTACH '{tmp}/x.db'",
        "SET enable_external_access = true",
        "CREATE TABLE t AS SELECT 1",
        "INSTALL httpfs",
    ],
)
def test_the_sql_cannot_write_or_reach_out(
    sql: str, small_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = small_log.read_bytes()
    code, _, err = run(["audit", "query", str(small_log), sql.format(tmp=tmp_path, log=small_log)], capsys)
    assert code == 2 and err.startswith("nic-sandbox: error: audit query: ") and len(err.splitlines()) == 1
    assert small_log.read_bytes() == before and not list(tmp_path.iterdir())


def test_every_hostile_log_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in sorted(HOSTILE.iterdir()):
        for argv in (
            ["audit", "query", str(path), "SELECT count(*) FROM records"],
            ["audit", "export", str(path), "--parquet", str(tmp_path / "x.parquet"), "--force"],
        ):
            code, out, err = run(argv, capsys)
            assert "Traceback" not in out + err, argv
            if path.name in QUERY_READS:  # export: only because of --force, and marked NOT verified
                assert code == 0, (argv, err)
                (tmp_path / "x.parquet").unlink(missing_ok=True)
                continue
            assert code == 2 and len(err.splitlines()) == 1 and path.name in err, (argv, code, out[:200], err)
            assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize(
    ("library", "argv"),
    [
        ("duckdb", ["audit", "export", "{log}", "--parquet", "{tmp}/x.parquet"]),
        ("duckdb", ["audit", "query", "{log}", "SELECT 1"]),
        ("pyarrow", ["audit", "query", "{log}", "SELECT 1"]),
    ],
)
def test_a_missing_library_is_one_line_naming_the_extra(
    library: str, argv: list[str], small_log: Path, tmp_path: Path
) -> None:
    argv = [a.format(log=small_log, tmp=tmp_path) for a in argv]
    code = (
        f"import sys; sys.modules[{library!r}] = None  # as if it were not installed\n"
        "from sandbox.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert library in done.stderr.lower() and "nic-sandbox[audit]" in done.stderr
    assert not list(tmp_path.iterdir())


def test_too_little_memory_is_one_line_naming_the_flag(
    small_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["audit", "query", str(small_log), "SELECT count(*) FROM records", "--memory", "100KB"],
        ["audit", "export", str(small_log), "--format", "ocsf", "-o", str(tmp_path / "x"), "--memory", "100KB"],
    ):
        code, _, err = run(argv, capsys)
        assert code == 2 and len(err.splitlines()) == 1 and "memory limit 100KB (--memory SIZE" in err, err
    assert not list(tmp_path.iterdir())


def test_parquet_export_reads_back_as_the_log(
    small_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "audit.parquet"
    code, out, _ = run(["audit", "export", str(small_log), "--parquet", str(target)], capsys)
    assert code == 0 and "chain verified" in out
    lines = [json.loads(line) for line in small_log.read_bytes().splitlines()]
    table = pq.read_table(target)
    assert table.num_rows == len(lines)
    assert table.schema.field("desc_addr").type == "uint64" and str(table.schema.field("wall").type) == "timestamp[ns]"
    assert table.column("hash").to_pylist() == [r["hash"] for r in lines]
    assert table.column("reason").to_pylist() == [r["reason"] for r in lines]
    assert table.column("desc_addr").to_pylist() == [r["desc"]["addr"] if r["desc"] else None for r in lines]
    provenance = json.loads(pq.read_metadata(target).metadata[PARQUET_KEY.encode()])
    assert provenance["verified"] and provenance["head"] == lines[-1]["hash"]
    assert provenance["head_seq"] == lines[-1]["seq"]
    con = duckdb.connect()
    counts = dict(con.execute(f"SELECT reason, count(*) FROM '{target}' GROUP BY 1").fetchall())
    assert counts == summary(small_log, capsys)["by_reason"]
    assert pq.ParquetFile(target).metadata.row_group(0).column(0).compression == "ZSTD"


def _type_ok(value: object, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "string_t":
        return isinstance(value, str) and bool(value)
    return isinstance(value, int) and not isinstance(value, bool)  # integer_t, long_t, timestamp_t (ms)


def test_ocsf_export_has_every_required_field(
    small_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "audit.ocsf.jsonl"
    assert run(["audit", "export", str(small_log), "--format", "ocsf", "-o", str(target)], capsys)[0] == 0
    records = [json.loads(line) for line in small_log.read_bytes().splitlines()]
    events = [json.loads(line) for line in target.read_bytes().splitlines()]
    assert len(events) == len(records)
    for event, record in zip(events, records, strict=True):
        for path, kind in REQUIRED.items():
            value: Any = event
            for key in path.split("."):
                value = value[key]
            assert _type_ok(value, kind), (path, value)
        assert event["class_uid"] == 2004 and event["type_uid"] == 200401 and event["action_id"] == 2
        assert event["metadata"]["version"] == OCSF_VERSION and event["finding_info"]["uid"] == record["hash"]
        assert event["metadata"]["sequence"] == record["seq"] and event["finding_info"]["title"] == record["reason"]
        assert event["metadata"]["correlation_uid"] == records[-1]["hash"]
        assert event["unmapped"]["export"]["verified"] is True


def test_an_export_of_a_tampered_log_is_refused_unless_forced(
    small_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = small_log.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].replace(b'"frame":', b'"frame":1', 1)
    log = tmp_path / "tampered.jsonl"
    log.write_bytes(b"".join(lines))
    target = tmp_path / "t.parquet"
    code, out, _ = run(["audit", "export", str(log), "--parquet", str(target)], capsys)
    assert code == 1 and "TAMPERED: record altered: hash mismatch" in out and not target.exists()
    code, out, _ = run(["audit", "export", str(log), "--parquet", str(target), "--force"], capsys)
    assert code == 0 and "NOT verified" in out
    provenance = json.loads(pq.read_metadata(target).metadata[PARQUET_KEY.encode()])
    assert provenance["verified"] is False and provenance["problems"][0].endswith(
        "hash mismatch (tampered.jsonl:5) at seq 4"
    )
    last = json.loads(lines[-1])  # the head named is the record whose hash it is, past the problem at seq 4
    assert (provenance["head_seq"], provenance["head"]) == (last["seq"], last["hash"])
    assert f"head seq {last['seq']} {last['hash']}" in out


@pytest.fixture(scope="session")
def million_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """>= 1,000,000 records, once per session: issue 15 asks for SQL at the scale a campaign writes in minutes.

    That is the size where a load that held the log in memory, or a query
    that read it row by row in Python, would show (620 MB of JSON Lines in ten
    rotated files).  A virtual-clock campaign writes it in 45-60 s on two
    shared cores; the test then takes 40-45 s more (the load into DuckDB and
    ``audit summary``, both streaming).
    """
    out = tmp_path_factory.mktemp("million")
    argv = ["fuzz", "--protection", "verifier", "--iterations", "4400", "--batch", "255", "--seed", "3"]
    argv += ["--classes", "kernel-tx,other-tenant,straddle,wrap,bad-length", "--out", str(out)]
    # schema v1 (a hash and a clock reading per record): these tests read per-record hashes and stamps; the
    # readers on the v2 log that fuzz writes by default are held to the v1 answers in test_audit_v2_cli.py
    argv += ["--audit-clock", "virtual", "--audit-max-bytes", "0", "--audit-schema", "1"]
    assert cli.main(argv) == 0
    return out / "audit.jsonl"


def test_a_million_record_query_matches_summary(million_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = query(
        million_log,
        "SELECT reason, count(*) AS n, min(seq) AS first, max(seq) AS last, arg_max(hash, seq) AS head "
        "FROM records GROUP BY reason",
        capsys,
    )
    total = sum(r["n"] for r in rows)
    assert total >= 1_000_000
    want = summary(million_log, capsys)
    assert {r["reason"]: r["n"] for r in rows} == want["by_reason"] and total == want["records"]
    assert min(r["first"] for r in rows) == want["first_seq"] and max(r["last"] for r in rows) == want["last_seq"]
    assert max(rows, key=lambda r: r["last"])["head"] == want["head"]
    assert len(want["files"]) > 1  # rotated siblings read too
