"""``nic-sandbox demo afxdp``: its flags, and printing it: the two directions, XDP_STATISTICS and the rings (or JSON).

The demo itself (sandbox/demos/afxdp.py) needs cffi and bpf(2) as soon as it is
imported, so it is imported only when this demo runs: every other command, and
``demo afxdp --help``, work without them.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sandbox.argtypes import int_range
from sandbox.errors import UsageError
from sandbox.flags import (
    add_demo_kind,
    add_frame_size_flag,
    add_json_flag,
)

if TYPE_CHECKING:
    from sandbox.demos import afxdp as afxdp_demo

P = TypeVar("P", bound=argparse.ArgumentParser)
NAME = "afxdp"
#: --count, --size (on the wire, FCS included) and --batch when not given
DEFAULT_COUNT, DEFAULT_SIZE, DEFAULT_BATCH = 10_000, 64, 64
DESCRIPTION = (
    "afxdp (root): the real kernel's AF_XDP rings.  A namespace gets a veth pair (198.18.1.1/30 <-> "
    f".2/30); an AF_XDP socket (copy mode) on one end sends --count numbered frames (default {DEFAULT_COUNT}, "
    f"--size default {DEFAULT_SIZE}, --batch default {DEFAULT_BATCH}) through its TX ring to a packet socket on "
    "the other end, which sends as many back; a hand-assembled XDP program redirects them into the socket's RX "
    "ring.  Every frame is checked byte for byte; prints frames/s, the kernel's XDP_STATISTICS and the ring "
    "counters.  Everything is removed on exit, on error and on Ctrl-C.  No simulated machine: no scenario, "
    "no protection mode, no audit log."
)
EXAMPLES = "  sudo nic-sandbox demo afxdp --count 100000 --size 1518 --batch 256"


def add_parser(kinds: argparse._SubParsersAction[P]) -> None:
    """Add ``afxdp`` to the ``demo`` kinds."""
    demo = add_demo_kind(
        kinds,
        NAME,
        "(root) numbered frames both ways through the real kernel's AF_XDP rings on a veth pair",
        DESCRIPTION,
        EXAMPLES,
    )
    demo.add_argument(
        "--count", type=int_range(1, 10**9, "--count"), help=f"frames to send each way (default {DEFAULT_COUNT})"
    )
    add_frame_size_flag(demo, str(DEFAULT_SIZE))
    demo.add_argument(
        "--batch",
        type=int_range(1, 4096, "--batch"),
        help=f"frames per burst on the rings (default {DEFAULT_BATCH})",
    )
    add_json_flag(demo)
    demo.set_defaults(func=cmd_afxdp)


def cmd_afxdp(args: argparse.Namespace, out: Console) -> int:
    """Run the demo with --count/--size/--batch and print a table or JSON."""
    from sandbox.demos import afxdp as afxdp_demo  # cffi and bpf(2) only when this demo runs

    count = args.count or DEFAULT_COUNT
    size = args.size or DEFAULT_SIZE
    batch = args.batch or DEFAULT_BATCH
    try:
        if args.json or not out.is_terminal:
            report = afxdp_demo.run(count, size, batch)
        else:
            with Progress(
                TextColumn("[bold]afxdp {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=out,
                transient=True,
            ) as bar:
                tasks = {d: bar.add_task(d, total=count) for d in ("tx", "rx")}
                report = afxdp_demo.run(count, size, batch, lambda d, n: bar.update(tasks[d], completed=n))
    except OSError as err:
        raise UsageError(f"the afxdp demo needs root, veth and AF_XDP in the kernel: {err}") from None
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print_report(out, report)
    return 0 if report.clean else 1


def report_json(report: afxdp_demo.AfxdpReport) -> dict[str, object]:
    return {
        "demo": "afxdp",
        "namespace": report.namespace,
        "interfaces": {"xsk": report.port, "peer": report.peer},
        "frame_size": report.frame_size,
        "batch": report.batch,
        "directions": [report.tx.as_dict(), report.rx.as_dict()],
        "xdp_statistics": report.statistics,
        "rings": report.rings,
        "kicks": report.kicks,
        "tx_budget": report.tx_budget,
        "zerocopy": report.zerocopy,
        "clean": report.clean,
        "notes": report.notes,
    }


def print_report(out: Console, report: afxdp_demo.AfxdpReport) -> None:
    table = Table(
        title=(
            f"afxdp: {report.frame_size}-byte frames, batch {report.batch}, copy mode, "
            f"{report.port} <-> {report.peer} in namespace {report.namespace}"
        )
    )
    for col in ("direction", "sent", "received", "lost", "corrupt", "dup", "reordered", "frames/s"):
        table.add_column(col, justify="left" if col == "direction" else "right", no_wrap=True)
    for d in (report.tx, report.rx):
        table.add_row(
            d.name,
            f"{d.sent:,}",
            f"{d.received:,}",
            str(d.lost),
            str(d.corrupt),
            str(d.duplicates),
            str(d.out_of_order),
            f"{d.frames_per_second:,.0f}",
        )
    out.print(table)
    stats = Table(title="kernel XDP_STATISTICS (getsockopt)")
    stats.add_column("counter")
    stats.add_column("value", justify="right")
    for name, value in report.statistics.items():
        stats.add_row(name, f"{value:,}")
    out.print(stats)
    rings = Table(title="rings (free-running u32 counters)")
    for col in ("ring", "producer", "consumer"):
        rings.add_column(col, justify="left" if col == "ring" else "right")
    for name, pc in report.rings.items():
        rings.add_row(name, f"{pc['producer']:,}", f"{pc['consumer']:,}")
    out.print(rings)
    verdict = "[green]every frame arrived intact[/]" if report.clean else "[red]frames were lost or damaged[/]"
    out.print(f"{verdict}; {report.kicks:,} kicks (sendto), TX budget {report.tx_budget} per kick")
    for note in report.notes:
        out.print(f"note: {note}")
    out.print(f"namespace {report.namespace} and its veth pair, XDP program and sockets are removed")
