"""``nic-sandbox demo pingpong --batch auto``: the flags of the self-tuning batch, its table, its JSON and its PNG."""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from driver.tenant.tuner import BatchTuner, Role, Sample, TunerConfig
from measure.cost_clock import DOORBELL_NS
from sandbox.argtypes import bounded_number, check_output_path, int_range, require_matplotlib, writing
from sandbox.commands import qemu
from sandbox.demos import pingpong_tuned
from sandbox.demos.pingpong_tuned import Sweep, TunedRun, Workload
from sandbox.errors import UsageError
from sandbox.signals import exit_code
from world import scenario
from world.build import World
from world.traffic import MAX_SIZE, MIN_SIZE

AUTO = "auto"
MAX_BATCH = 4096
DEFAULT_LAMBDA = 1.0
DEFAULT_PERIODS, DEFAULT_PERIOD_FRAMES, DEFAULT_START = 60, 1024, 32
#: the flags that mean something only with --batch auto (argparse dests)
TUNER_FLAGS = (
    "lam", "periods", "period_frames", "batch_start", "doorbell_ns", "consumer_ns",
    "shift_at", "shift_size", "shift_consumer_ns", "sweep", "png",
)  # fmt: skip
EXAMPLES = (
    "  nic-sandbox demo --batch auto                 tune the batch online, print the trajectory\n"
    "  nic-sandbox demo --batch auto --lambda 0.1 --sweep --png /tmp/tune.png\n"
    "  nic-sandbox demo --batch auto --periods 120 --shift-at 60 --shift-size 128   the optimum moves mid-run"
)


def batch_type(text: str) -> int | str:
    """``--batch``: a number of frames, or ``auto``."""
    if text.strip().lower() == AUTO:
        return AUTO
    return int(int_range(1, MAX_BATCH, "--batch")(text))


def add_flags(demo: argparse.ArgumentParser) -> None:
    """The flags of ``--batch auto`` (refused without it)."""
    g = demo.add_argument_group(
        "--batch auto (the batch tunes itself)",
        "Time is the sandbox's own: the inline engine's virtual 1 Gb/s wire plus a modelled cost per doorbell and "
        "per frame bob consumes; latency is per frame, from the doorbell that posted it to alice's receipt of its "
        "echo.  U = throughput - lambda * p99, throughput in kpps (thousands of frames per virtual second), p99 in "
        "virtual microseconds.",
    )
    g.add_argument(
        "--lambda",
        dest="lam",
        type=bounded_number(float, "--lambda", 0, 1e6),
        metavar="L",
        help=f"weight of latency in U, in kpps per µs of p99: what 1 µs of tail latency is worth in thousands of "
        f"frames per second (default {DEFAULT_LAMBDA:g}; 0: throughput alone, the batch climbs to the ring)",
    )
    g.add_argument(
        "--periods",
        type=int_range(1, 100_000, "--periods"),
        help=f"measurement periods to run (default {DEFAULT_PERIODS}); every third is a probe above, then below",
    )
    g.add_argument(
        "--period-frames",
        type=int_range(1, 1_000_000, "--period-frames"),
        metavar="N",
        help=f"frames per period at least, in whole rounds (default {DEFAULT_PERIOD_FRAMES})",
    )
    g.add_argument(
        "--batch-start",
        type=int_range(1, MAX_BATCH, "--batch-start"),
        metavar="N",
        help=f"first batch (default {DEFAULT_START})",
    )
    g.add_argument(
        "--doorbell-ns",
        type=int_range(0, 10**9, "--doorbell-ns"),
        metavar="NS",
        help=f"modelled cost of one doorbell, in virtual ns (default {DOORBELL_NS}; 'nic-sandbox bench doorbell' "
        "measures this sandbox's own)",
    )
    g.add_argument(
        "--consumer-ns",
        type=int_range(0, 10**9, "--consumer-ns"),
        metavar="NS",
        help="bob's processing cost per frame, in virtual ns (default 0): a slower consumer",
    )
    g.add_argument(
        "--shift-at",
        type=int_range(1, 100_000, "--shift-at"),
        metavar="PERIOD",
        help="from this period on, the workload changes to --shift-size and/or --shift-consumer-ns",
    )
    g.add_argument(
        "--shift-size",
        type=int_range(MIN_SIZE, MAX_SIZE, "--shift-size"),
        metavar="BYTES",
        help="frame size after the shift",
    )
    g.add_argument(
        "--shift-consumer-ns",
        type=int_range(0, 10**9, "--shift-consumer-ns"),
        metavar="NS",
        help="bob's cost per frame after the shift",
    )
    g.add_argument(
        "--sweep",
        action="store_true",
        help="afterwards, run every fixed batch 1..ring-1 for one period each (per workload) and print the best",
    )
    g.add_argument("--png", metavar="PATH", help="plot the trajectory (and the sweep) to this PNG (needs matplotlib)")


