"""``nic-sandbox demo forward``: a bounded forwarder with and without back-pressure, side by side."""

from __future__ import annotations

import argparse
import json
from typing import TypeVar

import numpy as np
from rich.console import Console
from rich.table import Table

from device.e1000 import EngineMode
from measure import forward_plot
from measure.forward import FixedBatch, ForwardReport, Policy
from sandbox.argtypes import bounded_number, check_output_path, int_range, require_matplotlib, writing
from sandbox.commands import forward_tuned, pingpong_tuned
from sandbox.demos import forward
from sandbox.errors import UsageError
from sandbox.flags import (
    add_demo_kind,
    add_frame_size_flag,
    add_json_flag,
    add_kernel_flags,
    add_scenario_flags,
    audit_from_flags,
    durability_json,
    durability_line,
    scenario_from_flags,
)
from sandbox.signals import requested_stop

P = TypeVar("P", bound=argparse.ArgumentParser)
NAME = "forward"
DEFAULT_COUNT, DEFAULT_SIZE, DEFAULT_BATCH = 20_000, 64, 32
DEFAULT_RATE, DEFAULT_CONSUMER_RATE, DEFAULT_PERIOD_US = 1_000_000.0, 400_000.0, 10.0
#: Rates a run may ask for, frames per virtual second (10 Gb/s of 64-byte frames is 14.9 million).
MAX_RATE = 100e6
DESCRIPTION = (
    "forward: tenant 1 sends a numbered stream at --rate to tenant 2, which forwards it through a second NIC to "
    "tenant 3, whose consumer takes only --consumer-rate.  Runs twice in virtual time, side by side: with "
    "back-pressure (the forwarder keeps what its full TX ring refused and reads no more: the loss stays at the "
    "first hop) and without (it drops what did not fit: the loss moves into the forwarder).  Prints offered, "
    "forwarded, delivered and dropped frames, and WHERE each drop happened, as counted by the NICs (MPC) and the "
    "forwarder (ring-full) and as the run's sequence numbers say; --png plots ring occupancy against time."
)
EXAMPLES = (
    "  nic-sandbox demo forward                       both runs: 20000 frames, 1 Mpps offered, 400 kpps consumed\n"
    "  nic-sandbox demo forward --png /tmp/fwd.png    ... and plot ring occupancy over virtual time\n"
    "  nic-sandbox demo forward --no-backpressure --no-pause   the lossy run only, no PAUSE on the second link\n"
    "  nic-sandbox demo forward --consumer-rate 900000 --batch 8 --json\n"
    f"{forward_tuned.EXAMPLES}"
)
EPILOG = (
    "what the columns mean:\n"
    "  offered         frames the source sent (open loop, as UDP is)\n"
    "  taken           frames the forwarder took from its RX ring\n"
    "  forwarded       frames its TX ring took (tx_burst's count)\n"
    "  delivered       frames the consumer received intact\n"
    "  dropped @ ...   hop 1 MPC: the forwarder's NIC had no RX descriptor (its ring was full);\n"
    "                  forwarder ring-full: the forwarder dropped what tx_burst refused (last_shortfall);\n"
    "                  hop 2 MPC: the consumer's NIC had no RX descriptor (no PAUSE held the sender)\n"
    "  rate            frames per virtual second over the second half of the sending time\n"
    "  latency         source send to consumer receive, virtual microseconds (queueing in the rings)\n"
    "Time is virtual: each period (--period-us) the source sends what its rate owes, the forwarder does one\n"
    "burst of --batch, the consumer takes what its rate allows.  Same flags, same numbers."
)


def add_parser(kinds: argparse._SubParsersAction[P]) -> None:
    """Add ``forward`` to the ``demo`` kinds."""
    demo = add_demo_kind(
        kinds,
        NAME,
        "a forwarder to a slower consumer: back-pressure (loss at the first hop only) against loss",
        DESCRIPTION,
        EXAMPLES,
        EPILOG,
    )
    demo.add_argument("--count", type=int_range(1, 10**7, "--count"), help=f"frames to send (default {DEFAULT_COUNT})")
    add_frame_size_flag(demo, str(DEFAULT_SIZE))
    demo.add_argument(
        "--rate",
        type=bounded_number(float, "--rate", 1, MAX_RATE),
        metavar="FPS",
        help=f"frames per virtual second the source sends (default {DEFAULT_RATE:,.0f})",
    )
    demo.add_argument(
        "--consumer-rate",
        type=bounded_number(float, "--consumer-rate", 1, MAX_RATE),
        metavar="FPS",
        help=f"frames per virtual second the consumer takes (default {DEFAULT_CONSUMER_RATE:,.0f})",
    )
    demo.add_argument(
        "--batch",
        type=pingpong_tuned.batch_type,
        help=f"frames per forwarder burst, one burst per period (default {DEFAULT_BATCH}), or auto: the burst tunes "
        "itself by gradient ascent on U = throughput - lambda * p99 (see the group below)",
    )
    demo.add_argument(
        "--period-us",
        type=bounded_number(float, "--period-us", 0.1, 10_000),
        metavar="US",
        help=f"virtual microseconds per period (default {DEFAULT_PERIOD_US:g})",
    )
    which = demo.add_mutually_exclusive_group()
    which.add_argument("--no-backpressure", action="store_true", help="only the run that drops (no back-pressure)")
    which.add_argument("--backpressure-only", action="store_true", help="only the run with back-pressure")
    demo.add_argument(
        "--no-pause",
        action="store_true",
        help="no 802.3x PAUSE on the second link: the consumer's NIC misses frames (MPC) whatever the forwarder does",
    )
    demo.add_argument(
        "--png",
        metavar="PATH",
        help="plot ring occupancy against virtual time (with --batch auto: the trajectory) (needs matplotlib)",
    )
    forward_tuned.add_flags(demo)
    add_scenario_flags(demo)
    add_kernel_flags(demo)
    add_json_flag(demo)
    demo.set_defaults(func=cmd_forward)


