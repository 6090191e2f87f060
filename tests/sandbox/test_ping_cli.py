"""``nic-sandbox demo ping`` as a user meets it without root: help, the scenario, and one-line refusals.

Every refusal here happens before anything is created, so these run anywhere.
"""

from __future__ import annotations

import pytest

from sandbox import cli

BAD = [
    (["demo", "ping", "--interval", "0"], "--interval must be between 0.002 and 60"),
    (["demo", "ping", "--interval", "soon"], "--interval must be a number"),
    (["demo", "ping", "--size", "20"], "--size must be between 64 and 1,518"),
    (["demo", "ping", "--count", "0"], "--count must be between 1 and"),
    (["demo", "ping", "--batch", "8"], "unrecognized arguments: --batch 8"),
    (["demo", "ping", "--no-pcap"], "unrecognized arguments: --no-pcap"),
    (["demo", "ping", "--serve", "--count", "3"], "--count do not apply to --serve"),
    (["demo", "ping", "--serve", "--json"], "--json do not apply to --serve"),
    (["demo", "--serve"], "unrecognized arguments: --serve"),
    (["demo", "attack", "--interval", "1"], "unrecognized arguments: --interval 1"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_flags_exit_2_with_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("nic-sandbox: error: ") and message in lines[0]
    assert "Traceback" not in captured.err


def test_help_explains_the_ping_demo(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["demo", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for needle in ("ping (root)", "198.18.0.1/24", "demo ping --serve"):
        assert needle in text
    with pytest.raises(SystemExit) as done:  # the ping demo's own flags are in its own help
        cli.main(["demo", "ping", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for needle in ("ping (root)", "--interval", "--serve", "198.18.0.1/24", "demo ping --serve", "SIZE - 46"):
        assert needle in text


def test_the_ping_scenario_is_printed_commented(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["scenario", "ping"]) == 0
    text = capsys.readouterr().out
    assert 'ip = "198.18.0.2"' in text and "No [[cable]]" in text