@dataclass(frozen=True)
class Plan:
    """The flags of a tuned run, checked."""

    config: TunerConfig
    periods: int
    period_frames: int
    doorbell_ns: int
    first: Workload
    shift_at: int | None
    then: Workload

    def schedule(self, period: int) -> Workload:
        return self.then if self.shift_at is not None and period >= self.shift_at else self.first

    @property
    def workloads(self) -> list[Workload]:
        return [self.first] if self.shift_at is None or self.shift_at >= self.periods else [self.first, self.then]


def problem_without_auto(args: argparse.Namespace) -> str | None:
    """A tuner flag given with a fixed batch: name it."""
    given = [
        f"--{'lambda' if k == 'lam' else k.replace('_', '-')}"
        for k in TUNER_FLAGS
        if getattr(args, k) not in (None, False)
    ]
    return f"{given[0]} applies only with --batch auto" if given else None


def plan(args: argparse.Namespace, scen: scenario.Scenario, size: int) -> Plan:
    """Check the flags of ``--batch auto`` against each other and the scenario; one-line errors."""
    if args.nic == qemu.QEMU:
        raise UsageError("--batch auto keeps time in the emulated inline engine's virtual clock: not with --nic qemu")
    if args.nic == qemu.VIRTIO:
        raise UsageError("--batch auto tunes the e1000 queues' bursts: not with --nic virtio")
    if scen.engine.value != "inline":
        raise UsageError(
            f"--batch auto needs engine inline (its clock is the inline engine's), not {scen.engine.value}"
        )
    if args.count is not None:
        raise UsageError("--count does not apply with --batch auto: a tuned run is --periods of --period-frames")
    if args.shift_at is None and (args.shift_size is not None or args.shift_consumer_ns is not None):
        raise UsageError("--shift-size and --shift-consumer-ns need --shift-at PERIOD")
    if args.shift_at is not None and args.shift_size is None and args.shift_consumer_ns is None:
        raise UsageError("--shift-at needs --shift-size and/or --shift-consumer-ns (what changes)")
    if args.png is not None:
        check_output_path(args.png, "--png")
        require_matplotlib()
    window = max(1, min(t.ring for t in scen.tenants[:2]) - 1)
    high = min(MAX_BATCH, window)
    start = args.batch_start or min(DEFAULT_START, high)
    if start > high:
        raise UsageError(f"--batch-start {start}: larger than a round can be ({high}: the smaller ring minus one)")
    first = Workload(size, args.consumer_ns or 0)
    then = Workload(
        args.shift_size if args.shift_size is not None else first.size,
        args.shift_consumer_ns if args.shift_consumer_ns is not None else first.consumer_ns,
    )
    lam = DEFAULT_LAMBDA if args.lam is None else float(args.lam)
    return Plan(
        TunerConfig(lam=lam, low=1, high=high, start=start),
        args.periods or DEFAULT_PERIODS,
        args.period_frames or DEFAULT_PERIOD_FRAMES,
        DOORBELL_NS if args.doorbell_ns is None else args.doorbell_ns,
        first,
        args.shift_at,
        then,
    )


