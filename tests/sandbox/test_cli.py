"""The command line as a user meets it: help that teaches, one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import cli
from sandbox.parser import Parser
from world import scenario

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )


def test_help_teaches_with_examples() -> None:
    top = run_cli("--help")
    assert top.returncode == 0
    assert "examples:" in top.stdout and "nic-sandbox demo" in top.stdout
    demo = run_cli("demo", "--help")
    assert demo.returncode == 0
    for flag in ("--count", "--size", "--batch", "--pcap", "--scenario", "--engine", "--json"):
        assert flag in demo.stdout


def test_demo_json_reports_a_clean_run(tmp_path: Path) -> None:
    done = run_cli(
        "demo", "--count", "500", "--batch", "64", "--json", "--pcap", str(tmp_path / "x.pcap"),
        "--audit-log", str(tmp_path / "audit.jsonl"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["clean"] is True
    assert [d["received"] for d in report["directions"]] == [500, 500]
    assert report["pcaps"] == [str(tmp_path / "x.pcap")]
    assert (tmp_path / "x.pcap").stat().st_size > 500 * 2 * 60


def test_demo_table_names_the_pcap(tmp_path: Path) -> None:
    done = run_cli(
        "demo", "--count", "200", "--pcap", str(tmp_path / "t.pcap"), "--audit-log", str(tmp_path / "a.jsonl")
    )
    assert done.returncode == 0, done.stderr
    assert "alice→bob" in done.stdout and "lost" in done.stdout
    assert f"pcap: {tmp_path / 't.pcap'}" in done.stdout


@pytest.mark.parametrize(("clock", "words"), [("wall", "wall-clock time"), ("virtual", "virtual time")])
def test_demo_says_which_clock_its_audit_log_has(tmp_path: Path, clock: str, words: str) -> None:
    log = tmp_path / "a.jsonl"
    done = run_cli("demo", "--count", "64", "--no-pcap", "--audit-log", str(log), "--audit-clock", clock)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"audit log: {log}") and words in last, last


def test_scenario_command_prints_the_default_it_runs() -> None:
    done = run_cli("scenario")
    assert done.returncode == 0
    assert tomllib.loads(done.stdout)["name"] == "pingpong"
    assert scenario.parse(done.stdout, "<stdout>") == scenario.parse(scenario.default_text(), "<stdout>")


BAD_ARGS = [
    ["demo", "--count", "0"],
    ["demo", "--count", "many"],
    ["demo", "--size", "63"],
    ["demo", "--batch", "5000"],
    ["demo", "--engine", "quantum"],
    ["demo", "--pcap", "a", "--no-pcap"],
    ["demo", "nosuchdemo"],
    ["frobnicate"],
    [],
]


@pytest.mark.parametrize("args", BAD_ARGS, ids=lambda a: " ".join(a) or "<none>")
def test_bad_flags_give_one_line_and_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nic-sandbox: error:")
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


BAD_SCENARIOS = {
    "not toml": ("this is [not toml", "not valid TOML"),
    "unknown key": ('name = "x"\ncolour = "blue"\n', "colour: unknown key"),
    "bad mac": ('[[nic]]\nname = "n"\nmac = "02:00"\n', "nic[0].mac"),
    "multicast mac": ('[[nic]]\nname = "n"\nmac = "01:00:5e:00:00:01"\n', "multicast"),
    "routable ip": (
        '[[nic]]\nname = "n"\nmac = "02:00:00:00:00:01"\n[[tenant]]\nname = "t"\nnic = "n"\nip = "10.0.0.1"\n',
        "198.18.0.0/15",
    ),
    "ring not multiple of 8": (
        '[[nic]]\nname = "n"\nmac = "02:00:00:00:00:01"\n'
        '[[tenant]]\nname = "t"\nnic = "n"\nip = "198.18.0.1"\nring = 100\n',
        "multiple of 8",
    ),
    "unknown nic": ('[[tenant]]\nname = "t"\nnic = "n9"\nip = "198.18.0.1"\n', "unknown NIC"),
    "bad size": ('[memory]\nsize = "lots"\n', "memory.size"),
    "bad engine": ('engine = "warp"\n', "engine"),
    "one tenant": (
        '[[nic]]\nname = "n"\nmac = "02:00:00:00:00:01"\n[[tenant]]\nname = "t"\nnic = "n"\nip = "198.18.0.1"\n',
        "two tenants",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SCENARIOS))
def test_bad_scenario_files_give_one_line_and_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BAD_SCENARIOS[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert cli.main(["demo", "--scenario", str(path), "--no-pcap", "--count", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert expected in err
    assert str(path) in err


def test_missing_scenario_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--scenario", "/no/such/file.toml"]) == 2
    assert "no such scenario file" in capsys.readouterr().err


def test_custom_scenario_runs(tmp_path: Path) -> None:
    text = scenario.default_text().replace('size = "64MiB"', 'size = "16MiB"').replace("ring = 512", "ring = 64")
    path = tmp_path / "small.toml"
    path.write_text(text)
    done = run_cli(
        "demo",
        "--scenario",
        str(path),
        "--count",
        "300",
        "--no-pcap",
        "--json",
        "--audit-log",
        str(tmp_path / "a.jsonl"),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["clean"] is True


def test_scenario_command_prints_the_attack_scenario() -> None:
    done = run_cli("scenario", "attack")
    assert done.returncode == 0
    parsed = scenario.parse(done.stdout, "<stdout>")
    assert {t.name for t in parsed.tenants} == {"alice", "bob", "mallory", "eve"}


#: Each demo kind, and flags that only another kind takes: argparse refuses them for this kind.
FOREIGN_FLAGS = [
    (["demo"], ["--interval", "1"]),  # ping's, given to the default kind
    (["demo", "pingpong"], ["--serve"]),  # ping's
    (["demo", "attack"], ["--count", "5"]),  # pingpong's, ping's and afxdp's
    (["demo", "attack"], ["--pcap", "x.pcap"]),  # pingpong's
    (["demo", "ping"], ["--batch", "8"]),  # pingpong's and afxdp's
    (["demo", "ping"], ["--no-pcap"]),  # pingpong's
    (["demo", "afxdp"], ["--scenario", "x.toml"]),  # the simulated machine's
    (["demo", "afxdp"], ["--protection", "none"]),  # the kernel's
    (["demo", "afxdp"], ["--audit-log", "a.jsonl"]),  # the kernel's
    (["fuzz", "replay", "x.json"], ["--iterations", "3"]),  # a campaign's
]


@pytest.mark.parametrize(("command", "flag"), FOREIGN_FLAGS, ids=lambda a: " ".join(a))
def test_each_kind_refuses_another_kinds_flag(
    command: list[str], flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*command, *flag]) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("nic-sandbox: error: unrecognized arguments: " + " ".join(flag))
    kind = " ".join(c for c in command if not c.endswith(".json")) + (" pingpong" if command == ["demo"] else "")
    assert f"(see 'nic-sandbox {kind} --help')" in lines[0]  # the help that lists what this kind does take


def test_a_kind_after_the_default_kinds_flags_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """``demo --count 5 attack``: the flags before it made this the pingpong demo; 'attack' is one word too many."""
    assert cli.main(["demo", "--count", "5", "attack"]) == cli.EXIT_USAGE
    assert "unrecognized arguments: attack" in capsys.readouterr().err


def test_fuzz_replay_help_teaches_only_replay() -> None:
    done = run_cli("fuzz", "replay", "--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("usage: nic-sandbox fuzz replay")
    assert "CASE.json" in text and "--protection" in text and "--json" in text
    assert "step by step" in text  # the description
    assert "examples:\n  nic-sandbox fuzz replay " in text and "exit codes:" in text
    assert "--iterations" not in text and "--seconds" not in text  # a campaign's flags are not replay's


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of the tree with its parser: ``("demo",)``, ``("demo", "attack")``, ``("audit", "show")`` ..."""
    for name, child in parser.commands().items() if isinstance(parser, Parser) else []:
        yield (*path, name), child
        yield from _commands(child, (*path, name))