def cmd_forward(args: argparse.Namespace, out: Console) -> int:
    if args.engine == EngineMode.THREADED.value:
        raise UsageError("--engine threaded: forward runs on virtual time, which only the inline engine keeps")
    if args.png is not None:
        require_matplotlib()
        check_output_path(args.png, "--png")
    scen = scenario_from_flags(args, NAME)
    consumer_rate = args.consumer_rate or DEFAULT_CONSUMER_RATE
    if args.batch == pingpong_tuned.AUTO:
        auto = forward_tuned.plan(args, scen, consumer_rate)
        with audit_from_flags(args, scen) as audit, requested_stop() as stop:
            return forward_tuned.cmd_tuned(
                args, out, scen, auto, args.size or DEFAULT_SIZE, args.rate or DEFAULT_RATE, stop, audit
            )
    if problem := forward_tuned.problem_without_auto(args):
        raise UsageError(problem)
    count = args.count or DEFAULT_COUNT
    size = args.size or DEFAULT_SIZE
    rate = args.rate or DEFAULT_RATE
    batch = int(args.batch or DEFAULT_BATCH)
    period_ns = max(1, round((args.period_us or DEFAULT_PERIOD_US) * 1000))
    if args.no_backpressure:
        policies = [Policy.DROP]
    elif args.backpressure_only:
        policies = [Policy.BACKPRESSURE]
    else:
        policies = [Policy.BACKPRESSURE, Policy.DROP]
    with audit_from_flags(args, scen) as audit, requested_stop() as stop:
        reports = forward.run(
            scen, policies, count, size, rate, consumer_rate, lambda: FixedBatch(batch),
            pause=not args.no_pause, period_ns=period_ns, audit=audit, stop=stop.requested,
        )  # fmt: skip
    if args.json:
        doc = _json(reports, scen.seed, scen.protection.value, batch, stop.requested())
        print(json.dumps({**doc, **durability_json(audit)}, indent=2))
    else:
        _print(out, reports, batch, scen.protection.value)
        out.print(durability_line(audit), markup=False, highlight=False, soft_wrap=True)
        if stop.requested():
            out.print(f"stopped by {stop.name}: the source stopped early, the rings drained, the counts are whole")
    if args.png is not None:  # after the report: a write that fails still leaves what was measured on screen
        with writing(args.png, "--png"):
            forward_plot.plot(reports, args.png)
        if not args.json:
            out.print(f"plot: {args.png}", markup=False, highlight=False)
    if stop.requested():
        return stop.exit_code()
    return 0 if all(r.drops.agree and r.corrupt == 0 for r in reports) else 1


def _rows(r: ForwardReport) -> dict[str, str]:
    d = r.drops
    return {
        "offered": f"{r.offered:,}",
        "taken by the forwarder": f"{r.taken:,}",
        "forwarded": f"{r.forwarded:,}",
        "delivered": f"{r.delivered:,}",
        "dropped @ hop 1 (MPC)": f"{d.first_hop_mpc:,}",
        "dropped @ forwarder (ring-full)": f"{d.forwarder_ring_full:,}",
        "dropped @ hop 2 (MPC)": f"{d.last_hop_mpc:,}",
        "dropped past the first hop": f"{d.past_first_hop:,}",
        "counters = sequence numbers": "yes"
        if d.agree
        else f"NO ({d.oracle_first_hop}/{d.oracle_forwarder}/{d.oracle_last_hop})",
        "tx_burst shortfalls": ", ".join(f"{k} {v:,}" for k, v in r.shortfalls.items()),
        "PAUSE on link 2 (XOFF / XON)": f"{r.pauses['xoff']:,} / {r.pauses['xon']:,}" if r.pause else "off",
        "rate taken (frames/s)": f"{r.settled_rate('taken'):,.0f}",
        "rate forwarded (frames/s)": f"{r.settled_rate('forwarded'):,.0f}",
        "rate consumed (frames/s)": f"{r.settled_rate('consumed'):,.0f}",
        "peak occupancy rx / tx / consumer": " / ".join(
            str(int(r.column(c).max(initial=0))) for c in ("rx_ring", "tx_ring", "consumer_ring")
        ),
        "latency p50 / p99 (virtual µs)": f"{r.latency_percentile(50):,.0f} / {r.latency_percentile(99):,.0f}",
        "virtual time (ms)": f"{r.duration_ns / 1e6:,.2f}",
    }


