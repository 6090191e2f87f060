"""``demo pingpong --batch auto`` on the real sandbox path, in the inline engine's deterministic virtual time.

The frames cross the verifier, the emulated NICs and the cable; time is the
inline engine's virtual 1 Gb/s wire plus the declared doorbell and consumer
costs (measure/cost_clock.py), so the sweep and the tuner see the same
numbers every run and these tests assert no wall-clock timing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver.tenant.tuner import BatchTuner, Role, Sample, TunerConfig
from sandbox import cli
from sandbox.commands.pingpong_tuned import Plan, segments, settled
from sandbox.demos import pingpong_tuned
from sandbox.demos.pingpong_tuned import Rounds, Workload
from tests.needs import need_module
from tests.sandbox.test_cli import run_cli
from world import scenario
from world.build import World

HIGH = 128  # the sweep's range 1..HIGH: the optimum of these workloads lies well inside it
FRAMES = 64  # frames per period: every round of a batch costs the same virtual time, so short periods suffice


@pytest.fixture
def rounds() -> Iterator[Rounds]:
    with World.build(scenario.load(None, embedded="pingpong"), pcap=False) as world:
        yield Rounds(world)


def best_by_sweep(rounds: Rounds, work: Workload, lam: float) -> tuple[int, float]:
    s = pingpong_tuned.sweep(rounds, range(1, HIGH + 1), work, FRAMES, lam)
    b, r = s.best
    return b, s.utility(r)


def utility_at(rounds: Rounds, batch: int, work: Workload, lam: float) -> float:
    r = rounds.period(batch, work, FRAMES)
    return r.kpps - lam * r.p99_us


def tune(rounds: Rounds, lam: float, schedule: list[tuple[int, Workload]], periods: int) -> pingpong_tuned.TunedRun:
    tuner = BatchTuner(TunerConfig(lam=lam, high=HIGH, start=1))

    def work(p: int) -> Workload:
        return [w for first, w in schedule if p >= first][-1]

    return pingpong_tuned.run(rounds, tuner, work, periods, FRAMES)


def test_the_tuner_converges_within_10_percent_of_the_best_fixed_batch(rounds: Rounds) -> None:
    work = Workload(64)
    run = tune(rounds, 1.0, [(0, work)], 60)
    assert run.clean and run.sent > 0 and run.doorbells > 0
    best, u_best = best_by_sweep(rounds, work, 1.0)
    assert 1 < best < HIGH  # an interior optimum: neither bound wins
    where = settled(run.trajectory)
    assert where is not None and abs(where - best) <= 0.1 * best
    assert utility_at(rounds, where, work, 1.0) >= 0.9 * u_best


@pytest.mark.parametrize(
    "then", [Workload(128), Workload(64, consumer_ns=1500)], ids=["bigger-frames", "slower-consumer"]
)
def test_a_workload_change_moves_the_optimum_and_the_tuner_follows(rounds: Rounds, then: Workload) -> None:
    first = Workload(64)
    run = tune(rounds, 1.0, [(0, first), (45, then)], 90)
    assert run.clean
    before, after = run.trajectory[:45], run.trajectory[45:]
    best_first, _ = best_by_sweep(rounds, first, 1.0)
    best_then, u_then = best_by_sweep(rounds, then, 1.0)
    assert best_then < 0.7 * best_first  # the optimum really moved
    s_before, s_after = settled(before), settled(after)
    assert s_before is not None and abs(s_before - best_first) <= 0.1 * best_first
    assert s_after is not None and abs(s_after - best_then) <= 0.1 * best_then
    assert utility_at(rounds, s_after, then, 1.0) >= 0.9 * u_then


def test_latency_is_doorbell_to_echo_in_virtual_time(rounds: Rounds) -> None:
    """Batch 1 of 64-byte frames: four doorbells of 2 µs and two 672 ns frame times on the wire, per round trip."""
    r = rounds.period(1, Workload(64), 10)
    assert r.frames == 10
    assert r.p99_us == pytest.approx(4 * 2.0 + 2 * 0.672)
    assert r.kpps == pytest.approx(1e3 / r.p99_us)


def test_ctrl_c_keeps_the_periods_measured(rounds: Rounds) -> None:
    tuner = BatchTuner(TunerConfig(lam=1.0, high=HIGH))

    def stop_at_five(s: Sample) -> None:
        if s.period == 4:
            raise KeyboardInterrupt

    run = pingpong_tuned.run(rounds, tuner, lambda _p: Workload(64), 50, FRAMES, stop_at_five)
    assert run.interrupted
    assert len(run.trajectory) == len(run.workloads) == 5


def test_the_demo_prints_the_trajectory_and_draws_it(tmp_path: Path) -> None:
    need_module("matplotlib", "nic-sandbox[plot]")
    png = tmp_path / "tune.png"
    done = run_cli(
        "demo", "--batch", "auto", "--periods", "12", "--period-frames", "64", "--shift-at", "6",
        "--shift-size", "128", "--png", str(png), "--json", "--no-pcap", "--audit-log", str(tmp_path / "a.jsonl"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["clean"] is True and report["units"]["lambda"] == "kpps per us"
    rows = report["trajectory"]
    assert len(rows) == 12 and [r["frame_size"] for r in rows] == [64] * 6 + [128] * 6
    assert all(r["kpps"] > 0 and r["p99_us"] > 0 and r["batch"] >= 1 for r in rows)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_table_names_the_clock_and_the_sweep(tmp_path: Path) -> None:
    done = run_cli(
        "demo", "--batch", "auto", "--periods", "6", "--period-frames", "32", "--sweep", "--scenario",
        str(small_rings(tmp_path)), "--no-pcap", "--audit-log", str(tmp_path / "a.jsonl"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "virtual" in done.stdout and "best fixed batch by sweep of 1..15" in done.stdout


def small_rings(tmp_path: Path) -> Path:
    """The pingpong scenario with 16-slot rings: batches 1..15, a sweep of a moment."""
    text = scenario.default_text("pingpong")
    path = tmp_path / "small.toml"
    path.write_text(text.replace("ring = 512", "ring = 16"))
    return path


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--batch", "lots"], "--batch"),
        (["--batch", "0"], "--batch"),
        (["--batch", "auto", "--lambda", "-1"], "--lambda"),
        (["--batch", "auto", "--lambda", "nan"], "--lambda"),
        (["--batch", "16", "--lambda", "1"], "--lambda"),
        (["--png", "/tmp/x.png"], "--png"),
        (["--batch", "auto", "--count", "10"], "--count"),
        (["--batch", "auto", "--engine", "threaded"], "inline"),
        (["--batch", "auto", "--nic", "qemu"], "--nic qemu"),
        (["--batch", "auto", "--shift-size", "128"], "--shift-at"),
        (["--batch", "auto", "--shift-at", "5"], "--shift-at"),
        (["--batch", "auto", "--batch-start", "600"], "--batch-start"),
        (["--batch", "auto", "--periods", "0"], "--periods"),
        (["--batch", "auto", "--png", "/"], "--png"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(
    tmp_path: Path, flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["demo", *flags, "--no-pcap", "--audit-log", str(tmp_path / "a.jsonl")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines


def test_plan_cuts_the_trajectory_at_the_shift() -> None:
    p = Plan(TunerConfig(lam=1.0), 10, 64, 2000, Workload(64), 4, Workload(128))
    assert [p.schedule(i).size for i in (0, 3, 4, 9)] == [64, 64, 128, 128]
    assert p.workloads == [Workload(64), Workload(128)]
    run = pingpong_tuned.TunedRun([Sample(i, Role.HOLD, 8, 1.0, 1.0, 0.0) for i in range(10)], [])
    assert [len(s) for _, s in segments(run, p)] == [4, 6]
