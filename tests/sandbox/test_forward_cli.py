"""``nic-sandbox demo forward``: its table, its JSON, its PNG, and one line with exit 2 for every bad flag."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import cli
from tests.needs import need_module

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--count", "1500"]


def run(args: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> tuple[int, str, str]:
    code = cli.main(["demo", "forward", *SMALL, "--audit-log", str(tmp_path / "audit.jsonl"), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_and_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    need_module("matplotlib", "nic-sandbox[plot]")
    png = tmp_path / "forward.png"
    code, out, err = run(["--json", "--png", str(png)], capsys, tmp_path)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(out)
    bp, drop = doc["runs"]
    assert (bp["policy"], drop["policy"]) == ("backpressure", "drop")
    for r in (bp, drop):
        assert r["offered"] == 1500 and r["counters_agree"] and r["corrupt"] == 0
        assert r["rates"]["consumed"] > 0 and r["latency_us"]["p99"] > 0
        assert len(r["occupancy"]["t_us"]) == len(r["occupancy"]["rx_ring"]) > 0
    assert bp["dropped"]["forwarder_ring_full"] == bp["dropped"]["hop2_mpc"] == 0
    assert drop["dropped"]["forwarder_ring_full"] > 0
    assert doc["fsync"] in ("always", "batch", "never")  # the durability setting it ran with (issue 14 section 4)


def test_table_names_where(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(["--no-backpressure", "--no-pause"], capsys, tmp_path)
    assert code == 0, err
    assert "dropped @ hop 2 (MPC)" in out and "drop (no PAUSE)" in out and "backpressure (" not in out
    assert "lost past the first hop" in out
    assert "audit durability: " in out
    assert "ring occupancy over time" in out and "100%" in out  # printed, not only plotted


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--rate", "0"], "--rate"),
        (["--consumer-rate", "nan"], "--consumer-rate"),
        (["--batch", "0"], "--batch"),
        (["--count", "-1"], "--count"),
        (["--period-us", "1e9"], "--period-us"),
        (["--size", "10"], "--size"),
        (["--engine", "threaded"], "--engine"),
        (["--no-backpressure", "--backpressure-only"], "--backpressure-only"),
        (["--png", "/dev/null/x.png"], "--png"),
    ],
)
def test_bad_flags_are_one_line_exit_2(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code: int | str | None
    try:
        code, _out, err = run(args, capsys, tmp_path)
    except SystemExit as exc:  # argparse's own refusals exit from inside the parser
        code, err = exc.code, capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and flag in err, err


def test_scenario_with_two_tenants_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "pp.toml"
    path.write_text(cli_scenario_text())
    code, _out, err = run(["--scenario", str(path)], capsys, tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "three tenants" in err


def cli_scenario_text() -> str:
    from world.scenario import default_text

    return default_text("pingpong")


def test_png_without_matplotlib_is_one_line(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None  # as if it were not installed\n"
        "from sandbox.cli import main\n"
        f"sys.exit(main(['demo', 'forward', '--png', {str(tmp_path / 'x.png')!r}]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("nic-sandbox: error: --png needs matplotlib")
    assert len(done.stderr.strip().splitlines()) == 1


def test_ctrl_c_keeps_what_was_measured(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["demo", "forward", "--count", "10000000", "--json", "--audit-log", str(tmp_path / "a.jsonl")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        out, err = proc.communicate(timeout=15)  # past the imports, into the run
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    doc = json.loads(out)
    (run,) = doc["runs"]  # the second run never started
    assert doc["stopped"] and run["offered"] > 0 and run["counters_agree"]


def test_batch_auto_json_and_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    need_module("matplotlib", "nic-sandbox[plot]")
    png = tmp_path / "tune.png"
    code = cli.main(
        ["demo", "forward", "--batch", "auto", "--periods", "9", "--json", "--png", str(png),
         "--audit-log", str(tmp_path / "a.jsonl")]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(captured.out)
    assert doc["batch"] == "auto" and doc["units"]["lambda"] == "kpps per us" and "virtual" in doc["clock"]
    assert [t["role"] for t in doc["trajectory"][:3]] == ["hold", "probe+", "probe-"] and len(doc["trajectory"]) == 9
    assert all(t["kpps"] > 0 and t["p99_us"] > 0 for t in doc["trajectory"])
    assert doc["counters_agree"] and doc["dropped_past_first_hop"] == 0 and doc["settled"][0]["batch"] > 0
    assert "fsync" in doc and "fsync_batch" in doc


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--batch", "sometimes"], "--batch"),
        (["--lambda", "1"], "--lambda"),
        (["--batch", "auto", "--lambda", "-1"], "--lambda"),
        (["--batch", "auto", "--periods", "2"], "--periods"),
        (["--batch", "auto", "--shift-at", "3"], "--shift-at"),
        (["--batch", "auto", "--shift-consumer-rate", "0"], "--shift-consumer-rate"),
        (["--batch", "auto", "--batch-start", "300"], "--batch-start"),
        (["--batch", "auto", "--no-backpressure"], "--no-backpressure"),
        (["--batch", "auto", "--count", "10"], "--count"),
    ],
)
def test_batch_auto_bad_flags_are_one_line_and_exit_2(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code: int | str | None
    try:
        code = cli.main(["demo", "forward", *args, "--audit-log", str(tmp_path / "a.jsonl")])
        err = capsys.readouterr().err
    except SystemExit as exc:  # argparse's own refusals exit from inside the parser
        code, err = exc.code, capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and flag in err, err


def test_a_png_the_system_refuses_to_write_is_one_line_after_the_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """/proc passes the up-front path check (root may write there) but refuses the file: one line, exit 2,
    and the report of the run is already printed."""
    need_module("matplotlib", "nic-sandbox[plot]")
    code, out, err = run(["--png", "/proc/nic-sandbox-nope/x.png"], capsys, tmp_path)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("nic-sandbox: error: --png /proc/nic-sandbox-nope/x.png")
    if os.geteuid() == 0:  # as another user the up-front check refuses /proc before the run
        assert "dropped past the first hop" in out
