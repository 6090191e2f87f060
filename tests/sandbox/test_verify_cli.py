"""``nic-sandbox verify --format xdp`` without a kernel: JSON verdicts, tables, help, and one-line errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sandbox import cli
from sandbox.commands.verify import Agreement
from tests.sandbox.test_cli import ROOT, run_cli

UMEM = ["--format", "xdp", "--umem-size", "0x100000", "--chunk-size", "2048"]
LINES = (
    '{"addr": 0, "len": 64, "options": 0}\n'
    "\n"
    '{"addr": "0x7ff", "len": 2, "options": "0x0"}\n'
    '{"addr": "0x100000", "len": 1, "options": 0, "class": "beyond"}\n'
    '{"addr": 0, "len": 64, "options": 1}\n'
    '{"addr": 0, "len": 0, "options": 0}\n'
)


def verify(args: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None,
           monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:  # fmt: skip
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(["verify", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_one_verdict_per_descriptor_in_order(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = verify([*UMEM, "--json"], capsys, LINES, monkeypatch)
    assert code == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"index": 0, "accepted": True, "reason": None},
        {"index": 1, "accepted": False, "reason": "XDP_CHUNK_CROSSED"},
        {"index": 2, "accepted": False, "reason": "XDP_ADDR_OUT_OF_UMEM"},
        {"index": 3, "accepted": False, "reason": "PKT_BAD_FRAGMENT"},  # its packet ends at the invalid one
        {"index": 4, "accepted": False, "reason": "LEN_ZERO"},
    ]


def test_table_names_reasons_and_totals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(LINES)
    code, out, err = verify([*UMEM, "--input", str(path)], capsys)
    assert code == 0, err
    assert "XDP_CHUNK_CROSSED" in out and "beyond" in out and "accepted" in out
    assert "5 descriptors: 1 accepted, 4 rejected" in out
    code, out, _ = verify([*UMEM, "--input", str(path), "--summary"], capsys)
    assert code == 0 and "0x7ff" not in out and "5 descriptors" in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"addr": 0, "len": 1, "options": 0}\n{"addr": 0, "len": 1}\n', 'line 2: missing "options"'),
        ('{"addr": 0, "len": 1, "options": 0}\n\n{"addr": 0, "len": 1, "options": 0\n', "line 3: not JSON"),
        ("[1, 2]\n", "line 1: expected an object"),
        ('{"addr": -1, "len": 1, "options": 0}\n', "does not fit in an unsigned 64-bit field"),
        ('{"addr": 0, "len": 4294967296, "options": 0}\n', "does not fit in an unsigned 32-bit field"),
        ('{"addr": "0xzz", "len": 1, "options": 0}\n', "line 1: \"addr\" '0xzz' is not an integer"),
        ('{"addr": true, "len": 1, "options": 0}\n', "must be an integer"),
        ('{"addr": 0, "len": 1, "options": 0, "lenght": 2}\n', "unknown key 'lenght'"),
    ],
)
def test_bad_line_is_one_line_exit_2(
    text: str, message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = verify([*UMEM, "--json"], capsys, text, monkeypatch)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xdp", "--umem-size", "0x100000", "--chunk-size", "1024"], "xdp_umem_reg"),
        (["--format", "xdp", "--umem-size", "0x100000", "--chunk-size", "3000"], "not a power of two"),
        (["--format", "xdp", "--umem-size", "1000", "--chunk-size", "2048", "--unaligned"], "between 1 and"),
        ([*UMEM, "--tx-metadata-len", "12"], "must be 0 or a multiple of 8 from"),
        ([*UMEM, "--tx-metadata-len", "256"], "to 248"),
        ([*UMEM, "--umem-image", "/nonexistent/umem.bin", "--input", "/dev/null"], "No such file"),
        ([*UMEM, "--umem-image", "/dev/null", "--generate", "5"], "--generate makes its own"),
        ([*UMEM, "--umem-size", "lots"], "--umem-size must be an integer"),
        ([*UMEM, "--seed", "3", "--input", "/dev/null"], "--seed only applies with --generate"),
        ([*UMEM, "--generate", "5", "--emit", "--json"], "--emit prints"),
        ([*UMEM, "--generate", "5", "--input", "x"], "not allowed with"),
        ([*UMEM, "--input", "/nonexistent/d.jsonl"], "No such file"),
        (["--format", "e1000", "--umem-size", "1", "--chunk-size", "2048"], "invalid choice"),
        ([*UMEM, "--against", "qemu"], "invalid choice"),
    ],
)
def test_bad_usage_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = verify(args, capsys)
    assert code == 2
    assert err.count("\n") == 1 and message in err, err


META_UMEM = [*UMEM, "--chunk-size", "4096", "--tx-metadata-len", "32"]


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ('"meta": 2', '"meta" must be an object'),
        ('"meta": {"flags": -1}', 'meta."flags" -1 does not fit in an unsigned 64-bit field'),
        ('"meta": {"csum_start": 65536}', 'meta."csum_start" 65536 does not fit in an unsigned 16-bit field'),
        ('"meta": {"csum_offset": "0x10000"}', "unsigned 16-bit"),
        ('"meta": {"csum_offset": 1.5}', "must be an integer"),
        ('"meta": {"flags": null}', "must be an integer"),
        ('"meta": {"flags": "lots"}', "'lots' is not an integer"),
        ('"meta": {"launch_time": 18446744073709551616}', "unsigned 64-bit"),
        ('"meta": {"flag": 1}', "unknown \"meta\" key 'flag'"),
    ],
)
def test_bad_metadata_is_one_line_exit_2(
    meta: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "meta.jsonl"
    path.write_text('{"addr": 32, "len": 64, "options": 2}\n{"addr": 32, "len": 64, "options": 2, ' + meta + "}\n")
    code, out, err = verify([*META_UMEM, "--input", str(path), "--json"], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"{path}: line 2: " in err and message in err, err


def test_metadata_in_the_lines(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    lines = (
        '{"addr": 32, "len": 64, "options": 2}\n'
        '{"addr": 4128, "len": 64, "options": 2, "meta": {"flags": 3, "csum_start": 60, "csum_offset": 2}}\n'
        '{"addr": 8224, "len": 64, "options": 2, "meta": {"flags": "0x2", "csum_start": 60, "csum_offset": 3}}\n'
        '{"addr": 12320, "len": 64, "options": 2, "meta": {"flags": "0x10"}}\n'
        '{"addr": 16416, "len": 64, "options": 0, "meta": {"flags": "0x10"}}\n'
        '{"addr": 20512, "len": 64, "options": 2, "meta": {"flags": 4, "launch_time": 99}}\n'
    )
    code, out, err = verify([*META_UMEM, "--json"], capsys, lines, monkeypatch)
    assert code == 0, err
    assert [json.loads(line)["reason"] for line in out.splitlines()] == [
        None, None, "XDP_METADATA_CSUM_BEYOND_LEN", "XDP_METADATA_FLAGS_UNKNOWN", None, None,
    ]  # fmt: skip


def test_metadata_from_a_umem_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = np.zeros(0x100000, np.uint8)
    image[4096 : 4096 + 8] = np.frombuffer((1 << 20).to_bytes(8, "little"), np.uint8)  # flags: an unknown bit
    (tmp_path / "umem.bin").write_bytes(image.tobytes())
    lines = tmp_path / "d.jsonl"
    lines.write_text('{"addr": 4128, "len": 64, "options": 2}\n{"addr": 8224, "len": 64, "options": 2}\n')
    args = [*META_UMEM, "--umem-image", str(tmp_path / "umem.bin"), "--input", str(lines)]
    code, out, err = verify([*args, "--json"], capsys)
    assert code == 0, err
    assert [json.loads(line)["reason"] for line in out.splitlines()] == ["XDP_METADATA_FLAGS_UNKNOWN", None]
    code, out, _ = verify(args, capsys)
    assert code == 0 and "flags 0x100000" in out  # the table shows the metadata it judged
    (tmp_path / "short.bin").write_bytes(image[:-1].tobytes())
    code, _, err = verify([*META_UMEM, "--umem-image", str(tmp_path / "short.bin"), "--input", str(lines)], capsys)
    assert code == 2 and err.count("\n") == 1 and "1,048,575 bytes, but the UMEM (--umem-size) is 1,048,576" in err
    lines.write_text('{"addr": 4128, "len": 64, "options": 2, "meta": {"flags": 1}}\n')
    code, _, err = verify(args, capsys)
    assert code == 2 and err.count("\n") == 1 and "--umem-image gives it too" in err


def test_without_a_probe_the_newest_rules_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not root (or no AF_XDP): the rules of the newest documented kernel, said once on stderr."""
    import driver.afxdp.probe as probe
    from sandbox.commands import verify as verify_cli

    def refuse() -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(probe, "smallest_tx_metadata_len", refuse)
    verify_cli.running_kernel_rules.cache_clear()
    try:
        code, _, err = verify([*UMEM, "--tx-metadata-len", "8", "--generate", "3"], capsys)
        assert code == 2 and err.count("\n") == 2, err
        assert "cannot ask this kernel" in err and "Operation not permitted" in err and "from 16 to 248" in err
        code, out, err = verify([*UMEM, "--tx-metadata-len", "16", "--generate", "30", "--json"], capsys)
        assert code == 0 and err == "" and len(out.splitlines()) == 30  # asked once per process: no second line
    finally:
        verify_cli.running_kernel_rules.cache_clear()


