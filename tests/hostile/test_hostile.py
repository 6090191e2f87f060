"""The hostile corpus through the real command line: never a traceback, never a hang, always one line.

Every file of tests/hostile/ (written by make_corpus.py) and every flag set
of ``FLAG_SETS`` runs through ``cli.main`` in this process (fast; a sample
runs as a real process below, to hold the same at the process level, stdout
on /dev/full included).  Each must end with exit code 2 and exactly one line
on stderr (naming the file, for file inputs) -- or with its command's
documented verdict (``audit verify``: exit 1 and ``TAMPERED`` on stdout for a
log that is well-formed JSON but not what the writer wrote, and ``audit export`` refuses it the same way;
``audit query`` reads a record of well-typed values whatever its bytes; ``audit follow``
waits for the rest of a torn last line, as ``tail -f`` does).  A per-case
alarm turns a hang into a failure naming the case (a hang guard, not a speed
assert).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest

from sandbox import cli
from tests.hostile.make_corpus import _chain

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: Seconds one case may take before it counts as a hang.
HANG_S = 20
#: A good reproducer and audit log, for flag sets whose file must be fine.
GOOD_CASE = ROOT / "fuzz" / "corpus" / "none-kernel-tx-leak.json"
#: Stands for a well-formed audit log in a flag set (written per test: ``good_log``).
GOOD_LOG = "<good audit log>"
VERIFY = ["verify", "--format", "xdp", "--umem-size", "0x100000", "--chunk-size", "2048"]
#: ``audit query``/``export`` need the audit extra (DuckDB); tests/auditor checks them when it is missing.
HAVE_DUCKDB = importlib.util.find_spec("duckdb") is not None


class Hang(Exception):
    pass


@contextmanager
def hang_guard(case: str) -> Iterator[None]:
    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"{case}: no answer within {HANG_S} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def files(kind: str) -> list[Path]:
    return sorted((HERE / kind).iterdir())


def file_argv(kind: str, path: Path, tmp: Path) -> list[list[str]]:
    """The command lines that read ``path``: every command that takes a file of its kind."""
    p = str(path)
    if kind == "scenario":
        log = ["--audit-log", str(tmp / "audit.jsonl")]
        return [
            ["demo", "pingpong", "--scenario", p, "--count", "1", *log],
            ["demo", "attack", "--scenario", p, *log],
            ["demo", "ping", "--scenario", p, "--count", "1", *log],
        ]
    if kind == "reproducer":
        return [["fuzz", "replay", p]]
    if kind == "verify":
        return [[*VERIFY, "--input", p]]
    sql = [["audit", "query", p, "SELECT count(*) FROM records"], ["audit", "export", p, "--parquet", str(tmp / "x")]]
    return [
        ["audit", "summary", p],
        ["audit", "show", p],
        ["audit", "verify", p],
        ["audit", "follow", "--from-start", "--timeout", "0.02", p],
        ["audit", "plot", p, "-o", str(tmp / "plot.png")],
        *(sql if HAVE_DUCKDB else []),
    ]


#: v2 logs whose records are sound and whose damage is in the chain (the checkpoints): SQL reads the values.
V2_CHAIN_ONLY = (
    "checkpoint-deep",
    "checkpoint-extra-key",
    "checkpoint-hash-short",
    "checkpoint-huge-int",
    "checkpoint-only",
    "checkpoint-records-2p64",
    "checkpoint-records-wrong",
    "checkpoint-seq-negative",
    "no-checkpoint",
)
#: (kind, file name, command word) whose documented answer is not exit 2: what it is instead.
VERDICTS: dict[tuple[str, str, str], str] = {
    ("audit", "torn.jsonl", "follow"): "waits",  # tail -f: the last line may still be being written
    # SQL reads values: a record of well-typed values whose bytes are not the writer's is read (export refuses it)
    ("audit", "not-canonical.jsonl", "query"): "reads",
    ("audit", "detail-deep.jsonl", "query"): "reads",
    # schema v2: SQL reads the records' values and leaves checkpoints (the chain) to verify and export
    **{("audit", f"v2-{name}.jsonl", "query"): "reads" for name in V2_CHAIN_ONLY},
    # follow prints records as they come: a batch's checkpoint may still be on its way, and it does not count
    ("audit", "v2-no-checkpoint.jsonl", "follow"): "waits",
    ("audit", "v2-torn.jsonl", "follow"): "waits",
    ("audit", "v2-checkpoint-records-wrong.jsonl", "follow"): "reads",
}


def _one_line(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def check(argv: list[str], capsys: pytest.CaptureFixture[str], names: str | None, verdict: str | None = None) -> None:
    with hang_guard(" ".join(argv)[:200]):
        code = cli.main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out, argv
    lines = _one_line(captured.err)
    if verdict in ("waits", "reads"):
        assert (code, lines) == (0, []), argv
        return
    if argv[:2] in (["audit", "verify"], ["audit", "export"]) and code == 1:  # the verdict of a log not intact
        assert captured.out.startswith("TAMPERED: ") and lines == [], argv
        return
    assert code == 2, (argv, code, captured.out[:300])
    assert len(lines) == 1, (argv, lines[:3])
    assert lines[0].startswith("nic-sandbox: error: "), (argv, lines)
    if names is not None:
        assert names in lines[0], (argv, lines)


@pytest.mark.parametrize("kind", ["scenario", "reproducer", "audit", "verify"])
def test_every_hostile_file_is_one_line_and_exit_2(
    kind: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a scenario's relative pcap or a default out/ lands here
    for path in files(kind):
        for argv in file_argv(kind, path, tmp_path):
            check(argv, capsys, path.name, VERDICTS.get((kind, path.name, argv[1])))


#: What the one line says for cases the issue named: the file, the key or line, and what is wrong.
MESSAGES: dict[str, str] = {
    "scenario/nic-duplicate-mac.toml": "nic-duplicate-mac.toml: nic[1].mac: 02:00:00:00:00:01 is already nic[0]'s",
    "scenario/tenant-duplicate-ip.toml": "tenant-duplicate-ip.toml: tenant[1].ip: 198.18.0.1 is already tenant[0]'s",
    "scenario/tenants-share-nic-queue.toml": "tenant[1].nic: NIC 'nic0' is already driven by tenant 'alice'",
    "scenario/memory-too-small-for-rings.toml": "memory.size: 8,388,608 bytes leave 4,194,304 beside the kernel",
    "scenario/huge-seed.toml": "huge-seed.toml: an integer of more than 4300 digits",
    "scenario/deep-array.toml": "deep-array.toml:1: nested deeper than 64 levels",
    "scenario/deep-dotted-key.toml": "deep-dotted-key.toml:1: nested deeper than 64 levels",
    "scenario/cable-pcap-parent-is-file.toml": "cable[0].pcap /etc/hostname/x.pcap: /etc/hostname is a file",
    "reproducer/addr-2p64.json": "ops[0] (tx).descs[0].addr must be in 0x0..0xffffffffffffffff",
    "reproducer/length-minus-1.json": "ops[0] (tx).descs[0].length must be in 0..65535, got -1",
    "reproducer/length-2p32.json": "ops[0] (tx).descs[0].length must be in 0..65535, got 4294967296",
    "reproducer/tail-2p64.json": "ops[0] (tx).tail must be in -0x8000000000000000..0xffffffffffffffff, got 184467",
    "reproducer/cmd-minus-1.json": "ops[0] (tx).descs[0].cmd must be in 0..255, got -1",
    "reproducer/seed-negative.json": "case.seed must be in 0x0..0x7fffffffffffffff, got -1",
    "reproducer/descs-number.json": "ops[0] (tx).descs must be a list, got 5",
    "reproducer/length-nan.json": "ops[0] (tx).descs[0].length must be an integer, got nan",
    "reproducer/deep-list.json": "deep-list.json: JSON nested too deeply",
    "reproducer/virtq-len-2p32.json": "ops[0] (virtq).descs[0].len must be in 0x0..0xffffffff, got 4294967296",
    "reproducer/virtq-table-at-past-scratch.json": "ops[0] (virtq).tables[0].at must be in 0..4095",
    "reproducer/virtq-machine-unknown.json": "case.machine must be one of \"\", jumbo, numpy, virtio, got 'vhost'",
    "reproducer/virtq-mode-iommu.json": "NICs support protection none and verifier, not iommu",
    "reproducer/huge-seed.json": "huge-seed.json: an integer of more than 4300 digits",
    "audit/queue-2p64.jsonl": "queue-2p64.jsonl:2: damaged record after seq 0 (schema: 'queue' out of range",
    "audit/tenant-10p400.jsonl": "tenant-10p400.jsonl:2: damaged record after seq 0 (schema: 'tenant' out of range",
    "audit/ring-index-minus-5.jsonl": "ring-index-minus-5.jsonl:2: damaged record after seq 0 (schema: 'ring_index'",
    "audit/seq-2p64.jsonl": "seq-2p64.jsonl:1: damaged record before any good record (schema: 'seq' out of range",
    "audit/deep-line.jsonl": "deep-line.jsonl:2: damaged record after seq 0 (not canonical JSON)",
    "verify/deep-list.jsonl": "deep-list.jsonl: line 1: JSON nested too deeply",
    "verify/huge-int.jsonl": "huge-int.jsonl: line 2: an integer of more than 4300 digits",
}


def test_the_line_says_what_is_wrong(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for name, message in MESSAGES.items():
        kind = name.split("/")[0]
        argv = file_argv(kind, HERE / name, tmp_path)[0]
        check(argv, capsys, message)


def test_a_demo_refuses_to_append_to_a_hostile_log(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The logs that ``demo`` appends to are input too: a damaged one is refused before the demo runs."""
    for path in files("audit"):
        copy = tmp_path / path.name  # a copy: appending must not change the corpus, whatever happens
        copy.write_bytes(path.read_bytes())
        check(["demo", "attack", "--audit-log", str(copy)], capsys, path.name)
        assert copy.read_bytes() == path.read_bytes()


