"""``nic-sandbox fuzz``: exit codes 0/1/2, report files, reproducers, replay."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sandbox import cli

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["fuzz", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_escapes_exit_1_with_report_and_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "fz"
    code, out, err = run(
        ["--protection", "none", "--iterations", "4", "--classes", "kernel-tx,straddle", "--out", str(out_dir)], capsys
    )
    assert code == 1, err
    assert "kernel-tx" in out and "escapes" in out
    report = json.loads((out_dir / "report.json").read_text())
    assert report["protection"] == "none" and report["escapes"] > 0
    assert set(report["classes"]) == {"kernel-tx", "straddle"}
    assert report["classes"]["kernel-tx"]["generated"] == 256
    assert "| kernel-tx |" in (out_dir / "report.md").read_text()
    cases = sorted((out_dir / "cases").glob("*.json"))
    assert cases and all(f["case"] and f["reproduces"] for f in report["findings"])
    code, out, _ = run(["replay", str(cases[0])], capsys)
    assert code == 1 and "ESCAPE" in out
    code, out, _ = run(["replay", str(cases[0]), "--protection", "verifier"], capsys)
    assert code == 0 and "no escape" in out


def test_no_escape_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "audit.jsonl"
    code, out, err = run(
        [
            "--protection",
            "verifier",
            "--iterations",
            "13",
            "--batch",
            "16",
            "--out",
            str(tmp_path),
            "--audit-log",
            str(log),
        ],
        capsys,
    )
    assert code == 0, err
    assert "no escapes" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["escapes"] == 0 and report["findings"] == []
    rejected = sum(c["rejected"] for c in report["classes"].values())
    assert rejected > 0
    records = [line for line in log.read_text().splitlines() if '"checkpoint":' not in line]  # v2: one per batch
    assert len(records) == rejected  # one audit record per rejection


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--classes", "kernel-tx,nope"], "unknown attack class: nope (known: kernel-tx"),
        (["--iterations", "0"], "--iterations must be between"),
        (["--seconds", "1", "--iterations", "3"], "not allowed with"),
        (["--protection", "nope"], "invalid choice"),
        (["replay"], "the following arguments are required: CASE.json"),
        (["replay", "/nonexistent/case.json"], "cannot read"),
        (["replay", "x.json", "--seed", "3"], "unrecognized arguments: --seed 3"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_usage_exit_2_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(args, capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_replay_corpus_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "case.json"
    shutil.copy(CORPUS / "none-kernel-tx-leak.json", case)
    code, out, _ = run(["replay", str(case), "--json"], capsys)
    assert code == 1
    report = json.loads(out)
    assert report["verdict"] == "escapes" and report["steps"][0]["escapes"]
    code, out, _ = run(["replay", str(case), "--protection", "verifier", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["steps"][0]["reasons"] == ["ADDR_NOT_PINNED"]


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["fuzz", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "fuzz replay" in text and "kernel-tx" in text
