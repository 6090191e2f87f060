"""``nic-sandbox audit``: summary, show, verify, plot and follow on real log files; one-line errors on bad input."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import cli
from sandbox.commands.audit import since_ns
from verifier.audit.log import AuditLog
from verifier.audit.record import AuditRecord

ROOT = Path(__file__).resolve().parents[2]
EPOCH_NS = 1_714_564_800_000_000_000  # 2024-05-01T12:00:00Z
TENANTS = ((1, "alice"), (2, "bob"), (3, "mallory"))
REASONS = ("ADDR_NOT_PINNED", "LEN_ZERO", "NOT_DEVICE_WRITABLE")


def clock(start_ns: int = EPOCH_NS, step_ns: int = 10_000_000) -> Any:
    """Deterministic: one record every 10 ms from 2024-05-01T12:00:00Z."""
    ticks = iter(range(10**9))

    def now() -> tuple[int, int]:
        tick = next(ticks)
        return start_ns + tick * step_ns, tick * step_ns

    return now


def add(log: AuditLog, i: int) -> int:
    tenant, name = TENANTS[i % 3]
    reason = REASONS[0] if name == "mallory" else REASONS[1 + i % 2]
    kind = "rx" if reason == "NOT_DEVICE_WRITABLE" else "tx"
    return log.record(
        AuditRecord(
            tenant=tenant,
            tenant_name=name,
            nic="nic0",
            queue=tenant - 1,
            kind=kind,
            ring_index=i,
            raw=bytes(range(16)),
            fields={"addr": 0x1000 * i, "length": 64},
            reason=reason,
            detail={"first_bad_byte": 0x1000 * i, "owner": "kernel"},
        )
    )


def make_log(path: Path, n: int = 30, **kwargs: Any) -> Path:
    kwargs.setdefault("clock", clock())
    with AuditLog(path, "verifier", **kwargs) as log:
        for i in range(n):
            add(log, i)
    return path


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return make_log(tmp_path / "audit.jsonl")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["audit", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "sandbox", "audit", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


# -- help ---------------------------------------------------------------------------------------
def test_help_lists_actions_with_examples() -> None:
    top = run_cli("--help")
    assert top.returncode == 0
    assert "examples:" in top.stdout
    for action in ("summary", "show", "verify", "plot", "follow"):
        assert action in top.stdout
    show = run_cli("show", "--help")
    assert show.returncode == 0 and "example" in show.stdout
    for flag in ("--reason", "--tenant", "--since", "--json"):
        assert flag in show.stdout


# -- summary --------------------------------------------------------------------------------------
def test_summary_counts_reasons_tenants_queues(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["summary", str(log)], capsys)
    assert code == 0, err
    assert "records: 30 (seq 0..29)" in out
    assert "2024-05-01T12:00:00.000000000Z .. 2024-05-01T12:00:00.290000000Z (0.290000 s)" in out
    assert "103.4 records/s" in out  # 30 records in 0.29 s
    for words in ("ADDR_NOT_PINNED", "mallory(3)", "nic0/tx2", "alice(1)", "verifier", "head hash:"):
        assert words in out

    code, out, _ = run(["summary", str(log), "--json"], capsys)
    summary = json.loads(out)
    assert summary["records"] == 30 and summary["by_protection"] == {"verifier": 30}
    assert summary["by_reason"] == {"ADDR_NOT_PINNED": 10, "LEN_ZERO": 10, "NOT_DEVICE_WRITABLE": 10}
    rows = {(r["reason"], r["tenant"], r["queue"]): r["count"] for r in summary["by_reason_tenant_queue"]}
    assert rows[("ADDR_NOT_PINNED", "mallory(3)", "nic0/tx2")] == 10
    assert rows[("NOT_DEVICE_WRITABLE", "alice(1)", "nic0/rx0")] == 5
    assert summary["head"] == json.loads(log.read_bytes().splitlines()[-1])["hash"]


def test_summary_reads_rotated_siblings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_log(tmp_path / "audit.jsonl", 40, rotate_bytes=3_000)
    assert (tmp_path / "audit.jsonl.2").exists()
    code, out, _ = run(["summary", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out)["records"] == 40


# -- show -------------------------------------------------------------------------------------------
def test_show_filters(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def seqs(*args: str) -> list[int]:
        code, out, err = run(["show", str(log), "--json", *args], capsys)
        assert code == 0, err
        return [json.loads(line)["seq"] for line in out.splitlines()]

    assert seqs() == list(range(30))
    assert seqs("--reason", "ADDR_NOT_PINNED") == list(range(2, 30, 3))
    assert seqs("--reason", "addr_not_pinned", "--reason", "LEN_ZERO") == [
        i for i in range(30) if i % 3 == 2 or (i % 3 != 2 and i % 2 == 0)
    ]
    assert seqs("--tenant", "mallory") == seqs("--tenant", "3") == list(range(2, 30, 3))
    assert seqs("--tenant", "nobody") == []
    assert seqs("--since", "2024-05-01T12:00:00.25Z") == [25, 26, 27, 28, 29]
    assert seqs("--since", "2024-05-01T12:00:00.25") == [25, 26, 27, 28, 29]  # no zone: UTC
    assert seqs("--since", "10m") == []  # the fixture's records are from 2024
    assert seqs("--limit", "3", "--tenant", "bob") == [1, 4, 7]


def test_show_json_is_the_stored_bytes(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["show", str(log), "--json"], capsys)
    assert code == 0 and out.encode() == log.read_bytes()


def test_show_table_decodes(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["show", str(log), "--tenant", "mallory", "--limit", "2"], capsys)
    assert code == 0
    for words in ("ADDR_NOT_PINNED", "mallory(3)", "nic0/tx2", "addr=0x2000", "owner=kernel", "2 records shown"):
        assert words in out


def test_since_accepts_ages_and_iso_times() -> None:
    now = EPOCH_NS + 3_600_000_000_000
    assert since_ns("10m", now) == now - 600_000_000_000
    assert since_ns("90", now) == since_ns("1.5m", now) == now - 90_000_000_000
    assert since_ns("1d", now) == now - 86_400_000_000_000
    assert since_ns("2024-05-01T12:00:00Z", now) == EPOCH_NS
    assert since_ns("2024-05-01T14:00:00+02:00", now) == EPOCH_NS


def test_bad_since_is_one_line(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["show", str(log), "--since", "yesterday-ish"], capsys)
    assert code == 2 and err.startswith("nic-sandbox: error:") and "--since" in err
    assert len(err.strip().splitlines()) == 1


# -- verify ------------------------------------------------------------------------------------------
def test_verify_intact_log(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["verify", str(log)], capsys)
    assert (code, out) == (0, "OK: 30 records, chain intact\n")


def test_verify_reports_a_flipped_byte(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = log.read_bytes().splitlines(keepends=True)
    lines[12] = lines[12].replace(b'"owner":"kernel"', b'"owner":"kernal"')
    log.write_bytes(b"".join(lines))
    code, out, _ = run(["verify", str(log)], capsys)
    assert code == 1
    assert out.startswith("TAMPERED: record altered: hash mismatch") and out.endswith(" at seq 12\n")


def test_verify_reports_a_deleted_record_and_a_cut(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:7] + lines[8:]))
    code, out, _ = run(["verify", str(log)], capsys)
    assert code == 1 and "records missing" in out and out.endswith("at seq 7\n")

    log.write_bytes(b"".join(lines)[:-30])
    code, out, _ = run(["verify", str(log)], capsys)
    assert code == 1 and "cut" in out and out.endswith("at seq 29\n")


def test_verify_expands_rotated_siblings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_log(tmp_path / "audit.jsonl", 40, rotate_bytes=3_000)
    code, out, _ = run(["verify", str(path)], capsys)
    assert (code, out) == (0, "OK: 40 records, chain intact\n")
    (tmp_path / "audit.jsonl.1").unlink()
    code, out, _ = run(["verify", str(path)], capsys)
    assert code == 1 and out.endswith("at seq 0\n")


# -- plot ----------------------------------------------------------------------------------------------
def test_plot_writes_a_png(log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "rejections.png"
    code, out, err = run(["plot", str(log), "-o", str(png)], capsys)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in out


def test_plot_without_matplotlib_is_one_line(log: Path, tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None  # as if it were not installed\n"
        "from sandbox.cli import main\n"
        f"sys.exit(main(['audit', 'plot', {str(log)!r}, '-o', {str(tmp_path / 'x.png')!r}]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("nic-sandbox: error: plot needs matplotlib")
    assert len(done.stderr.strip().splitlines()) == 1


# -- follow -----------------------------------------------------------------------------------------------
def start_follow(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "sandbox", "audit", "follow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_lines(proc: subprocess.Popen[str], n: int) -> Iterator[str]:
    assert proc.stdout is not None
    for _ in range(n):
        line = proc.stdout.readline()
        assert line, "follow ended early"
        yield line


def test_follow_sees_appended_records_across_a_rotation(tmp_path: Path) -> None:
    path = make_log(tmp_path / "audit.jsonl", 2, rotate_bytes=2_000)
    proc = start_follow(str(path), "--from-start", "--max-records", "12", "--timeout", "30")
    try:
        first = list(read_lines(proc, 2))
        assert first[0].startswith("#0 2024-05-01T12:00:00.000000000Z alice(1) nic0/tx0[0] LEN_ZERO")
        with AuditLog(path, "verifier", rotate_bytes=2_000, clock=clock(EPOCH_NS + 10**9)) as log:
            for i in range(2, 12):
                add(log, i)
                log.commit()
        rest = list(read_lines(proc, 10))
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert (tmp_path / "audit.jsonl.1").exists()  # the log rotated under the follower
    assert [int(line.split()[0][1:]) for line in first + rest] == list(range(12))
    assert all(len(line.strip().splitlines()) == 1 for line in rest)


def test_follow_starts_at_the_end_and_stops_on_timeout(log: Path) -> None:
    done = run_cli("follow", str(log), "--timeout", "0.3")  # run_cli's own time-out fails the test if it hangs
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""


def test_follow_stops_cleanly_on_ctrl_c(log: Path) -> None:
    proc = start_follow(str(log), "--from-start", "--timeout", "30")
    try:
        list(read_lines(proc, 30))  # it is running and has printed the log so far
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


# -- bad input -----------------------------------------------------------------------------------------------
BAD_FILES = {
    "random binary": random.Random(5).randbytes(4096),
    "text": b"Lorem ipsum dolor sit amet\nconsectetur adipiscing elit\n",
    "pcap": bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000") + bytes(64),
}
ACTIONS = {
    "summary": ["summary"],
    "show": ["show"],
    "verify": ["verify"],
    "follow": ["follow", "--timeout", "0.1"],
    "plot": ["plot", "-o", "out.png"],
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("bad", [*sorted(BAD_FILES), "missing file", "directory", "unreadable"])
def test_bad_input_is_one_line_and_exit_2(
    action: str, bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "input.jsonl"
    if bad in BAD_FILES:
        path.write_bytes(BAD_FILES[bad])
    elif bad == "directory":
        path.mkdir()
    elif bad == "unreadable":  # opens, but its first read fails (EIO: the process's own memory at address 0)
        path.symlink_to("/proc/self/mem")
    args = ACTIONS[action]
    args = [args[0], str(path), *[str(tmp_path / a) if a.endswith(".png") else a for a in args[1:]]]
    code, out, err = run(args, capsys)
    assert code == 2, out
    err = err.strip()
    assert err.startswith("nic-sandbox: error:") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    expected = {"missing file": "no such audit log", "unreadable": "Input/output error"}.get(bad, "not an audit log")
    assert expected in err and str(path) in err


def test_a_damaged_log_in_show_is_one_line_and_exit_2(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log.write_bytes(log.read_bytes()[:-5])
    code, _, err = run(["show", str(log)], capsys)
    assert code == 2 and "torn record after seq 28" in err and len(err.strip().splitlines()) == 1


def test_audit_needs_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([], capsys)
    assert code == 2 and err.startswith("nic-sandbox: error:")


# -- issue 11: every problem, anchors, one writer, clocks, budgets ----------------------------------------
def test_verify_prints_every_problem_with_its_true_name(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = log.read_bytes().splitlines(keepends=True)
    lines[3], lines[4] = lines[4], lines[3]
    del lines[20]
    log.write_bytes(b"".join(lines))
    code, out, _ = run(["verify", str(log)], capsys)
    assert code == 1
    assert out.splitlines() == [
        "TAMPERED: records out of order: seq 3 comes after seq 4 (audit.jsonl:5) at seq 3",
        "TAMPERED: records missing: expected seq 20, found 21 (audit.jsonl:21) at seq 20",
    ]
    code, out, _ = run(["verify", str(log), "--json"], capsys)
    verdict = json.loads(out)
    assert code == 1 and not verdict["ok"] and [p["seq"] for p in verdict["problems"]] == [3, 20]


def test_seal_then_verify_with_the_anchor_catches_a_cut(
    log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    anchor = tmp_path / "audit.anchor"
    code, out, _ = run(["seal", str(log), "-o", str(anchor), "--key-file", str(key)], capsys)
    assert code == 0 and out.startswith("sealed seq 29 head ")
    assert b"s3cret" not in anchor.read_bytes() and b"s3cret" not in log.read_bytes()
    code, out, _ = run(["verify", str(log), "--anchor", str(anchor), "--key-file", str(key)], capsys)
    assert (code, out) == (0, "OK: 30 records, chain intact, anchored at seq 29\n")

    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:25]))
    code, out, _ = run(["verify", str(log), "--anchor", str(anchor)], capsys)
    assert code == 1 and out.splitlines() == [
        "note: audit.anchor is sealed with a key; no key given, so its MAC was not checked",
        "TAMPERED: log cut: the anchor holds seq 29, the log ends at seq 24 (anchor) at seq 25",
    ]
    monkeypatch.setenv("NIC_SANDBOX_AUDIT_KEY", "wrong")
    code, out, _ = run(["verify", str(log), "--anchor", str(anchor)], capsys)
    assert code == 1 and "TAMPERED: anchor forged: the MAC of audit.anchor does not match the key" in out


def test_seal_refuses_a_tampered_log(log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:5] + lines[6:]))
    anchor = tmp_path / "audit.anchor"
    code, out, _ = run(["seal", str(log), "-o", str(anchor)], capsys)
    assert code == 1 and not anchor.exists() and out.splitlines()[-1] == f"not sealed: {anchor} not written"


def test_bad_anchor_and_key_files_are_one_line(log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bogus.anchor"
    bogus.write_text("hello\n")
    code, out, err = run(["verify", str(log), "--anchor", str(bogus)], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "bogus.anchor: not an audit anchor" in err
    code, _, err = run(["seal", str(log), "-o", str(tmp_path / "a"), "--key-file", str(tmp_path / "nokey")], capsys)
    assert code == 2 and err.count("\n") == 1 and "--key-file" in err
    code, _, err = run(["seal", str(log), "-o", str(tmp_path / "no" / "such" / "dir")], capsys)
    assert code == 2 and err.count("\n") == 1 and "dir: cannot write the anchor" in err


def test_summary_names_the_clock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wall, virtual = tmp_path / "wall.jsonl", tmp_path / "virtual.jsonl"
    for path, clock_flag in ((wall, []), (virtual, ["--audit-clock", "virtual"])):
        code = cli.main(["demo", "attack", "--protection", "verifier", "--audit-log", str(path), *clock_flag, "--json"])
        assert code == 0
    capsys.readouterr()
    code, out, _ = run(["summary", str(wall), "--json"], capsys)
    summary = json.loads(out)
    assert summary["clock"] == "wall" and summary["first_wall"] > "2024"
    code, out, _ = run(["summary", str(virtual)], capsys)
    assert "clock: virtual (deterministic" in out and "(virtual clock: not real time)" in out
    code, out, _ = run(["show", str(wall), "--since", "10m", "--json"], capsys)  # the help's own example
    assert code == 0 and len(out.splitlines()) == summary["records"] > 0


def test_an_appended_virtual_run_goes_on_counting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    for _ in range(2):
        argv = ["demo", "attack", "--protection", "verifier", "--audit-log", str(path), "--audit-clock", "virtual"]
        assert cli.main([*argv, "--json"]) == 0
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert [r["mono_ns"] for r in records] == [1000 * r["seq"] for r in records]
    assert run(["verify", str(path)], capsys)[0] == 0


def test_a_second_writer_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, "verifier"):
        code = cli.main(["demo", "attack", "--audit-log", str(path), "--json"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{path}: another writer has this audit log open" in err


@pytest.mark.parametrize("size", ["lots", "12Q", "100"])
def test_a_bad_audit_budget_is_one_line(size: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["demo", "attack", "--audit-log", str(tmp_path / "a.jsonl"), "--audit-max-bytes", size])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--audit-max-bytes" in err


def test_the_fuzz_campaign_says_how_much_audit_log_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fuzz", "--protection", "verifier", "--iterations", "8", "--batch", "16", "--out", str(tmp_path / "fz")]
    code = cli.main([*argv, "--audit-max-bytes", "32K"])
    out = capsys.readouterr().out
    assert code == 0, out  # the oracle still checks a log whose oldest records the budget deleted
    line = next(line for line in out.splitlines() if line.startswith("audit log "))
    kept = sorted((tmp_path / "fz").glob("audit.jsonl*"))
    size = sum(p.stat().st_size for p in kept if p.suffix != ".pruned")
    assert f"{len(kept) - 1} files kept ({size / 1e3:.1f} kB), " in line and " kB written, " in line, line
    assert "pruned (" in line  # a 32K budget: the oldest files went
