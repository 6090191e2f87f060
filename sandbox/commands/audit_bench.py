"""``nic-sandbox audit bench``: the durability latency of group commit, predicted and measured on this disk.

Measures the fsync times of this disk, predicts with ``measure.durability``
how long a record waits until it is on disk for each arrival rate and group
size, writes Poisson streams of refusals at those rates through the real
audit log with that group commit, and prints model against measurement
(mean, p50, p99) per setting, with the writer's flat-out rate per group size
(issue 12).  ``--png`` draws both.  Ctrl-C or SIGTERM stops the sweep and
prints what was measured so far.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from rich.console import Console
from rich.table import Table

from measure.durability import FsyncTimes, Prediction, predict
from measure.durability_disk import Measured, Setting, fsync_times, run_setting, writer_rate
from sandbox.argtypes import bounded_number, check_output_dir, check_output_path, require_matplotlib, writing
from sandbox.errors import UsageError
from sandbox.signals import requested_stop
from verifier.audit.durability import MAX_INTERVAL_MS, MAX_RECORDS, MIN_INTERVAL_MS, GroupCommit

P = TypeVar("P", bound=argparse.ArgumentParser)

DEFAULT_RATES = "100,1000,5000"
DEFAULT_BATCHES = "1,8,64,512"
DEFAULT_INTERVAL_MS = 20.0
DEFAULT_SECONDS = 30.0
MAX_RATE = 1_000_000.0
MAX_SETTINGS = 64
#: Shares of the budget: fsync calibration, the writer flat out, the Poisson streams (the rest).
CALIBRATION_SHARE, WRITER_SHARE = 0.15, 0.15
#: Fsync samples per group size at most (a budget may stop the calibration earlier).
FSYNC_SAMPLES = 200

EXAMPLES = """examples:
  nic-sandbox audit bench                                   3 rates x 4 group sizes, 30 s
  nic-sandbox audit bench --rates 1000 --batches 1,16,256 --interval 5 --seconds 10 --png durability.png
  nic-sandbox audit bench --dir /var/log/nic-sandbox --json  measure the disk a real log would use

what it prints, per setting (rate offered, group size N, interval T):
  achieved  records/s the writer took (lower than offered: the disk could not keep up)
  load      ρ = fsyncs/s x fsync time, from the model; at 1 or more the disk is saturated
  group     records per fsync, model / measured
  mean, p50, p99  durability latency in ms (record written -> the fsync covering it returned), model / measured
then the fsync times measured on this disk per group size, and the writer flat out per group size
(record_batch of 255 refusals, commit after each: issue 12's "writer alone")."""


def _number_list(kind: type[int] | type[float], what: str, low: float, high: float) -> Any:
    """An argparse type: comma-separated numbers, each in ``[low, high]``, at most ``MAX_SETTINGS`` of them."""
    one = bounded_number(kind, what, low, high)

    def convert(text: str) -> list[int | float]:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"{what} wants comma-separated numbers such as 1,8,64, got {text!r}")
        if len(parts) > MAX_SETTINGS:
            raise argparse.ArgumentTypeError(f"{what} takes at most {MAX_SETTINGS} values, got {len(parts)}")
        return sorted(set(one(p) for p in parts))

    return convert


