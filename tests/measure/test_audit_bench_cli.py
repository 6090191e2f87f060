"""``nic-sandbox audit bench`` on a small budget, its flags, and the demos' durability line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sandbox import cli


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--rates", "0"], "--rates"),
        (["--rates", "1,,2"], "--rates"),
        (["--rates", "fast"], "--rates"),
        (["--batches", "0"], "--batches"),
        (["--batches", "1.5"], "--batches"),
        (["--interval", "0"], "--interval"),
        (["--interval", "inf"], "--interval"),
        (["--seconds", "0.1"], "--seconds"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_bench_flags_exit_2_naming_the_flag(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["audit", "bench", "--dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and flag in err


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--fsync", "always", "--fsync-batch", "8"], "--fsync-batch"),
        (["--fsync", "never", "--fsync-interval", "5"], "--fsync-interval"),
        (["--fsync-batch", "0"], "--fsync-batch"),
        (["--fsync-batch", "many"], "--fsync-batch"),
        (["--fsync-interval", "-1"], "--fsync-interval"),
        (["--fsync-interval", "nan"], "--fsync-interval"),
    ],
)
def test_bad_group_commit_flags_exit_2(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["demo", "attack", "--audit-log", str(tmp_path / "a.jsonl"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and flag in err
    assert not (tmp_path / "a.jsonl").exists()


def test_the_demo_says_its_durability_setting(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    args = ["demo", "attack", "--audit-log", str(log), "--fsync-batch", "4", "--fsync-interval", "2"]
    assert cli.main(args) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("audit durability:")]
    assert lines == [
        "audit durability: fsync batch, group commit: one fsync per 4 records or 2 ms, whichever comes first "
        "(a record is durable when that fsync returns)"
    ]
    assert cli.main(["audit", "verify", str(log)]) == 0
    capsys.readouterr()
    json_args = ["demo", "attack", "--audit-log", str(tmp_path / "b.jsonl"), "--json", "--fsync-interval", "3"]
    assert cli.main(json_args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["fsync"], doc["fsync_batch"], doc["fsync_interval_ms"]) == ("batch", 4096, 3.0)


def test_bench_on_a_small_budget_draws_its_png_and_sane_numbers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "durability.png"
    args = ["audit", "bench", "--seconds", "2", "--rates", "200", "--batches", "1,8", "--interval", "5"]
    assert cli.main([*args, "--dir", str(tmp_path), "--png", str(png), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["durability.png"]  # the scratch logs are gone
    assert [s["records_per_fsync_max"] for s in doc["settings"]] == [1, 8]
    for s in doc["settings"]:
        model, measured = s["model"], s["measured"]
        assert measured["records"] > 0 and 1 <= measured["group"] <= s["records_per_fsync_max"]
        for v in (model["mean_ms"], model["p99_ms"], measured["mean_ms"], measured["p50_ms"], measured["p99_ms"]):
            assert math.isfinite(v) and v > 0
        assert model["p50_ms"] <= model["p99_ms"] and measured["p50_ms"] <= measured["p99_ms"]
        assert 1 <= model["group"] <= s["records_per_fsync_max"]
    assert all(f["samples"] > 0 and f["mean_ms"] > 0 for f in doc["fsync"].values())
    assert [w["records_per_fsync"] for w in doc["writer"]] == [None, 1, 8]
    assert all(w["records_per_s"] > 0 for w in doc["writer"])


def test_bench_png_without_matplotlib_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; sys.modules['matplotlib'] = None  # as if it were not installed\n"
        "from sandbox.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "audit", "bench", "--dir", str(tmp_path), "--png", str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "nic-sandbox: error: --png needs matplotlib, which is not installed (pip install 'nic-sandbox[plot]')"
    )
