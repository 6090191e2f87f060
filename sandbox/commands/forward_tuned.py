"""``nic-sandbox demo forward --batch auto``: the forwarder's burst tunes itself; its flags, table, JSON and PNG.

The parsing of ``--batch``, the default λ, the "settled" rule and the
matplotlib check are the pingpong's (sandbox/commands/pingpong_tuned.py):
the two demos tune the same way and are read the same way.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from driver.tenant.tuner import BatchTuner, Role, Sample, TunerConfig
from measure.forward import ForwardReport, Policy
from measure.forward_tuned import SweepBatches, TunedBatch, utility
from sandbox.argtypes import bounded_number, check_output_path, int_range, require_matplotlib, writing
from sandbox.commands.pingpong_tuned import AUTO, DEFAULT_LAMBDA, settled
from sandbox.demos import forward
from sandbox.errors import UsageError
from sandbox.flags import durability_json, durability_line
from sandbox.signals import StopRequest
from verifier.audit.log import AuditLog
from world.scenario import Scenario

#: In auto mode a period is 100 virtual µs: the knee (consumer rate x period) is then 40 frames, which probes of
#: +-10% can resolve (at 10 µs it is 4, and the smallest probe, one frame, is already 25%).
AUTO_PERIOD_US = 100.0
DEFAULT_PERIODS, DEFAULT_START, SETTLE, SPAN = 45, 32, 80, 20
#: Smaller probes and steps than the pingpong's: U has a knee here, not a smooth hump (docs/async-io.md §3).
PROBE, MAX_STEP = 0.05, 0.05
Segments = list[tuple[float, list[Sample]]]  # (consumer rate, its tuner periods)
Sweeps = list[tuple[float, SweepBatches]]  # (consumer rate, the fixed batches measured at it)
TUNER_FLAGS = ("lam", "periods", "batch_start", "shift_at", "shift_consumer_rate", "sweep")
EXAMPLES = (
    "  nic-sandbox demo forward --batch auto                  the forwarder's burst tunes itself (45 periods)\n"
    "  nic-sandbox demo forward --batch auto --sweep --png /tmp/fwd-tune.png   ... against every fixed batch\n"
    "  nic-sandbox demo forward --batch auto --periods 90 --shift-at 45 --shift-consumer-rate 250000"
)


def add_flags(demo: argparse.ArgumentParser) -> None:
    g = demo.add_argument_group(
        "--batch auto (the forwarder's burst tunes itself)",
        "One run with back-pressure.  Every tuner period is 80 periods to let the rings settle at the batch tried, "
        "then 20 measured: throughput = frames the consumer took (kpps, per virtual second), p99 = source send to "
        "consumer take (virtual µs); U = throughput - lambda * p99.  --period-us defaults to 100 here.",
    )
    g.add_argument(
        "--lambda",
        dest="lam",
        type=bounded_number(float, "--lambda", 0, 1e6),
        metavar="L",
        help=f"weight of latency in U, kpps per µs of p99 (default {DEFAULT_LAMBDA:g})",
    )
    g.add_argument(
        "--periods", type=int_range(3, 10_000, "--periods"), help=f"tuner periods (default {DEFAULT_PERIODS})"
    )
    g.add_argument(
        "--batch-start",
        type=int_range(1, 4096, "--batch-start"),
        metavar="N",
        help=f"first batch (default {DEFAULT_START})",
    )
    g.add_argument(
        "--shift-at",
        type=int_range(1, 10_000, "--shift-at"),
        metavar="PERIOD",
        help="tuner period where the consumer changes",
    )
    g.add_argument(
        "--shift-consumer-rate",
        type=bounded_number(float, "--shift-consumer-rate", 1, 100e6),
        metavar="FPS",
        help="the consumer's rate from --shift-at on (a slower consumer: the optimum moves down)",
    )
    g.add_argument(
        "--sweep", action="store_true", help="afterwards, every fixed batch 1..ring-1, measured the same way"
    )


def problem_without_auto(args: argparse.Namespace) -> str | None:
    given = [
        f"--{'lambda' if k == 'lam' else k.replace('_', '-')}"
        for k in TUNER_FLAGS
        if getattr(args, k) not in (None, False)
    ]
    return f"{given[0]} applies only with --batch auto" if given else None


@dataclass(frozen=True)
class Plan:
    config: TunerConfig
    periods: int
    period_ns: int
    consumer_rate: float
    shift_at: int | None
    then_rate: float

    @property
    def rates(self) -> list[float]:
        return (
            [self.consumer_rate]
            if self.shift_at is None or self.shift_at >= self.periods
            else [self.consumer_rate, self.then_rate]
        )

    def slow_down(self) -> tuple[int, float] | None:
        if self.shift_at is None or self.shift_at >= self.periods:
            return None
        return (self.shift_at * (SETTLE + SPAN), self.then_rate)


def plan(args: argparse.Namespace, scen: Scenario, consumer_rate: float) -> Plan:
    if args.no_backpressure:
        raise UsageError("--no-backpressure: --batch auto tunes the run with back-pressure (the lossy one has no knee)")
    if args.count is not None:
        raise UsageError("--count does not apply with --batch auto: a tuned run is --periods tuner periods")
    if (args.shift_at is None) != (args.shift_consumer_rate is None):
        raise UsageError("--shift-at and --shift-consumer-rate go together (when, and the consumer's new rate)")
    if args.png is not None:
        check_output_path(args.png, "--png")
        require_matplotlib()
    high = min(4096, scen.tenants[1].ring - 1)
    start = args.batch_start or min(DEFAULT_START, high)
    if start > high:
        raise UsageError(f"--batch-start {start}: larger than the forwarder's ring allows ({high})")
    lam = DEFAULT_LAMBDA if args.lam is None else float(args.lam)
    config = TunerConfig(lam=lam, low=1, high=high, start=start, probe=PROBE, max_step=MAX_STEP)
    period_ns = max(1, round((args.period_us or AUTO_PERIOD_US) * 1000))
    return Plan(
        config,
        args.periods or DEFAULT_PERIODS,
        period_ns,
        consumer_rate,
        args.shift_at,
        args.shift_consumer_rate or consumer_rate,
    )


def cmd_tuned(
    args: argparse.Namespace,
    out: Console,
    scen: Scenario,
    p: Plan,
    size: int,
    rate: float,
    stop: StopRequest,
    audit: AuditLog,
) -> int:
    """The tuned run (and ``--sweep``'s fixed batches), each in a world of its own; print, plot; 130 on Ctrl-C."""
    tuned = TunedBatch(BatchTuner(p.config), SPAN, p.periods, SETTLE)
    frames = int(rate * p.periods * (SETTLE + SPAN) * p.period_ns / 1e9)
    report = forward.run(
        scen, [Policy.BACKPRESSURE], frames, size, rate, p.consumer_rate, lambda: tuned,
        period_ns=p.period_ns, audit=audit, stop=stop.requested, slow_down=p.slow_down(),
    )[0]  # fmt: skip
    sweeps: Sweeps = []
    if args.sweep and not stop.requested():
        for r in p.rates:
            s = SweepBatches(list(range(1, p.config.high + 1)), SPAN, SETTLE)
            n = int(rate * len(s.batches) * (SETTLE + SPAN) * p.period_ns / 1e9)
            forward.run(
                scen, [Policy.BACKPRESSURE], n, size, rate, r, s.as_factory(),
                period_ns=p.period_ns, audit=audit, stop=stop.requested,
            )  # fmt: skip
            sweeps.append((r, s))
            if stop.requested():
                break
    traj = tuned.tuner.trajectory
    segs = _segments(traj, p)
    if args.json:
        doc = _json(report, traj, segs, sweeps, p, scen, rate, stop.requested())
        print(json.dumps({**doc, **durability_json(audit)}, indent=2))
    else:
        _print(out, report, traj, segs, sweeps, p, scen, rate)
        out.print(durability_line(audit), markup=False, highlight=False, soft_wrap=True)
        if stop.requested():
            out.print(f"stopped by {stop.name}: the trajectory above is what was measured")
    if args.png is not None and traj:
        with writing(args.png, "--png"):
            _plot(args.png, traj, segs, sweeps, p)
        if not args.json:
            out.print(f"plot: {args.png}", markup=False, highlight=False)
    if stop.requested():
        return stop.exit_code()
    return 0 if report.drops.agree and report.corrupt == 0 and report.drops.past_first_hop == 0 else 1


def _segments(traj: list[Sample], p: Plan) -> Segments:
    cut = p.shift_at if p.shift_at is not None else len(traj)
    return [(r, s) for r, s in ((p.consumer_rate, traj[:cut]), (p.then_rate, traj[cut:])) if s]


def _sweep_for(sweeps: Sweeps, rate: float) -> SweepBatches | None:
    return next((s for r, s in sweeps if r == rate and s.points), None)


def _print(
    out: Console,
    report: ForwardReport,
    traj: list[Sample],
    segs: Segments,
    sweeps: Sweeps,
    p: Plan,
    scen: Scenario,
    rate: float,
) -> None:
    table = Table(
        title=(
            f"forward --batch auto: source {rate:,.0f}/s, consumer {p.consumer_rate:,.0f}/s, lambda "
            f"{p.config.lam:g} kpps/µs, period {p.period_ns / 1000:g} µs, protection {scen.protection.value} "
            "(virtual time)"
        )
    )
    for col in ("period", "role", "batch", "consumer /s", "kpps", "p99 µs", "U"):
        table.add_column(col, justify="left" if col == "role" else "right", no_wrap=True)
    for s in traj:
        r = p.then_rate if p.shift_at is not None and s.period >= p.shift_at else p.consumer_rate
        table.add_row(
            str(s.period),
            s.role.value,
            str(s.batch),
            f"{r:,.0f}",
            f"{s.throughput:.1f}",
            f"{s.p99:.1f}",
            f"{s.utility:.1f}",
        )
    out.print(table)
    for r, samples in segs:
        where = settled(samples)
        knee = r * p.period_ns / 1e9
        at = where if where is not None else "-"
        line = f"consumer {r:,.0f}/s (knee: rate x period = {knee:g} frames): the tuner settled at batch {at}"
        sw = _sweep_for(sweeps, r)
        if sw is not None:
            b, res = sw.best(p.config.lam)
            line += f"; best fixed batch by sweep of 1..{sw.points[-1][0]}: {b} (U {utility(res, p.config.lam):.1f})"
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    d = report.drops
    out.print(
        f"{report.offered:,} frames offered, {report.delivered:,} delivered, {d.first_hop_mpc:,} dropped at hop 1, "
        f"{d.past_first_hop:,} past it; {report.duration_ns / 1e6:.1f} virtual ms; time is the inline engine's "
        "virtual clock, one forwarder burst per period (latency: source send to consumer take)",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip


def _json(
    report: ForwardReport,
    traj: list[Sample],
    segs: Segments,
    sweeps: Sweeps,
    p: Plan,
    scen: Scenario,
    rate: float,
    stopped: bool,
) -> dict[str, object]:
    return {
        "demo": "forward",
        "batch": AUTO,
        "seed": scen.seed,
        "protection": scen.protection.value,
        "clock": "virtual: one forwarder burst per period; latency source send to consumer take",
        "units": {"throughput": "kpps", "p99": "us", "lambda": "kpps per us"},
        "lambda": p.config.lam,
        "rate": rate,
        "consumer_rate": p.consumer_rate,
        "period_ns": p.period_ns,
        "settle_periods": SETTLE,
        "measured_periods": SPAN,
        "bounds": [p.config.low, p.config.high],
        "trajectory": [
            {
                "period": s.period,
                "role": s.role.value,
                "batch": s.batch,
                "kpps": round(s.throughput, 4),
                "p99_us": round(s.p99, 4),
                "utility": round(s.utility, 4),
            }
            for s in traj
        ],
        "settled": [{"consumer_rate": r, "batch": settled(s)} for r, s in segs],
        "sweeps": [
            {
                "consumer_rate": r,
                "best_batch": s.best(p.config.lam)[0] if s.points else None,
                "points": [
                    [b, round(x.kpps, 4), round(x.p99_us, 4), round(utility(x, p.config.lam), 4)] for b, x in s.points
                ],
            }
            for r, s in sweeps
        ],
        "offered": report.offered,
        "delivered": report.delivered,
        "dropped_past_first_hop": report.drops.past_first_hop,
        "counters_agree": report.drops.agree,
        "virtual_ms": report.duration_ns / 1e6,
        "stopped": stopped,
    }


def _plot(path: str, traj: list[Sample], segs: Segments, sweeps: Sweeps, p: Plan) -> None:
    """The batch and U against the tuner period (the knee dotted, the sweep's best dashed); U of every fixed batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 3 if sweeps else 2
    fig, axes = plt.subplots(rows, 1, figsize=(10, 3.2 * rows), dpi=100)
    holds = [s for s in traj if s.role is Role.HOLD]
    axes[0].plot([s.period for s in holds], [s.batch for s in holds], "-o", ms=3, label="batch held")
    for role, mark in ((Role.UP, "^"), (Role.DOWN, "v")):
        pr = [s for s in traj if s.role is role]
        axes[0].plot([s.period for s in pr], [s.batch for s in pr], mark, ms=4, alpha=0.6, label=role.value)
    for r, samples in segs:
        axes[0].hlines(r * p.period_ns / 1e9, samples[0].period, samples[-1].period, linestyles="dotted", colors="gray",
                       label=f"knee {r:,.0f}/s x period")  # fmt: skip
        sw = _sweep_for(sweeps, r)
        if sw is not None:
            axes[0].hlines(sw.best(p.config.lam)[0], samples[0].period, samples[-1].period, linestyles="dashed",
                           colors="black", label=f"best fixed ({r:,.0f}/s)")  # fmt: skip
    axes[1].plot([s.period for s in traj], [s.utility for s in traj], "-", color="gray", lw=1, label="U of each period")
    axes[1].plot([s.period for s in holds], [s.utility for s in holds], "o", ms=3, label="U at the held batch")
    if p.shift_at is not None and p.shift_at < len(traj):
        for ax in axes[:2]:
            ax.axvline(p.shift_at - 0.5, color="red", lw=1)
    axes[0].set_ylabel("forwarder burst (frames)")
    axes[0].set_title(
        f"forward --batch auto, lambda {p.config.lam:g} kpps/µs, period {p.period_ns / 1000:g} µs (virtual time)"
    )
    axes[0].legend(loc="best", fontsize="small")
    axes[1].set_ylabel("U = kpps - lambda * p99 µs")
    axes[1].set_xlabel("tuner period")
    axes[1].legend(loc="best", fontsize="small")
    if sweeps:
        for r, s in sweeps:
            axes[2].plot(
                [b for b, _ in s.points],
                [utility(x, p.config.lam) for _, x in s.points],
                "-",
                label=f"consumer {r:,.0f}/s",
            )
        axes[2].set_xscale("log")
        axes[2].set_xlabel("fixed batch (sweep)")
        axes[2].set_ylabel("U")
        axes[2].legend(loc="best", fontsize="small")
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
