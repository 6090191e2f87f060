"""Hostile logs do not break ``audit serve``: a foreign file is refused in one line, a bad record is shown as bad.

Every file of the hostile corpus (tests/hostile/audit/) is either refused
before serving (``AuditFormatError``: not an audit log at all, as every
``audit`` action refuses it) or served: status, facets, chart, every page
and every row answer 200, each damaged line being one ``bad`` row with the
reason.  The same damage planted in the middle of a good log leaves every
other record served as before.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.needs import IN_CI

if not IN_CI:
    pytest.importorskip("starlette", reason="audit serve needs starlette (pip install 'nic-sandbox[audit]')")
    pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2 (pip install 'nic-sandbox[dev]')")

from starlette.testclient import TestClient

from auditor.web.app import make_app
from auditor.web.index import MAX_LINE, LogIndex
from sandbox import cli
from tests.auditor.web.logs import write_log
from verifier.audit.read import AuditFormatError

CORPUS = Path(__file__).resolve().parents[2] / "hostile" / "audit"


@contextmanager
def served(path: Path) -> Iterator[TestClient]:
    with TestClient(make_app([path]), base_url="http://127.0.0.1") as client:
        deadline = time.monotonic() + 30  # a hang guard
        while client.get("/api/status").json()["indexing"]:
            if time.monotonic() > deadline:  # a hang guard, not a speed assert
                pytest.fail("audit serve never finished indexing or verifying")
            time.sleep(0.05)
        yield client


@pytest.mark.parametrize("path", sorted(CORPUS.iterdir()), ids=lambda p: p.name)
def test_every_hostile_log_is_refused_in_one_line_or_served_with_its_bad_rows(path: Path) -> None:
    try:
        LogIndex([path]).close()
    except AuditFormatError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
        return
    with served(path) as client:
        status = client.get("/api/status")
        assert status.status_code == 200
        for endpoint in ("/api/facets", "/api/chart", "/api/records?limit=500", "/api/records?status=bad"):
            assert client.get(endpoint).status_code == 200, endpoint
        rows = status.json()["rows"]
        for row in range(min(rows, 50)):
            answer = client.get(f"/api/record/{row}")
            assert answer.status_code == 200
            body = answer.json()
            assert (body["status"] == "bad") == (body["record"] is None)
            if body["status"] == "bad":
                assert body["problem"] and len(body["raw"]) <= 4096


def test_a_bad_record_in_a_good_log_is_one_bad_row_and_the_rest_still_serve(tmp_path: Path) -> None:
    """Damage in runs the fast path takes whole (2,048 lines) and in runs it hands to the line-by-line check."""
    log = tmp_path / "audit.jsonl"
    n = 5000
    write_log(log, n)
    lines = log.read_bytes().splitlines(keepends=True)
    damage = {
        10: b"\x00\xff not json at all\n",
        2500: b'{"v":1,' + b"[" * 50_000 + b"\n",
        4000: b"{" + b"x" * (MAX_LINE + 10) + b"\n",  # longer than any record: never held, one bad row
    }
    for at, line in damage.items():  # in increasing order: each lands at row ``at``
        lines.insert(at, line)
    log.write_bytes(b"".join(lines))
    with served(log) as client:
        status = client.get("/api/status").json()
        assert (status["rows"], status["bad"]) == (n + 3, 3)
        bad = client.get("/api/records", params={"status": "bad", "order": "asc"}).json()["rows"]
        assert [(r["row"], r["line"], r["problem"]) for r in bad] == [
            (10, 11, "record damaged: not canonical JSON"),
            (2500, 2501, "record damaged: not canonical JSON"),
            (4000, 4001, f"line longer than {MAX_LINE:,} bytes"),
        ]
        seqs: list[int] = []
        for offset in range(0, n, 500):
            page = client.get("/api/records", params={"status": "ok", "order": "asc", "limit": 500, "offset": offset})
            seqs += [r["seq"] for r in page.json()["rows"]]
        assert seqs == list(range(n))
        assert client.get("/api/record/4000").json()["raw"].startswith("{xxxx")
        assert client.get("/api/record/4001").json()["record"]["seq"] == 3998  # the record after the long line
        chain = client.get("/api/status").json()["chain"]
        deadline = time.monotonic() + 30
        while chain["state"] == "checking":
            if time.monotonic() > deadline:  # a hang guard, not a speed assert
                pytest.fail("audit serve never finished verifying")
            time.sleep(0.05)
            chain = client.get("/api/status").json()["chain"]
        assert chain["state"] == "tampered"


def test_the_command_refuses_a_foreign_file_and_a_remote_bind_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, 3)
    cases = [
        (["audit", "serve", str(CORPUS / "pcap.jsonl")], f"{CORPUS / 'pcap.jsonl'}: not an audit log"),
        (["audit", "serve", str(tmp_path / "nothing.jsonl")], "no such audit log"),
        (["audit", "serve", str(log), "--host", "0.0.0.0"], "--host 0.0.0.0: not a loopback address"),
        (["audit", "serve", str(log), "--host", "0.0.0.0", "--allow-remote"], "--host 0.0.0.0: --allow-remote"),
        (["audit", "serve", str(log), "--port", "70000"], "--port"),
        (["audit", "serve", str(log), "--token-file", str(tmp_path / "none")], "--token-file"),
    ]
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = str(busy.getsockname()[1])
    cases.append((["audit", "serve", str(log), "--port", port], f"--host 127.0.0.1 --port {port}: cannot listen"))
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err, (argv, err)
    busy.close()