def cmd_tuned(args: argparse.Namespace, out: Console, scen: scenario.Scenario, world: World, p: Plan) -> int:
    """Run the tuned pingpong on a built world, then (``--sweep``) the fixed batches; print, plot; 130 on Ctrl-C."""
    rounds = pingpong_tuned.Rounds(world, p.doorbell_ns)
    tuner = BatchTuner(p.config)
    live = not args.json and out.is_terminal

    def show(s: Sample) -> None:
        if live:
            out.print(f"period {s.period}: {s.role.value} batch {s.batch}: U {s.utility:.1f}", highlight=False)

    run = pingpong_tuned.run(rounds, tuner, p.schedule, p.periods, p.period_frames, show)
    sweeps: list[Sweep] = []
    if args.sweep and not run.interrupted:
        for work in p.workloads:
            sweeps.append(
                pingpong_tuned.sweep(rounds, range(1, p.config.high + 1), work, p.period_frames, p.config.lam)
            )
            if sweeps[-1].interrupted:
                break
    if args.json:
        print(json.dumps(_json(run, sweeps, p, scen), indent=2))
    else:
        _print(out, run, sweeps, p, scen)
    if args.png is not None and run.trajectory:
        with writing(args.png, "--png"):
            _plot(args.png, run, sweeps, p)
        if not args.json:
            out.print(f"plot: {args.png}", markup=False, highlight=False)
    if run.interrupted or any(s.interrupted for s in sweeps):
        return exit_code()
    return 0 if run.clean else 1


def segments(run: TunedRun, p: Plan) -> list[tuple[Workload, list[Sample]]]:
    """The trajectory cut where the workload changes: (workload, its periods)."""
    cut = p.shift_at if p.shift_at is not None else len(run.trajectory)
    parts = [(p.first, run.trajectory[:cut]), (p.then, run.trajectory[cut:])]
    return [(w, s) for w, s in parts if s]