def add_parser(actions: argparse._SubParsersAction[P]) -> None:
    """Add ``bench`` to the ``audit`` actions."""
    bench = actions.add_parser(
        "bench",
        help="durability latency of group commit (fsync every N records or T ms): model against measurement",
        description=(
            "How long does an audit record wait until it is on disk?  With group commit (--fsync batch "
            "--fsync-batch N --fsync-interval T) a record waits for its group to close -- N records, or T ms "
            "after the group's first record, whichever comes first -- and then for the fsync covering it.  "
            "This measures the fsync times of this disk, predicts the latency with a queueing model "
            "(Poisson arrivals; docs/async-io.md section 4), writes Poisson streams of refusals through the "
            "real audit log at each rate and group size, and prints model against measurement."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "--rates",
        type=_number_list(float, "--rates", 1.0, MAX_RATE),
        default=DEFAULT_RATES,
        metavar="LIST",
        help=f"records per second offered, comma-separated (default {DEFAULT_RATES})",
    )
    bench.add_argument(
        "--batches",
        type=_number_list(int, "--batches", 1, MAX_RECORDS),
        default=DEFAULT_BATCHES,
        metavar="LIST",
        help=f"group sizes N (records per fsync at most), comma-separated (default {DEFAULT_BATCHES})",
    )
    bench.add_argument(
        "--interval",
        type=bounded_number(float, "--interval", MIN_INTERVAL_MS, MAX_INTERVAL_MS),
        default=DEFAULT_INTERVAL_MS,
        metavar="MS",
        help=f"the group commit's longest wait T in ms (default {DEFAULT_INTERVAL_MS:g})",
    )
    bench.add_argument(
        "--seconds",
        type=bounded_number(float, "--seconds", 0.5, 86_400.0),
        default=DEFAULT_SECONDS,
        metavar="S",
        help=f"time budget of the whole run (default {DEFAULT_SECONDS:g})",
    )
    bench.add_argument(
        "--dir",
        default="out",
        metavar="DIR",
        help="measure the disk of this directory; scratch logs go in a temporary folder inside, removed "
        "after (default out, where the demos' audit log goes)",
    )
    bench.add_argument("--png", metavar="FILE.png", help="draw model and measurement into this PNG (needs matplotlib)")
    bench.add_argument("--seed", type=bounded_number(int, "--seed", 0, 2**32 - 1), default=1, help="arrival streams")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace, out: Console) -> int:
    if args.png is not None:
        check_output_path(args.png, "--png")
        require_matplotlib()
    rates, batches = list(args.rates), list(args.batches)  # argparse ran the type on the string defaults too
    where = check_output_dir(args.dir, "--dir")
    where.mkdir(parents=True, exist_ok=True)
    settings = [Setting(float(r), GroupCommit(int(n), float(args.interval))) for r in rates for n in batches]
    if len(settings) > MAX_SETTINGS:
        raise UsageError(f"--rates x --batches makes {len(settings)} settings; at most {MAX_SETTINGS}")
    scratch = Path(tempfile.mkdtemp(prefix=".nicsb-audit-bench-", dir=where))
    pairs: list[tuple[Prediction, Measured]] = []
    writers: dict[int | None, float] = {}
    try:
        with requested_stop() as stop:
            budget = float(args.seconds)
            sizes = sorted({1, *batches})
            fsync = fsync_times(scratch, sizes, FSYNC_SAMPLES, budget * CALIBRATION_SHARE, stop.requested)
            if not fsync:
                return _stopped(out, stop.name, stop.exit_code())
            share = budget * (1 - CALIBRATION_SHARE - WRITER_SHARE) / len(settings)
            for i, setting in enumerate(settings):
                if stop.requested():
                    break
                model = predict(setting.rate, setting.group.records, setting.group.interval_s, fsync, seed=args.seed)
                measured = run_setting(scratch, setting, share, seed=args.seed + i, stop=stop.requested)
                if measured.records:
                    pairs.append((model, measured))
            each = budget * WRITER_SHARE / (len(batches) + 1)
            for n in [None, *batches]:
                if stop.requested():
                    break
                group = None if n is None else GroupCommit(n, float(args.interval))
                writers[n] = writer_rate(scratch, group, each, stop.requested)
            _report(out, args, pairs, fsync, writers, stop.name)
            if args.png is not None and pairs:
                from measure.durability_plot import plot

                with writing(args.png, "--png"):
                    plot(Path(args.png), pairs, fsync, _title(args))
                if not args.json:
                    out.print(f"plot: {args.png}", markup=False, highlight=False)
            return stop.exit_code() if stop.requested() else 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _stopped(out: Console, signal_name: str | None, code: int) -> int:
    out.print(f"stopped ({signal_name}) before any fsync was measured", markup=False, highlight=False)
    return code


def _title(args: argparse.Namespace) -> str:
    return f"audit log group commit on {Path(args.dir).resolve()} (T = {args.interval:g} ms)"


def _ms(seconds: float) -> str:
    return "-" if not math.isfinite(seconds) else f"{seconds * 1e3:.2f}"


def _pct(m: Measured, q: float) -> float:
    return float(np.percentile(m.latencies_s, q))


