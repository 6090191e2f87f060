"""``nic-sandbox bench doorbell`` on a small budget: sane numbers, a real PNG, one-line errors, a kept partial run."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import cli
from tests.needs import need_module

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = ["--max-batch", "16", "--repeats", "2"]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["bench", "doorbell", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_numbers_are_sane_and_the_png_is_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need_module("matplotlib", "nic-sandbox[plot]")
    png = tmp_path / "plots" / "doorbell.png"  # a missing folder is made
    code, out, err = run([*SMALL, "--png", str(png), "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert report["png"] == str(png)
    assert report["sizes"] == [1, 2, 3, 4, 6, 8, 11, 16]
    assert report["stopped"] is None and report["doorbells"] == 4 * 8 * 2
    assert "device's fetch and send excluded" in report["timed"]
    assert set(report["modes"]) == {"none", "verifier", "iommu", "unsafe-inplace"}
    for mode, figures in report["modes"].items():
        assert figures["a_ns"] > 0, mode  # a doorbell costs something, whatever it brings
        assert math.isfinite(figures["b_ns"]) and math.isfinite(figures["relative_rms"])
        assert len(figures["points"]) == 8
        for point in figures["points"]:
            assert point["samples"] == 2 and point["median_ns"] > 0
            assert point["p25_ns"] <= point["median_ns"] <= point["p75_ns"]
            assert math.isfinite(point["residual_ns"]) and math.isfinite(point["residual_relative"])
            assert point["fitted_ns"] + point["residual_ns"] == pytest.approx(point["median_ns"])


def test_tables_name_what_is_timed_and_every_point(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--modes", "verifier,none", "--sizes", "8,1,64", "--repeats", "1", "--with-device"], capsys)
    assert code == 0, err
    assert out.startswith("timed: the tenant's tail write")
    assert "device's fetch, gather and send" in out
    assert "a: fixed ns" in out and "a/b: batch" in out and "fit RMS" in out
    assert out.index("verifier") < out.index("none")  # the order given
    for n in ("1", "8", "64"):
        assert f"\n│ {n:>5} │" in out
    assert "bench doorbell: 2 mode(s) x 3 batch sizes x 1 repeats" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--modes", "fast"], "--modes: unknown protection mode 'fast'"),
        (["--modes", "none,none"], "--modes: none is named twice"),
        (["--modes", ""], "--modes: unknown protection mode ''"),
        (["--sizes", "4"], "--sizes: a line needs two different batch sizes"),
        (["--sizes", "4,4"], "--sizes: a line needs two different batch sizes"),
        (["--sizes", "0,4"], "--sizes: a batch size must be between 1 and 16,384, got 0"),
        (["--sizes", "1,99999"], "--sizes: a batch size must be between 1 and 16,384"),
        (["--sizes", "1,two"], "--sizes: a batch size must be an integer, got 'two'"),
        (["--sizes", ",".join(["1"] * 201)], "--sizes: at most 200 batch sizes"),
        (["--sizes", "1,2", "--max-batch", "8"], "not allowed with argument"),
        (["--max-batch", "1"], "--max-batch must be between 2 and 16,384"),
        (["--max-batch", "65536"], "--max-batch must be between 2 and 16,384"),
        (["--repeats", "0"], "--repeats must be between 1 and 100,000"),
        (["--repeats", "1e3"], "--repeats must be an integer"),
        (["--seconds", "nan"], "--seconds must be a finite number"),
        (["--seconds", "-1"], "--seconds must be between"),
        (["--png", ""], "--png '': not a usable file name"),
        (["--png", "/"], "--png /: is a directory"),
        (["--png", "/proc/version/x.png"], "--png /proc/version/x.png: /proc/version is a file"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(args, capsys)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("nic-sandbox: error: ")
    assert message in err


def test_bench_alone_names_its_benchmarks(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench"]) == 2
    assert "required: BENCH" in capsys.readouterr().err


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["bench", "doorbell", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("What is timed", "TCTL.EN", "a/b", "least squares", "examples:", "--with-device", "exit codes"):
        assert phrase in text


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)


def test_png_without_matplotlib_is_one_line_before_any_measuring(tmp_path: Path) -> None:
    done = _python(
        "import sys; sys.modules['matplotlib'] = None  # as if it were not installed\n"
        "from sandbox.cli import main\n"
        f"sys.exit(main(['bench', 'doorbell', '--png', {str(tmp_path / 'x.png')!r}]))\n"
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "nic-sandbox: error: --png needs matplotlib, which is not installed (pip install 'nic-sandbox[plot]')"
    )
    assert done.stdout == ""


def test_sigterm_keeps_and_prints_what_was_measured() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "bench", "doorbell", "--modes", "none", "--max-batch", "8",
         "--repeats", "100000", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    started = proc.stderr.readline()  # printed once the stop request is armed
    assert started.startswith("bench doorbell: 1 mode(s)")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    report = json.loads(out)
    assert report["stopped"] == "SIGTERM"
    assert report["doorbells"] < 100000 * 6
