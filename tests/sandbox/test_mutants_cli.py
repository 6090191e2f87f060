"""``nic-sandbox mutants``: the list, and bad input refused in one line with exit code 2 before anything runs."""

from __future__ import annotations

import pytest

from sandbox import cli


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["mutants", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_shows_ids_and_marks_the_equivalent(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--list", "--files", "fastpath.c"], capsys)
    assert code == 0
    rows = out.splitlines()
    assert rows and all(row.startswith("fastpath.") and "fastpath.c:" in row for row in rows)
    assert any(row.endswith("(equivalent)") for row in rows)
    assert any("\tsemantic\t" in row for row in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "checks.nothing.cmp-boundary.000000"], "--only: no mutant checks.nothing"),
        (["--files", "kernel.py"], "--files: no mutated file ends with kernel.py"),
        (["--seconds", "0"], "--seconds must be between"),
        (["--seconds", "5", "--iterations", "5"], "not allowed with argument"),
        (["--tests", "tests/nowhere", "--only", "pins.PinTable.covers.drop-one.07fc0b"], "--tests: tests/nowhere"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(args, capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