def test_the_corpus_is_at_least_300_cases() -> None:
    count = sum(len(files(kind)) for kind in ("scenario", "reproducer", "audit", "verify")) + len(FLAG_SETS)
    assert count >= 300


def test_a_hostile_case_in_a_corpus_directory_names_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``fuzz --corpus DIR`` reads reproducers too: each hostile one is refused before the campaign starts."""
    for name in ("deep-list.json", "huge-seed.json", "addr-2p64.json", "length-minus-1.json", "tail-2p64.json"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / name).write_bytes((HERE / "reproducer" / name).read_bytes())
        argv = ["fuzz", "--iterations", "1", "--corpus", str(folder), "--out", str(tmp_path / "out"), "--no-audit-log"]
        check(argv, capsys, name)


# -- flag sets -------------------------------------------------------------------------------
#: Values no numeric flag takes: not finite, not a number, past int()'s digit limit, out of every range.
BAD_NUMBERS = ["nan", "inf", "-inf", "1e308", "-1", "9" * 5000, "ten", "", "0x", "1e-300", "NaN"]
#: (the command line before the flag, the flag, the command line after it): every numeric flag of every command.
NUMERIC_FLAGS: list[tuple[list[str], str, list[str]]] = [
    (["demo", "pingpong"], "--count", []),
    (["demo", "pingpong"], "--size", []),
    (["demo", "pingpong"], "--batch", []),
    (["demo", "pingpong"], "--seed", []),
    (["demo", "attack"], "--seed", []),
    (["demo", "ping"], "--count", []),
    (["demo", "ping"], "--size", []),
    (["demo", "ping"], "--interval", []),
    (["demo", "ping"], "--seed", []),
    (["demo", "afxdp"], "--count", []),
    (["demo", "afxdp"], "--size", []),
    (["demo", "afxdp"], "--batch", []),
    (["fuzz", "campaign"], "--seconds", []),
    (["fuzz", "campaign"], "--iterations", []),
    (["fuzz", "campaign"], "--seed", []),
    (["fuzz", "campaign"], "--batch", []),
    (["fuzz", "campaign"], "--jobs", []),
    (["audit", "show", str(GOOD_CASE)], "--limit", []),
    (["audit", "plot", str(GOOD_CASE), "-o", "/tmp/x.png"], "--bucket", []),
    (["audit", "follow", str(GOOD_CASE)], "--max-records", []),
    (["audit", "follow", str(GOOD_CASE)], "--timeout", []),
    (["verify", "--format", "xdp", "--chunk-size", "2048"], "--umem-size", []),
    (["verify", "--format", "xdp", "--umem-size", "0x100000"], "--chunk-size", []),
    (["verify", "--format", "xdp", "--umem-size", "0x100000", "--chunk-size", "2048"], "--tx-metadata-len", []),
    (["verify", "--format", "xdp", "--umem-size", "0x100000", "--chunk-size", "2048"], "--generate", []),
    (["verify", "--format", "xdp", "--umem-size", "0x100000", "--chunk-size", "2048", "--generate", "1"], "--seed", []),
]
#: Output paths that cannot be written: a file as a parent folder, a directory as the file, an empty name.
BAD_OUTPUTS = ["/etc/hostname/x.out", "/", "/proc/version/x", "", "/dev/null/x"]
OUTPUT_FLAGS: list[tuple[list[str], str, list[str]]] = [
    (["demo", "pingpong", "--count", "1"], "--audit-log", []),
    (["demo", "pingpong", "--count", "1"], "--pcap", []),
    (["demo", "attack"], "--audit-log", []),
    (["demo", "ping", "--count", "1"], "--audit-log", []),
    (["fuzz", "campaign", "--iterations", "1"], "--audit-log", []),
]
#: Other refusals, one line each: unknown flags and choices, flags of the wrong command, missing files.
OTHER: list[list[str]] = [
    ["scenario", "nonsense"],
    ["scenario", "pingpong", "--bogus"],
    ["demo", "attack", "--count", "5"],
    ["demo", "pingpong", "--scenario", "/nonexistent.toml"],
    ["demo", "pingpong", "--scenario", "/"],
    ["demo", "pingpong", "--scenario", "/dev/null/x"],
    ["demo", "pingpong", "--engine", "warp"],
    ["demo", "pingpong", "--protection", "hope"],
    ["demo", "pingpong", "--fsync", "sometimes"],
    ["fuzz", "replay", "/nonexistent.json"],
    ["fuzz", "replay", "/"],
    ["fuzz", "replay", str(GOOD_CASE), "--protection", "hope"],
    ["fuzz", "campaign", "--classes", "no-such-class", "--iterations", "1", "--no-audit-log"],
    ["fuzz", "campaign", "--corpus", "/etc/hostname", "--iterations", "1", "--no-audit-log"],
    ["audit", "summary", "/nonexistent.jsonl"],
    ["audit", "show", "/nonexistent.jsonl"],
    ["audit", "verify", "/nonexistent.jsonl"],
    ["audit", "follow", "/nonexistent.jsonl", "--timeout", "0.001"],
    ["audit", "plot", "/nonexistent.jsonl", "-o", "/tmp/x.png"],
    ["audit", "summary", "/"],
    ["audit", "show", "--tenant", "9" * 5000, GOOD_LOG],
    ["audit", "show", "--since", "99999999999d", GOOD_LOG],
    ["audit", "plot", GOOD_LOG, "-o", "/etc/hostname/x.png"],
    ["audit", "plot", GOOD_LOG, "-o", "/"],
    ["audit", "plot", GOOD_LOG, "-o", ""],
    ["audit", "plot", GOOD_LOG, "-o", "/proc/x.png"],
    ["audit", "show", "--since", "9" * 5000, str(GOOD_CASE)],
    ["audit", "show", "--since", "yesterday", str(GOOD_CASE)],
    ["audit", "show", "--since", "9999-99-99", str(GOOD_CASE)],
    ["audit", "frobnicate"],
    ["verify", "--format", "xml"],
    ["verify", "--format", "xdp", "--umem-size", "0x100000", "--chunk-size", "2048", "--input", "/nonexistent"],
    ["verify", "--format", "xdp", "--umem-size", "0x100000", "--chunk-size", "2048", "--input", "/"],
    ["verify", "--format", "xdp", "--umem-size", "0x100000", "--chunk-size", "3000", "--generate", "1"],
    ["verify", "--format", "xdp", "--umem-size", "0x100000", "--chunk-size", "2048", "--umem-image", "/nonexistent"],
    ["frobnicate"],
    # endless inputs: read up to a bound, never to the end
    ["demo", "pingpong", "--scenario", "/dev/zero"],
    ["demo", "attack", "--scenario", "/dev/urandom"],
    ["fuzz", "replay", "/dev/zero"],
    ["fuzz", "replay", "/dev/urandom"],
    [*VERIFY, "--input", "/dev/zero"],
    [*VERIFY, "--input", "/dev/urandom"],
    ["audit", "summary", "/dev/zero"],
    ["audit", "show", "/dev/urandom"],
    ["audit", "verify", "/dev/zero"],
    ["audit", "follow", "/dev/zero", "--timeout", "1"],
    ["audit", "plot", "/dev/zero", "-o", "/tmp/x.png"],
]
FLAG_SETS: list[tuple[list[str], str | None]] = (
    [([*before, flag, value, *after], flag) for before, flag, after in NUMERIC_FLAGS for value in BAD_NUMBERS]
    + [
        ([*before, flag, path, *after], flag)
        for before, flag, after in OUTPUT_FLAGS
        for path in BAD_OUTPUTS
        if path or before[0] != "fuzz"  # fuzz reads an empty --audit-log as none (sandbox/commands/fuzz.py)
    ]
    + [(argv, None) for argv in OTHER]
)


def good_log(folder: Path) -> Path:
    """A well-formed log of 50 records, the last a second after the first."""
    log = folder / "good.jsonl"
    log.write_bytes(_chain([{}] * 49 + [{"wall": "2024-01-01T00:00:01.000000000Z"}]))
    return log


def test_every_hostile_flag_set_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    log = str(good_log(tmp_path))
    for argv, flag in FLAG_SETS:
        check([log if word == GOOD_LOG else word for word in argv], capsys, flag)


def test_plot_refuses_buckets_it_cannot_draw(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``--bucket 1e-300`` never ended (a 10**300-bar plot), ``nan``/``inf`` crashed: now bounded at the edge.

    A bucket of a microsecond is a fine bar width, but over a second of records it would be a million bars.
    """
    log = str(good_log(tmp_path))
    for bucket in ("1e-300", "1e-7", "1e-6", "nan", "inf", "1e308"):
        check(["audit", "plot", log, "-o", str(tmp_path / "p.png"), "--bucket", bucket], capsys, "--bucket")
    assert not (tmp_path / "p.png").exists()


