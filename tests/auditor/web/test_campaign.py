"""The campaign view of ``fuzz --serve``: the board fed by a real campaign, and its routes through TestClient.

The board is fed the messages the command line sends (sandbox/commands/
fuzz_serve.py builds them from the campaign's own ``ProgressInfo``); the
expected numbers come from the campaign's result, never from the board.
An escape needs a mode that lets one through: protection ``none`` escapes
in the first batch of most classes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.needs import IN_CI

if not IN_CI:  # under CI=true the [dev] extra is installed: a missing package fails the import below
    pytest.importorskip("starlette", reason="fuzz --serve needs starlette (pip install 'nic-sandbox[audit]')")
    pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2 (pip install 'nic-sandbox[dev]')")

from starlette.testclient import TestClient

from auditor.web.app import make_app
from auditor.web.campaign import MAX_SAMPLES, BoardError, CampaignBoard
from fuzz import case as case_mod
from fuzz.campaign import CampaignResult, ProgressInfo, run_campaign
from sandbox.commands.fuzz_serve import case_name, escape_message, replay_command, update_message
from tests.auditor.web.logs import HOSTILE_NAME, write_log
from verifier.modes.protection import Protection

LOCAL = "http://127.0.0.1"
CLASSES = "kernel-tx,straddle,wrap"


def fed(tmp_path: Path, protection: str = "none") -> tuple[CampaignBoard, CampaignResult, list[ProgressInfo]]:
    """A board fed as ``fuzz --serve`` feeds it, by a real 24-batch campaign; each escape's case written as found."""
    board = CampaignBoard()
    seen: list[ProgressInfo] = []
    mode = Protection(protection)
    written: set[tuple[str, str]] = set()

    def progress(info: ProgressInfo) -> None:
        seen.append(info)
        for f in info.findings:
            if f.key not in written:
                written.add(f.key)
                case = case_mod.Case.from_finding(f, 1, mode)
                path = str(case_mod.write_case(case, tmp_path / "cases", case_name(mode, f)))
                board.apply(escape_message(f, path, mode))
        board.apply(update_message(info))

    board.apply({"op": "start", "protection": protection, "seed": 1, "classes": CLASSES.split(","),
                 "out": str(tmp_path), "iterations": 24})  # fmt: skip
    result = run_campaign(protection, 1, CLASSES, iterations=24, batch=16, progress=progress)
    board.apply(update_message(result))
    board.apply({"op": "finish", "state": "done", "report": str(tmp_path / "report.json")})
    return board, result, seen


def test_board_counts_are_the_campaigns(tmp_path: Path) -> None:
    board, result, _ = fed(tmp_path)
    snap = board.snapshot()
    assert snap["state"] == "done" and snap["protection"] == "none" and snap["iterations"] == 24
    assert [r["name"] for r in snap["classes"]] == CLASSES.split(",")
    for row in snap["classes"]:
        assert {k: v for k, v in row.items() if k not in ("name", "rate_now")} == result.stats[row["name"]].as_dict()
    assert snap["totals"]["generated"] == result.descriptors and snap["totals"]["escapes"] == sum(
        s.escapes for s in result.stats.values()
    )
    assert [(e["class"], e["kind"]) for e in snap["escapes"]] == [f.key for f in result.findings]
    first = snap["escapes"][0]
    assert first["case"] == str(tmp_path / "cases" / f"none-{first['class']}-{first['kind']}.json")
    assert first["replay"] == f"nic-sandbox fuzz replay {first['case']} --protection none"
    assert first["download"] == "api/campaign/case/0" and first["file"] == Path(first["case"]).name


def test_series_rates_add_up_to_the_descriptors(tmp_path: Path) -> None:
    board, result, _ = fed(tmp_path)
    s = board.series()
    assert s["t"] == sorted(s["t"]) and len(s["t"]) >= 2
    spans = [b - a for a, b in zip([0.0, *s["t"]], s["t"], strict=False)]
    # each interval's rate times its length is the descriptors sent in it: they add up to the total
    assert sum(r * dt for r, dt in zip(s["rate"], spans, strict=True)) == pytest.approx(result.descriptors, rel=0.01)
    assert {c["key"] for c in s["classes"]} <= set(CLASSES.split(","))
    assert s["escapes"][-1] == sum(x.escapes for x in result.stats.values())
    assert s["coverage"][-1] is None  # coverage off