def settled(samples: list[Sample]) -> int | None:
    """Where the tuner sits: the median batch it held over the last third of a segment (None: no hold there)."""
    holds = [s.batch for s in samples[len(samples) * 2 // 3 :] if s.role is Role.HOLD]
    return round(statistics.median(holds)) if holds else None


def _work_words(w: Workload) -> str:
    return f"{w.size}-byte frames, consumer {w.consumer_ns} ns/frame"


def _print(out: Console, run: TunedRun, sweeps: list[Sweep], p: Plan, scen: scenario.Scenario) -> None:
    table = Table(
        title=(
            f"pingpong --batch auto: lambda {p.config.lam:g} kpps/µs, doorbell {p.doorbell_ns} ns, "
            f"protection {scen.protection.value}, seed {scen.seed} (virtual time)"
        )
    )
    for col in ("period", "role", "batch", "frame", "consumer ns", "kpps", "p99 µs", "U"):
        table.add_column(col, justify="left" if col == "role" else "right", no_wrap=True)
    for s, w in zip(run.trajectory, run.workloads, strict=True):
        table.add_row(
            str(s.period), s.role.value, str(s.batch), str(w.size), str(w.consumer_ns),
            f"{s.throughput:.1f}", f"{s.p99:.2f}", f"{s.utility:.1f}",
        )  # fmt: skip
    out.print(table)
    for work, samples in segments(run, p):
        where = settled(samples)
        line = f"{_work_words(work)}: the tuner settled at batch {where if where is not None else '-'}"
        sweep = next((s for s in sweeps if s.work == work and s.points), None)
        if sweep is not None:
            b, r = sweep.best
            line += f"; best fixed batch by sweep of 1..{sweep.points[-1][0]}: {b} (U {sweep.utility(r):.1f})"
            if where is not None and where <= len(sweep.points):
                line += f"; U at the tuner's batch {sweep.utility(sweep.points[where - 1][1]):.1f}"
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    verdict = "every echo arrived intact" if run.clean else f"{run.bad} frames lost or damaged"
    out.print(
        f"{run.sent:,} frames, {run.doorbells:,} doorbells, {run.virtual_ns / 1e6:.3f} virtual ms; {verdict}; "
        "time is the inline engine's virtual wire plus modelled doorbells (latency: doorbell to echo received)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if run.interrupted:
        out.print(f"interrupted after {len(run.trajectory)} periods: the trajectory above is what was measured")


def _json(run: TunedRun, sweeps: list[Sweep], p: Plan, scen: scenario.Scenario) -> dict[str, object]:
    return {
        "demo": "pingpong",
        "batch": AUTO,
        "scenario": scen.name,
        "seed": scen.seed,
        "protection": scen.protection.value,
        "clock": "virtual: 1 Gb/s wire + doorbell_ns per doorbell + consumer_ns per frame; latency doorbell to echo",
        "units": {"throughput": "kpps", "p99": "us", "lambda": "kpps per us"},
        "lambda": p.config.lam,
        "doorbell_ns": p.doorbell_ns,
        "bounds": [p.config.low, p.config.high],
        "trajectory": [
            {
                "period": s.period,
                "role": s.role.value,
                "batch": s.batch,
                "frame_size": w.size,
                "consumer_ns": w.consumer_ns,
                "kpps": round(s.throughput, 4),
                "p99_us": round(s.p99, 4),
                "utility": round(s.utility, 4),
            }
            for s, w in zip(run.trajectory, run.workloads, strict=True)
        ],
        "settled": [
            {"frame_size": w.size, "consumer_ns": w.consumer_ns, "batch": settled(s)} for w, s in segments(run, p)
        ],
        "sweeps": [
            {
                "frame_size": s.work.size,
                "consumer_ns": s.work.consumer_ns,
                "best_batch": s.best[0] if s.points else None,
                "points": [[b, round(r.kpps, 4), round(r.p99_us, 4), round(s.utility(r), 4)] for b, r in s.points],
            }
            for s in sweeps
        ],
        "sent": run.sent,
        "echoed": run.echoed,
        "bad": run.bad,
        "doorbells": run.doorbells,
        "virtual_ns": run.virtual_ns,
        "interrupted": run.interrupted,
        "clean": run.clean,
    }


def _plot(path: str, run: TunedRun, sweeps: list[Sweep], p: Plan) -> None:
    """Batch and U against the period (the sweep's best as dashed lines); U against the batch when swept."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    rows = 3 if sweeps else 2
    fig, axes = plt.subplots(rows, 1, figsize=(10, 3.2 * rows), dpi=100)
    ax_b, ax_u = axes[0], axes[1]
    t = run.trajectory
    holds = [s for s in t if s.role is Role.HOLD]
    ax_b.plot([s.period for s in holds], [s.batch for s in holds], "-o", ms=3, label="batch held")
    for role, mark in ((Role.UP, "^"), (Role.DOWN, "v")):
        probes = [s for s in t if s.role is role]
        ax_b.plot([s.period for s in probes], [s.batch for s in probes], mark, ms=4, alpha=0.6, label=role.value)
    ax_u.plot([s.period for s in t], [s.utility for s in t], "-", lw=1, color="gray", label="U of each period")
    ax_u.plot([s.period for s in holds], [s.utility for s in holds], "o", ms=3, label="U at the held batch")
    for work, samples in segments(run, p):
        sweep = next((s for s in sweeps if s.work == work and s.points), None)
        if sweep is None:
            continue
        b, r = sweep.best
        lo, hi = samples[0].period, samples[-1].period
        ax_b.hlines(b, lo, hi, linestyles="dashed", colors="black", label=f"best fixed ({work.size} B): {b}")
        ax_u.hlines(sweep.utility(r), lo, hi, linestyles="dashed", colors="black")
    if p.shift_at is not None and p.shift_at < len(t):
        for ax in (ax_b, ax_u):
            ax.axvline(p.shift_at - 0.5, color="red", lw=1)
    ax_b.set_yscale("log")
    ax_b.yaxis.set_major_formatter(ScalarFormatter())
    ax_b.yaxis.set_minor_formatter(ScalarFormatter())
    ax_b.set_ylabel("batch (frames per doorbell)")
    ax_b.set_title(
        f"pingpong --batch auto, lambda {p.config.lam:g} kpps/µs, doorbell {p.doorbell_ns} ns (virtual time)"
    )
    ax_b.legend(loc="best", fontsize="small")
    ax_u.set_ylabel("U = kpps - lambda * p99 µs")
    ax_u.set_xlabel("period")
    ax_u.legend(loc="best", fontsize="small")
    if sweeps:
        ax_s = axes[2]
        for s in sweeps:
            ax_s.plot([b for b, _ in s.points], [s.utility(r) for _, r in s.points], "-", label=_work_words(s.work))
        for work, samples in segments(run, p):
            where = settled(samples)
            sweep = next((s for s in sweeps if s.work == work and s.points), None)
            if where is not None and sweep is not None and where <= len(sweep.points):
                ax_s.plot([where], [sweep.utility(sweep.points[where - 1][1])], "k*", ms=10)
        ax_s.set_xscale("log")
        ax_s.set_xlabel("fixed batch (sweep; * where the tuner settled)")
        ax_s.set_ylabel("U")
        ax_s.legend(loc="best", fontsize="small")
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