# -- as real processes -----------------------------------------------------------------------
def _run(*argv: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *argv], stdout=stdout, stderr=subprocess.PIPE, text=True,
        timeout=HANG_S * 3, env=env,
    )  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "pingpong", "--scenario", str(HERE / "scenario" / "deep-dotted-key.toml")],
        ["fuzz", "replay", str(HERE / "reproducer" / "deep-object.json")],
        ["audit", "follow", "--timeout", "nan", str(GOOD_CASE)],
    ],
)
def test_a_sample_as_real_processes(argv: list[str]) -> None:
    done = _run(*argv)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(_one_line(done.stderr)) == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("argv", [["scenario"], ["audit", "show", "--json", "LOG"]])
def test_stdout_that_cannot_be_written_is_one_line(argv: list[str], tmp_path: Path) -> None:
    """``> /dev/full``: every write fails with ENOSPC; one line on stderr and exit 2, not a traceback at exit."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(_chain([{}] * 50))
    argv = [str(log) if a == "LOG" else a for a in argv]
    with open("/dev/full", "w") as full:
        done = _run(*argv, stdout=full.fileno())
    assert "Traceback" not in done.stderr
    assert _one_line(done.stderr) == ["nic-sandbox: error: cannot write to standard output: No space left on device"]
    assert done.returncode == 2