COMMANDS = list(_commands(cli.build_parser()))


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_help_has_a_description_its_flags_and_an_example(
    path: tuple[str, ...], parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([*path, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: nic-sandbox {' '.join(path)}")
    assert parser.description and parser.description.split("\n")[0][:60] in text
    assert "example:" in text or "examples:" in text
    flags = [opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")]
    assert all(flag in text for flag in flags), [f for f in flags if f not in text]


def test_the_demo_kinds_are_the_ones_the_user_knows() -> None:
    kinds = dict(COMMANDS)[("demo",)].commands()
    assert list(kinds) == ["pingpong", "attack", "ping", "afxdp", "forward"]
    assert list(dict(COMMANDS)[("fuzz",)].commands()) == ["campaign", "replay"]


def test_group_help_shows_the_default_commands_flags() -> None:
    """``demo`` alone is ``demo pingpong`` and ``fuzz`` alone is ``fuzz campaign``: their help says what they take."""
    demo = run_cli("demo", "--help").stdout
    assert "options of 'nic-sandbox demo pingpong', the default:" in demo and "--no-pcap" in demo
    assert "KIND" in demo and "afxdp" in demo and "attack" in demo
    fuzz = run_cli("fuzz", "--help").stdout
    assert "options of 'nic-sandbox fuzz campaign', the default:" in fuzz
    assert "--iterations" in fuzz and "--corpus" in fuzz and "replay" in fuzz