def _print(out: Console, reports: list[ForwardReport], batch: int, protection: str) -> None:
    first = reports[0]
    table = Table(
        title=(
            f"forward: {first.frame_size}-byte frames, source {first.rate:,.0f}/s, consumer "
            f"{first.consumer_rate:,.0f}/s, batch {batch}, rings {'/'.join(map(str, first.ring.values()))}, "
            f"protection {protection}, virtual time"
        )
    )
    table.add_column("", justify="left", no_wrap=True)
    for r in reports:
        table.add_column(forward_plot.title(r), justify="right", no_wrap=True)
    rows = [_rows(r) for r in reports]
    for key in rows[0]:
        table.add_row(key, *(row[key] for row in rows))
    out.print(table)
    out.print(_occupancy_table(reports))
    for r in reports:
        where = "nothing lost past the first hop" if r.drops.past_first_hop == 0 else (
            f"{r.drops.past_first_hop:,} frames lost past the first hop"
        )  # fmt: skip
        out.print(f"{forward_plot.title(r)}: {where}; forwarded at {r.settled_rate():,.0f}/s", markup=False)


#: How many moments of each run the occupancy table shows (the PNG and --json have every period).
OCCUPANCY_SAMPLES = 10


def _occupancy_table(reports: list[ForwardReport]) -> Table:
    """Ring occupancy over time, run by run: rx / tx / consumer at evenly spaced tenths of each run's virtual time.

    Where the queue builds is the lesson: with back-pressure the forwarder's RX ring fills (its NIC then misses
    at hop 1) while nothing is lost after it; without, the forwarder's RX stays empty and its TX ring overflows.
    """
    table = Table(title="ring occupancy over time: forwarder rx / forwarder tx / consumer rx (descriptors held)")
    table.add_column("share of the run", justify="right")
    samples: list[list[str]] = []
    for r in reports:
        table.add_column(f"{forward_plot.title(r)} (virtual µs)", justify="right", no_wrap=True)
        t = r.column("t_ns")
        cols = [r.column(c) for c in ("rx_ring", "tx_ring", "consumer_ring")]
        cells = []
        for k in range(1, OCCUPANCY_SAMPLES + 1):
            if t.size == 0:
                cells.append("-")
                continue
            i = min(t.size - 1, int(np.searchsorted(t, t[-1] * k / OCCUPANCY_SAMPLES)))
            cells.append(f"{t[i] / 1e3:>9,.0f}: " + " / ".join(f"{int(c[i]):>3}" for c in cols))
        samples.append(cells)
    for k in range(OCCUPANCY_SAMPLES):
        table.add_row(f"{(k + 1) * 100 // OCCUPANCY_SAMPLES}%", *(cells[k] for cells in samples))
    return table


def _json(reports: list[ForwardReport], seed: int, protection: str, batch: int, stopped: bool) -> dict[str, object]:
    runs = []
    for r in reports:
        d = r.drops
        runs.append(
            {
                "policy": r.policy.value,
                "pause": r.pause,
                "offered": r.offered,
                "taken": r.taken,
                "forwarded": r.forwarded,
                "delivered": r.delivered,
                "corrupt": r.corrupt,
                "dropped": {
                    "hop1_mpc": d.first_hop_mpc,
                    "forwarder_ring_full": d.forwarder_ring_full,
                    "hop2_mpc": d.last_hop_mpc,
                },
                "oracle": {
                    "hop1": d.oracle_first_hop,
                    "forwarder": d.oracle_forwarder,
                    "hop2": d.oracle_last_hop,
                },
                "counters_agree": d.agree,
                "shortfalls": r.shortfalls,
                "pauses": r.pauses,
                "rates": {c: round(r.settled_rate(c), 1) for c in ("offered", "taken", "forwarded", "consumed")},
                "latency_us": {"p50": r.latency_percentile(50), "p99": r.latency_percentile(99)},
                "virtual_ms": r.duration_ns / 1e6,
                "occupancy": {
                    "t_us": (r.column("t_ns") // 1000).tolist(),
                    **{c: r.column(c).tolist() for c in ("rx_ring", "tx_ring", "consumer_ring", "held")},
                },
            }
        )
    return {
        "demo": "forward",
        "seed": seed,
        "protection": protection,
        "frame_size": reports[0].frame_size,
        "rate": reports[0].rate,
        "consumer_rate": reports[0].consumer_rate,
        "batch": batch,
        "period_ns": reports[0].period_ns,
        "stopped": stopped,
        "runs": runs,
    }