def test_emit_round_trips_through_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--format", "xdp", "--umem-size", "3000000", "--chunk-size", "3000", "--unaligned"]
    code, emitted, _ = verify([*args, "--generate", "400", "--seed", "9", "--emit"], capsys)
    assert code == 0 and len(emitted.splitlines()) == 400
    assert all("class" in json.loads(line) for line in emitted.splitlines())
    path = tmp_path / "cases.jsonl"
    path.write_text(emitted)
    _, from_file, _ = verify([*args, "--input", str(path), "--json"], capsys)
    _, generated, _ = verify([*args, "--generate", "400", "--seed", "9", "--json"], capsys)
    assert from_file == generated and len(from_file.splitlines()) == 400
    # with a metadata area the generated metadata goes along, and comes back
    args = [*args, "--tx-metadata-len", "24"]
    _, emitted, _ = verify([*args, "--generate", "2000", "--seed", "9", "--emit"], capsys)
    assert any("meta" in json.loads(line) for line in emitted.splitlines())
    path.write_text(emitted)
    _, from_file, _ = verify([*args, "--input", str(path), "--json"], capsys)
    _, generated, _ = verify([*args, "--generate", "2000", "--seed", "9", "--json"], capsys)
    assert from_file == generated and "XDP_METADATA_FLAGS_UNKNOWN" in generated


def test_help_teaches() -> None:
    done = run_cli("verify", "--help")
    assert done.returncode == 0
    for text in ("examples:", "--against kernel", "--generate", "xp_aligned_validate_desc", "exit codes"):
        assert text in done.stdout
    assert "verify" in run_cli("--help").stdout


def test_stdin_through_the_real_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "verify", *UMEM, "--json"],
        input='{"addr": 4096, "len": 60, "options": 0}\n', capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"index": 0, "accepted": True, "reason": None}


def test_agreement_counts() -> None:
    agreement = Agreement(np.array([True, True, False, False]), np.array([True, False, False, True]), 0.5)
    assert agreement.disagreements == [1, 3]
    assert agreement.counts() == {
        "descriptors": 4, "agree": 2, "disagree": 2, "accepted_by_both": 1, "rejected_by_both": 1,
        "only_verifier_accepts": 1, "only_kernel_accepts": 1,
    }  # fmt: skip