def test_long_campaigns_are_thinned_to_a_bounded_series_and_rates_stay_exact() -> None:
    board = CampaignBoard()
    board.start("verifier", 1, ["a", "b"], seconds=86400.0)
    for second in range(1, 5001):  # 5,000 s at 100 descriptors/s for a, 300 for b
        board.update(float(second), second, {"a": {"generated": 100 * second}, "b": {"generated": 300 * second}})
    s = board.series()
    assert MAX_SAMPLES // 2 <= len(s["t"]) < MAX_SAMPLES and s["interval"] > 1
    assert set(s["rate"][1:]) == {400.0}
    assert {c["key"]: set(c["rates"][1:]) for c in s["classes"]} == {"b": {300.0}, "a": {100.0}}
    assert board.snapshot()["totals"]["rate_now"] == 400.0


def test_board_refuses_what_it_does_not_take() -> None:
    board = CampaignBoard()
    for bad in ({"op": "rm -rf"}, {"op": None}, {"op": "update", "nonsense": 1}, {"op": "finish", "state": "?"}):
        with pytest.raises(BoardError):
            board.apply(bad)
    board.start("none", 1, ["a"])
    with pytest.raises(BoardError):
        board.update(1.0, 1, {"a": {"generated": -5}})
    with pytest.raises(LookupError):
        board.case_bytes(0)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, CampaignResult]]:
    board, result, _ = fed(tmp_path)
    log = tmp_path / "audit.jsonl"
    write_log(log, 40, hostile_at=3)
    with TestClient(make_app([log], board=board), base_url=LOCAL) as c:
        yield c, result


def test_endpoints_serve_the_campaign_and_its_reproducers(client: tuple[TestClient, CampaignResult]) -> None:
    c, result = client
    assert c.get("/api/about").json() == {"audit": True, "campaign": True}
    snap = c.get("/api/campaign").json()
    assert snap["totals"]["generated"] == result.descriptors
    assert c.get("/api/campaign/series").json()["t"]
    for n, e in enumerate(snap["escapes"]):
        got = c.get(f"/api/campaign/case/{n}")
        assert got.status_code == 200 and got.headers["content-type"] == "application/json"
        assert got.headers["content-disposition"] == f'attachment; filename="{e["file"]}"'
        downloaded = Path(e["case"]).with_name("downloaded.json")
        downloaded.write_bytes(got.content)
        case = case_mod.Case.load(downloaded)  # what `fuzz replay` loads, and it still escapes
        assert (case.cls, case.protection) == (e["class"], Protection.NONE)
        assert case_mod.replay(case).escaped
        assert e["replay"] == replay_command(e["case"], Protection.NONE)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/campaign?x=1", 400),
        ("/api/campaign/series?points=9", 400),
        ("/api/campaign/case/abc", 400),
        ("/api/campaign/case/-1", 400),
        ("/api/campaign/case/1e3", 400),
        ("/api/campaign/case/99999999999", 400),
        ("/api/campaign/case/999", 404),
        ("/api/campaign/case/..%2F..%2Fetc%2Fpasswd", 404),  # no route: the path is decoded first
        ("/api/campaign/case/0/../../../etc/passwd", 404),
        ("/api/campaign/case/0?path=/etc/passwd", 400),
    ],
)
def test_bad_parameters_are_refused(client: tuple[TestClient, CampaignResult], path: str, status: int) -> None:
    got = client[0].get(path)
    assert got.status_code == status, got.text
    assert "root:" not in got.text


def test_the_audit_log_of_the_campaign_is_served_beside_it(client: tuple[TestClient, CampaignResult]) -> None:
    c, _ = client
    deadline = time.monotonic() + 30  # a hang guard: the follower looks every 0.25 s
    while c.get("/api/status").json()["rows"] < 40:
        if time.monotonic() > deadline:  # a hang guard, not a speed assert
            pytest.fail("the campaign's audit log was never indexed")
        time.sleep(0.05)
    rows = c.get("/api/records", params={"limit": 50}).json()["rows"]
    assert any(HOSTILE_NAME in r.get("tenant", "") for r in rows)  # text in JSON; the page writes text nodes


def test_a_log_not_written_yet_is_waited_for_and_none_is_404(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl.job0"
    with TestClient(make_app([log], board=CampaignBoard()), base_url=LOCAL) as c:
        early = c.get("/api/status")
        assert early.status_code == 503 and "waiting for the campaign's audit log" in early.json()["error"]
        write_log(log, 5)
        assert c.get("/api/status").status_code == 200
    with TestClient(make_app([], board=CampaignBoard()), base_url=LOCAL) as c:
        assert c.get("/api/about").json() == {"audit": False, "campaign": True}
        assert c.get("/api/status").status_code == 404 and "--no-audit-log" in c.get("/api/status").json()["error"]


def test_audit_serve_has_no_campaign(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, 5)
    with TestClient(make_app([log]), base_url=LOCAL) as c:
        assert c.get("/api/about").json() == {"audit": True, "campaign": False}
        for path in ("/api/campaign", "/api/campaign/series", "/api/campaign/case/0"):
            assert c.get(path).status_code == 404
