"""The web view's HTTP API through Starlette's TestClient: pages, filters, charts, records, bad parameters, access.

Logs are written by the real writer (tests/auditor/web/logs.py); the
expected answers are counted from ``read_records``, the reader ``audit
show`` uses, never from the index under test.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.needs import IN_CI

if not IN_CI:  # under CI=true the [dev] extra is installed: a missing package fails the import below
    pytest.importorskip("starlette", reason="audit serve needs starlette (pip install 'nic-sandbox[audit]')")
    pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2 (pip install 'nic-sandbox[dev]')")

from starlette.testclient import TestClient

from auditor.web.app import make_app
from auditor.web.guard import COOKIE, BindRefused, check_bind
from tests.auditor.web.logs import HOSTILE_NAME, write_log
from verifier.audit.read import parse_wall, read_records

N = 300
LOCAL = "http://127.0.0.1"
TOKEN = "0123456789abcdef0123456789abcdef"


def settle(client: TestClient, rows: int | None = None) -> dict[str, Any]:
    """Status once the follower has indexed the log (and ``rows`` rows, if given) and the chain is checked."""
    deadline = time.monotonic() + 30  # a hang guard: the follower looks every 0.25 s
    while True:
        status = client.get("/api/status").json()
        done = not status["indexing"] and status["chain"]["state"] != "checking"
        if done and (rows is None or status["rows"] == rows):
            return status
        if time.monotonic() > deadline:  # a hang guard, not a speed assert
            pytest.fail(f"the view never settled: {status}")
        time.sleep(0.05)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    write_log(path, N, hostile_at=5)
    return path


@pytest.fixture
def client(log: Path) -> Iterator[TestClient]:
    with TestClient(make_app([log]), base_url=LOCAL) as c:
        settle(c)
        yield c


def records(log: Path) -> list[dict[str, Any]]:
    return list(read_records([log]))


def page_seqs(client: TestClient, **params: Any) -> tuple[int, list[int]]:
    answer = client.get("/api/records", params=params)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body["total"], [r["seq"] for r in body["rows"]]


def test_status_reports_rows_and_the_verdict_of_verify(client: TestClient, log: Path) -> None:
    status = settle(client)
    assert (status["rows"], status["bad"], status["pending_bytes"]) == (N, 0, 0)
    assert status["chain"]["state"] == "ok"
    chain = status["chain"]["chains"][0]
    assert (chain["ok"], chain["lines"], chain["head"]) == (True, N, records(log)[-1]["hash"])


def test_pages_cover_every_record_once_newest_first_or_oldest_first(client: TestClient) -> None:
    seen: list[int] = []
    for offset in range(0, N, 70):
        total, seqs = page_seqs(client, offset=offset, limit=70)
        assert total == N
        seen += seqs
    assert seen == list(range(N - 1, -1, -1))
    total, seqs = page_seqs(client, order="asc", offset=290, limit=50)
    assert seqs == list(range(290, N))
    assert page_seqs(client, offset=N, limit=10) == (N, [])


def test_filters_match_what_the_reader_finds(client: TestClient, log: Path) -> None:
    every = records(log)
    by_reason = Counter(r["reason"] for r in every)
    for reason, n in by_reason.items():
        total, seqs = page_seqs(client, reason=reason, limit=500, order="asc")
        assert (total, seqs) == (n, [r["seq"] for r in every if r["reason"] == reason])
    total, _ = page_seqs(client, reason=["LEN_ZERO", "ADDR_WRAP"])
    assert total == by_reason["LEN_ZERO"] + by_reason["ADDR_WRAP"]
    bob = [r["seq"] for r in every if r["tenant_name"] == "bob"]
    assert page_seqs(client, tenant="bob", limit=500, order="asc") == (len(bob), bob)
    assert page_seqs(client, tenant="2", limit=500, order="asc") == (len(bob), bob)  # by id
    assert page_seqs(client, tenant=HOSTILE_NAME) == (1, [5])
    rx = [r["seq"] for r in every if r["kind"] == "rx" and r["tenant_name"] == "alice"]
    assert page_seqs(client, kind="rx", tenant="alice", limit=500, order="asc") == (len(rx), rx)
    since, until = "2024-05-01T12:00:01Z", "2024-05-01T12:00:01.500+00:00"
    low, high = parse_wall("2024-05-01T12:00:01Z"), parse_wall("2024-05-01T12:00:01.5Z")
    window = [r["seq"] for r in every if low <= parse_wall(r["wall"]) < high]
    assert page_seqs(client, since=since, until=until, limit=500, order="asc") == (len(window), window)
    assert page_seqs(client, status="bad") == (0, [])
    assert page_seqs(client, since="9999-12-31T23:59:59Z") == (0, [])  # past int64 nanoseconds: no record, no error
    assert page_seqs(client, until="0001-01-01T00:00:00Z") == (0, [])
    assert page_seqs(client, reason="NOT_A_REASON_HERE") == (0, [])


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit: 0 is not in 1..500"),
        ("limit=501", "limit: 501 is not in 1..500"),
        ("limit=ten", "limit: a whole number from 1 to 500, not 'ten'"),
        ("limit=\u00b2", "limit: a whole number from 1 to 500, not '\u00b2'"),  # a digit to str.isdigit, not to int
        ("since=9999-12-31T23:59:59Z&until=0001-01-01", "until: must be later than since"),
        ("offset=-1", "offset: a whole number from 0 to 1000000000000, not '-1'"),
        ("limit=1&limit=2", "limit: given 2 times, takes one value"),
        ("order=sideways", "order: asc or desc, not 'sideways'"),
        ("reason=<script>", "reason: a reason code such as ADDR_NOT_PINNED, not '<script>'"),
        ("kind=dma", "kind: one of tx, rx, register, iommu, pin, not 'dma'"),
        ("status=maybe", "status: ok or bad, not 'maybe'"),
        ("since=yesterday", "since: an ISO-8601 time such as 2024-05-01T12:00:00Z, not 'yesterday'"),
        ("since=2024-05-02&until=2024-05-01", "until: must be later than since"),
        ("tenant=" + "x" * 300, "tenant: a tenant id or name, not 300 characters"),
        ("sql=" + "x" * 5000, "sql: at most 4,096 characters, not 5,000"),
        ("colour=red", "unknown parameter 'colour'"),
    ],
)
def test_bad_parameters_answer_400_with_one_line(client: TestClient, query: str, message: str) -> None:
    answer = client.get("/api/records?" + query)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error.startswith(message) and "\n" not in error


def test_chart_counts_add_up_per_group(client: TestClient, log: Path) -> None:
    every = records(log)
    for by, key in (("reason", "reason"), ("kind", "kind")):
        chart = client.get("/api/chart", params={"by": by, "buckets": 10}).json()
        assert chart["total"] == N and chart["buckets"] <= 11
        assert {s["key"]: sum(s["counts"]) for s in chart["series"]} == Counter(r[key] for r in every)
        assert all(len(s["counts"]) == chart["buckets"] for s in chart["series"])
    tenants = client.get("/api/chart", params={"by": "tenant", "reason": "LEN_ZERO"}).json()
    assert tenants["total"] == sum(1 for r in every if r["reason"] == "LEN_ZERO")
    one = client.get("/api/chart", params={"buckets": 1}).json()
    assert one["buckets"] <= 2 and sum(sum(s["counts"]) for s in one["series"]) == N
    assert client.get("/api/chart", params={"by": "colour"}).json()["error"].startswith("by: one of reason")
    assert client.get("/api/chart", params={"buckets": 0}).status_code == 400


def test_one_record_in_full_with_its_descriptor_and_neighbours(client: TestClient, log: Path) -> None:
    every = records(log)
    body = client.get("/api/record/7").json()
    assert body["record"] == every[7] and body["status"] == "ok"
    descriptor = body["descriptor"]
    assert descriptor["matches_stored"] is True
    fields = {f["field"]: f for f in descriptor["fields"]}
    assert fields["addr"]["value"] == every[7]["desc"]["addr"]
    assert fields["cmd"]["bits"] == ["EOP", "IFCS", "RS"]
    assert [n["seq"] for n in body["neighbours"]] == [4, 5, 6, 8, 9, 10]
    register = client.get("/api/record/10").json()
    assert register["record"]["kind"] == "register" and register["descriptor"] is None
    assert [n["seq"] for n in client.get("/api/record/0").json()["neighbours"]] == [1, 2, 3]
    assert client.get("/api/record/x1").status_code == 400
    assert client.get("/api/record/\u00b2").status_code == 400
    missing = client.get(f"/api/record/{N}")
    assert missing.status_code == 404 and missing.json()["error"] == f"row {N}: no such row (the log has {N} rows)"


def test_facets_count_reasons_and_tenants(client: TestClient, log: Path) -> None:
    every = records(log)
    facets = client.get("/api/facets").json()
    assert {r["name"]: r["count"] for r in facets["reasons"]} == Counter(r["reason"] for r in every)
    assert {t["name"]: t["count"] for t in facets["tenants"]} == Counter(r["tenant_name"] for r in every)


def test_a_live_log_is_followed_through_rotations(tmp_path: Path) -> None:
    """Records appended by the writer appear; files it rotates away keep their rows, readable."""
    from tests.auditor.web.logs import record, ticking
    from verifier.audit.log import AuditLog

    path = tmp_path / "live.jsonl"
    write_log(path, 20)
    with TestClient(make_app([path]), base_url=LOCAL) as client:
        settle(client, 20)
        with AuditLog(path, "verifier", clock=ticking(20), rotate_bytes=4096) as writer:
            for i in range(20, 120):
                writer.record(record(i))
                writer.commit()
        assert len(list(tmp_path.glob("live.jsonl.*"))) >= 2  # it did rotate
        status = settle(client, 120)
        assert status["bad"] == 0 and len(status["files"]) >= 3
        assert status["chain"]["state"] == "ok"
        total, seqs = page_seqs(client, order="asc", limit=500)
        assert (total, seqs) == (120, list(range(120)))
        assert client.get("/api/record/3").json()["record"]["seq"] == 3  # in a file now named live.jsonl.N


def test_read_only_and_loopback_host_only(client: TestClient) -> None:
    assert client.post("/api/status").status_code == 405
    assert client.delete("/api/records").status_code == 405
    rebound = client.get("/api/status", headers={"host": "attacker.example:8015"})
    assert rebound.status_code == 403
    assert client.get("/api/status", headers={"host": "localhost:8015"}).status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="static/app.js"' in page.text
    assert client.get("/static/chart.js").headers["content-type"].startswith("text/javascript")


def test_a_token_is_needed_on_every_request_when_one_is_set(log: Path) -> None:
    with TestClient(make_app([log], token=TOKEN, loopback=False), base_url="http://audit.example") as client:
        assert client.get("/api/status").status_code == 401
        assert client.get("/static/app.js").status_code == 401
        assert client.get("/api/status", headers={"authorization": "Bearer " + "x" * 32}).status_code == 401
        assert client.get("/api/status", headers={"authorization": "Bearer " + TOKEN}).status_code == 200
        first = client.get("/", params={"token": TOKEN})  # the link opened once: the cookie carries it after
        assert first.status_code == 200 and COOKIE in first.cookies
        assert client.get("/static/app.js").status_code == 200
        client.cookies.clear()
        assert client.get("/api/status").status_code == 401


@pytest.mark.parametrize(
    ("host", "allow", "token", "refused"),
    [
        ("127.0.0.1", False, None, None),
        ("localhost", False, None, None),
        ("::1", False, None, None),
        ("127.0.0.2", False, None, None),
        ("0.0.0.0", False, None, "--host 0.0.0.0: not a loopback address"),
        ("0.0.0.0", False, TOKEN, "--host 0.0.0.0: not a loopback address"),
        ("0.0.0.0", True, None, "--host 0.0.0.0: --allow-remote needs a token"),
        ("0.0.0.0", True, "short", "token: at least 32 characters"),
        ("0.0.0.0", True, TOKEN[:-1] + ";", "token: letters, digits and ._~- only"),
        ("0.0.0.0", True, TOKEN, None),
        ("::", False, None, "--host ::: not a loopback address"),
    ],
)
def test_binding_beyond_loopback_needs_the_flag_and_a_token(
    host: str, allow: bool, token: str | None, refused: str | None
) -> None:
    if refused is None:
        check_bind(host, allow, token)
    else:
        with pytest.raises(BindRefused, match="^" + refused.replace("(", r"\(")):
            check_bind(host, allow, token)


def test_a_directory_of_per_worker_logs_is_served_as_separate_chains(tmp_path: Path) -> None:
    """``fuzz --jobs N`` leaves one log per worker, each its own chain from seq 0 (verifier/audit/sets.py)."""
    campaign = tmp_path / "campaign"
    campaign.mkdir()
    write_log(campaign / "audit.jsonl.job0", 30)
    write_log(campaign / "audit.jsonl.job1", 20)
    (campaign / "report.json").write_text("{}\n")  # not a log: not served
    with TestClient(make_app([campaign]), base_url=LOCAL) as client:
        status = settle(client, 50)
        assert status["bad"] == 0 and len(status["files"]) == 2
        chains = status["chain"]["chains"]
        assert status["chain"]["state"] == "ok" and sorted(c["lines"] for c in chains) == [20, 30]
        assert page_seqs(client, order="asc", limit=500)[1] == list(range(30)) + list(range(20))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="a directory holding no audit log"):
        make_app([empty])
