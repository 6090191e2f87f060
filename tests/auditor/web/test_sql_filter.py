"""The web view's ``sql`` filter: ``audit query``'s locked DuckDB engine narrowing the table and the chart (issue 15).

The expected answers are counted from ``read_records`` (the reader ``audit
show`` uses), never from DuckDB or the index under test.  The SQL is
hostile: what ``audit query`` refuses (writing a file, reading one,
attaching a database, changing a setting) the filter refuses with a 400 and
one line, and nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.needs import IN_CI, missing

if not IN_CI:
    pytest.importorskip("starlette", reason="audit serve needs starlette (pip install 'nic-sandbox[audit]')")
    pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2 (pip install 'nic-sandbox[dev]')")
try:
    import duckdb  # noqa: F401
    import pyarrow  # type: ignore[import-untyped]  # noqa: F401
except ImportError:
    missing("duckdb and pyarrow are not installed (pip install 'nic-sandbox[audit]')")

from starlette.testclient import TestClient

from auditor.web import sql as sql_engine
from auditor.web.app import make_app
from auditor.web.sql import query_text
from tests.auditor.web.logs import write_log
from verifier.audit.read import read_records

N = 300
LOCAL = "http://127.0.0.1"


def settle(client: TestClient, rows: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        status = client.get("/api/status").json()
        if not status["indexing"] and status["rows"] == rows:
            return
        if time.monotonic() > deadline:  # a hang guard, not a speed assert
            pytest.fail(f"the view never indexed {rows} rows: {status}")
        time.sleep(0.05)


def get(client: TestClient, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    """``path`` with ``params``, asked again while the SQL engine is still loading (202 + retry, as the page does)."""
    deadline = time.monotonic() + 60
    while True:
        answer = client.get(path, params=params)
        if answer.status_code != 202:
            return answer.status_code, answer.json()
        assert answer.json()["retry"] is True and answer.headers["retry-after"] == "1"
        if time.monotonic() > deadline:  # a hang guard
            pytest.fail(f"the SQL engine never loaded: {answer.json()}")
        time.sleep(0.05)


def write(folder: Path) -> Path:
    path = folder / "audit.jsonl"
    write_log(path, N, hostile_at=5)
    return path


@pytest.fixture(scope="module")
def shared_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("sql"))


@pytest.fixture(scope="module")
def client(shared_log: Path) -> Iterator[TestClient]:
    """One server for the tests that only read (each load of the log into DuckDB is a child process)."""
    with TestClient(make_app([shared_log]), base_url=LOCAL) as c:
        settle(c, N)
        yield c


@pytest.fixture
def log(shared_log: Path) -> Path:
    return shared_log


def seqs(client: TestClient, **params: Any) -> tuple[int, list[int]]:
    code, body = get(client, "/api/records", limit=500, order="asc", **params)
    assert code == 200, body
    return body["total"], [r["seq"] for r in body["rows"]]


def test_a_condition_and_a_query_select_the_records_sql_names(client: TestClient, log: Path) -> None:
    records = list(read_records([log]))
    want = [r["seq"] for r in records if r["reason"] == "LEN_ZERO" and r["kind"] == "tx"]
    assert seqs(client, sql="reason = 'LEN_ZERO' AND kind = 'tx'") == (len(want), want)
    every_seventh = [r["seq"] for r in records if r["seq"] % 7 == 0]
    assert seqs(client, sql="SELECT seq FROM records WHERE seq % 7 = 0;") == (len(every_seventh), every_seventh)


def test_sql_narrows_the_other_filters_by_and(client: TestClient, log: Path) -> None:
    records = list(read_records([log]))
    want = [r["seq"] for r in records if r["tenant_name"] == "bob" and r["seq"] < 100]
    total, got = seqs(client, sql="seq < 100", tenant="bob")
    assert (total, got) == (len(want), want)
    code, chart = get(client, "/api/chart", sql="seq < 100", tenant="bob", by="reason")
    assert code == 200 and chart["total"] == len(want)
    assert sum(sum(s["counts"]) for s in chart["series"]) == len(want)


@pytest.mark.parametrize(
    "sql",
    [
        "COPY records TO '{out}' (FORMAT csv)",
        "SELECT * FROM read_csv('{out}')",
        "SELECT seq FROM read_json('{out}')",
        "ATTACH '{out}' AS other",
        "SET enable_external_access = true",
        "CREATE TABLE t AS SELECT seq FROM records",
        "INSTALL httpfs",
    ],
)
def test_sql_that_writes_reads_or_reconfigures_is_refused(client: TestClient, tmp_path: Path, sql: str) -> None:
    out = tmp_path / "leak.csv"
    code, body = get(client, "/api/records", sql=sql.format(out=out))
    assert code == 400 and body["error"].startswith("sql: ") and "\n" not in body["error"]
    assert not out.exists()
    assert seqs(client, sql="seq = 3") == (1, [3])  # the engine still serves


def test_a_query_without_seq_is_refused_naming_what_it_returns(client: TestClient) -> None:
    code, body = get(client, "/api/records", sql="SELECT reason, count(*) AS n FROM records GROUP BY reason")
    assert code == 400 and body["error"] == "sql: the query must return a column named seq (it returns: reason, n)"
    code, body = get(client, "/api/records", sql="SELEC seq FROM records")
    assert code == 400 and body["error"].startswith("sql: Parser Error")


def test_a_query_that_runs_too_long_is_interrupted(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_engine, "QUERY_S", 0.2)
    code, body = get(client, "/api/records", sql="SELECT a.seq FROM records a, range(1000000000) b WHERE b.range < 0")
    assert code == 400 and body["error"] == "sql: stopped after 0 s (a filter must answer sooner)"


def test_a_live_log_is_reloaded_for_sql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_engine, "RELOAD_S", 0.0)
    log = write(tmp_path)
    with TestClient(make_app([log]), base_url=LOCAL) as client:
        settle(client, N)
        live(client, log)


def live(client: TestClient, log: Path) -> None:
    assert seqs(client, sql=f"seq >= {N - 2}")[0] == 2
    write_log(log, 40, start=N)
    settle(client, N + 40)
    deadline = time.monotonic() + 60
    while seqs(client, sql=f"seq >= {N - 2}")[0] != 42:  # the old load answers until the new one is in
        if time.monotonic() > deadline:  # a hang guard
            pytest.fail("the SQL engine never saw the records appended")
        time.sleep(0.1)
    code, body = get(client, "/api/records", sql=f"seq >= {N - 2}")
    assert code == 200 and body["sql_records"] == N + 40


def test_a_damaged_log_answers_sql_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 20)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[7] = b'{"v":1,"seq":"seven"}\n'
    path.write_bytes(b"".join(lines))
    with TestClient(make_app([path]), base_url=LOCAL) as client:
        settle(client, 20)
        code, body = get(client, "/api/records", sql="seq > 0")
        assert code == 400 and body["error"].startswith(f"sql: {path}:8: damaged record")
        answer = client.get("/api/records", params={"status": "bad"})  # the rest of the view still serves
        assert answer.status_code == 200 and answer.json()["total"] == 1


def test_the_query_text_of_a_condition() -> None:
    assert query_text("owner = 'kernel'") == "SELECT seq FROM records WHERE (owner = 'kernel')"
    assert query_text("  select seq from records; ") == "select seq from records"
    assert query_text("(SELECT seq FROM records)") == "(SELECT seq FROM records)"
    assert query_text("WITH x AS (SELECT seq FROM records) SELECT seq FROM x").startswith("WITH")