def _report(
    out: Console,
    args: argparse.Namespace,
    pairs: list[tuple[Prediction, Measured]],
    fsync: FsyncTimes,
    writers: dict[int | None, float],
    stopped: str | None,
) -> None:
    if args.json:
        print(json.dumps(_as_json(args, pairs, fsync, writers, stopped), indent=2))
        return
    table = Table(title=f"durability latency, model / measured (ms): {_title(args)}")
    for col in ("rate/s", "N", "achieved/s", "load ρ", "group", "mean", "p50", "p99", "records"):
        table.add_column(col, justify="right", no_wrap=True)
    for p, m in pairs:
        saturated = p.load >= 1
        model = (lambda s: "sat.") if saturated else _ms
        table.add_row(
            f"{p.rate:g}",
            str(p.records),
            f"{m.achieved_rate:,.0f}",
            f"{p.load:.2f}" + (" !" if saturated else ""),
            f"{p.group:.1f} / {m.group:.1f}",
            f"{model(p.mean_s)} / {_ms(float(np.mean(m.latencies_s)))}",
            f"{model(p.p50_s)} / {_ms(_pct(m, 50))}",
            f"{model(p.p99_s)} / {_ms(_pct(m, 99))}",
            f"{m.records:,}" + (" (stopped)" if m.stopped else ""),
        )
    out.print(table)
    if any(p.load >= 1 for p, _ in pairs):
        out.print(
            "! load ρ >= 1: the disk cannot sync groups that size as fast as records come; the writer blocks on "
            "fsync and takes records only as fast as it syncs them ('achieved'), so the model does not apply (sat.)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    sync = Table(title="write + fsync of one group on this disk (ms)")
    for col in ("records", "samples", "mean", "p50", "p99"):
        sync.add_column(col, justify="right", no_wrap=True)
    for size in sorted(fsync):
        t = fsync[size]
        sync.add_row(
            str(size), str(t.size), _ms(float(np.mean(t))), *(_ms(float(v)) for v in np.percentile(t, [50, 99]))
        )
    out.print(sync)
    if writers:
        flat = Table(title="writer flat out (record_batch of 255 refusals + commit; issue 12)")
        flat.add_column("fsync", no_wrap=True)
        flat.add_column("records/s", justify="right")
        for n, rate in writers.items():
            what = "batch: one per doorbell" if n is None else f"group commit N={n}, T={args.interval:g} ms"
            flat.add_row(what, f"{rate:,.0f}")
        out.print(flat)
    if stopped is not None:
        out.print(f"stopped by {stopped}: the figures above are what was measured until then", markup=False)


def _as_json(
    args: argparse.Namespace,
    pairs: list[tuple[Prediction, Measured]],
    fsync: FsyncTimes,
    writers: dict[int | None, float],
    stopped: str | None,
) -> dict[str, Any]:
    def stats(t: np.ndarray[Any, Any]) -> dict[str, float]:
        return {
            "mean_ms": float(np.mean(t)) * 1e3,
            "p50_ms": float(np.percentile(t, 50)) * 1e3,
            "p99_ms": float(np.percentile(t, 99)) * 1e3,
        }

    return {
        "directory": str(Path(args.dir).resolve()),
        "interval_ms": args.interval,
        "stopped": stopped,
        "settings": [
            {
                "rate": p.rate,
                "records_per_fsync_max": p.records,
                "achieved_rate": m.achieved_rate,
                "load": p.load,
                "saturated": p.load >= 1,
                "model": {
                    "group": p.group,
                    "wait_ms": p.wait_s * 1e3,
                    "fsync_ms": p.fsync_s * 1e3,
                    "mean_ms": p.mean_s * 1e3,
                    "p50_ms": p.p50_s * 1e3,
                    "p99_ms": p.p99_s * 1e3,
                },
                "measured": {
                    "group": m.group,
                    "records": m.records,
                    **stats(m.latencies_s),
                    "fsync_mean_ms": float(np.mean(m.fsyncs_s)) * 1e3 if m.fsyncs_s.size else None,
                },
            }
            for p, m in pairs
        ],
        "fsync": {str(k): {"samples": int(v.size), **stats(v)} for k, v in sorted(fsync.items())},
        "writer": [{"records_per_fsync": n, "records_per_s": r} for n, r in writers.items()],
    }
