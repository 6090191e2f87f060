"""``nic-sandbox demo [pingpong]``: numbered frames alice -> bob and back; its flags, its table and its JSON."""

from __future__ import annotations

import argparse
import json
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sandbox.argtypes import check_output_path, int_range
from sandbox.commands import pingpong_tuned, qemu
from sandbox.demos import pingpong
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
from world import scenario
from world.virtio import virtio_queues

P = TypeVar("P", bound=argparse.ArgumentParser)
NAME = "pingpong"
DEFAULT_COUNT, DEFAULT_SIZE, DEFAULT_BATCH = 100_000, 64, 32
DESCRIPTION = (
    "pingpong (the default: 'nic-sandbox demo' is 'nic-sandbox demo pingpong'): tenant 1 sends sequence-numbered "
    "Ether/IPv4/UDP frames (built with scapy) through its TX ring; tenant 2 receives them through its RX ring, "
    "checks every byte, and echoes them back.  Prints frames, bytes, lost, out-of-order and Mpps per direction, "
    "and writes a pcap of the cable."
)
EXAMPLES = (
    "  nic-sandbox demo                      send 100000 frames alice -> bob and back\n"
    "  nic-sandbox demo --count 20000 --size 128 --batch 64 --pcap /tmp/pp.pcap\n"
    "  nic-sandbox demo --protection verifier --audit-log /tmp/audit.jsonl\n"
    "  nic-sandbox demo --nic qemu                the same pingpong on QEMU's e1000 (qtest)\n"
    "  nic-sandbox demo --nic virtio --protection none    on virtio-net split virtqueues\n"
    "  nic-sandbox demo --nic qemu-virtio         virtqueues through QEMU's virtio-net, the verifier in front\n"
    "  nic-sandbox scenario > my.toml && nic-sandbox demo --scenario my.toml\n"
    f"{pingpong_tuned.EXAMPLES}"
)


def add_parser(kinds: argparse._SubParsersAction[P]) -> None:
    """Add ``pingpong`` to the ``demo`` kinds."""
    demo = add_demo_kind(
        kinds,
        NAME,
        "tenant 1 sends numbered frames to tenant 2, which checks and echoes them (the default)",
        DESCRIPTION,
        EXAMPLES,
    )
    demo.add_argument(
        "--count",
        type=int_range(1, 10**9, "--count"),
        help=f"frames to send (default {DEFAULT_COUNT}; {qemu.QEMU_DEFAULT_COUNT} with --nic qemu or qemu-virtio)",
    )
    add_frame_size_flag(demo, str(DEFAULT_SIZE))
    demo.add_argument(
        "--batch",
        type=pingpong_tuned.batch_type,
        help=f"frames per tx_burst/rx_burst, 1-{pingpong_tuned.MAX_BATCH} (default {DEFAULT_BATCH}), or auto: "
        "the batch tunes itself by gradient ascent on U = throughput - lambda * p99 (see the group below)",
    )
    pcap = demo.add_mutually_exclusive_group()
    pcap.add_argument("--pcap", metavar="PATH", help="write the cable's frames here (default: the scenario's)")
    pcap.add_argument("--no-pcap", action="store_true", help="write no pcap (fastest)")
    add_scenario_flags(demo)
    qemu.add_nic_flag(demo)
    add_kernel_flags(demo)
    add_json_flag(demo)
    pingpong_tuned.add_flags(demo)
    demo.set_defaults(func=cmd_pingpong)


def cmd_pingpong(args: argparse.Namespace, out: Console) -> int:
    if problem := qemu.nic_flag_problem(args):
        raise UsageError(problem)
    scen = scenario_from_flags(args, NAME)
    if len(scen.tenants) < 2:
        raise UsageError(f"{scen.source}: pingpong needs two tenants")
    size = args.size or DEFAULT_SIZE
    auto = pingpong_tuned.plan(args, scen, size) if args.batch == pingpong_tuned.AUTO else None
    if auto is None and (problem := pingpong_tuned.problem_without_auto(args)):
        raise UsageError(problem)
    count = qemu.default_count(args, DEFAULT_COUNT)
    batch = int(args.batch or DEFAULT_BATCH) if auto is None else DEFAULT_BATCH
    pcap: str | bool = False if args.no_pcap else (True if args.pcap is None else args.pcap)
    if isinstance(pcap, str):
        check_output_path(pcap, "--pcap")
    elif pcap:
        for i, cable in enumerate(scen.cables):
            if cable.pcap is not None:
                check_output_path(cable.pcap, f"{scen.source}: cable[{i}].pcap")
    if auto is not None:
        with audit_from_flags(args, scen) as audit, qemu.build_world(args, scen, pcap, audit) as world:
            return pingpong_tuned.cmd_tuned(args, out, scen, world, auto)
    with audit_from_flags(args, scen) as audit, qemu.build_world(args, scen, pcap, audit) as world:
        queues = virtio_queues if args.nic in qemu.VIRTIO_NICS else pingpong.e1000_queues
        if args.json or not out.is_terminal:
            report = pingpong.run(world, count, size, batch, queues=queues)
        else:
            with Progress(
                TextColumn("[bold]pingpong"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("frames echoed"),
                TimeElapsedColumn(),
                console=out,
                transient=True,
            ) as bar:
                task = bar.add_task("pingpong", total=count)
                report = pingpong.run(
                    world, count, size, batch, lambda _sent, back: bar.update(task, completed=back), queues=queues
                )
        rejected = sum(audit.counters.values())
    if args.json:
        extra = {"nic": args.nic, "audit_log": args.audit_log, "rejected": rejected, **durability_json(audit)}
        print(json.dumps({**_report_json(report, scen), **extra}, indent=2))
    else:
        _print_report(out, report, scen, args.nic)
        clock = _CLOCK_WORDS[args.audit_clock]
        if args.nic in qemu.QEMU_NICS:
            model = "e1000" if args.nic == qemu.QEMU else "virtio-net"
            clock = f"{clock}; QEMU's {model} over qtest runs on its own time"
        out.print(durability_line(audit), markup=False, highlight=False, soft_wrap=True)
        line = f"audit log: {args.audit_log} ({rejected} rejections recorded by this run; {clock})"
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    return 0 if report.clean else 1


#: What the demo's last line says of the audit log's clock (``--audit-clock``).
_CLOCK_WORDS = {
    "wall": "wall-clock time",
    "virtual": "virtual time (--audit-clock virtual), so inline runs repeat byte for byte",
}


def _report_json(report: pingpong.PingPongReport, scen: scenario.Scenario) -> dict[str, object]:
    return {
        "demo": "pingpong",
        "scenario": scen.name,
        "seed": scen.seed,
        "engine": scen.engine.value,
        "protection": scen.protection.value,
        "frame_size": report.frame_size,
        "batch": report.batch,
        "seconds": round(report.seconds, 6),
        "mpps": round(report.mpps, 4),
        "directions": [report.forward.as_dict(), report.echo.as_dict()],
        "missed_mpc": report.missed,
        "pcaps": report.pcaps,
        "clean": report.clean,
    }


def _print_report(
    out: Console, report: pingpong.PingPongReport, scen: scenario.Scenario, nic: str = qemu.EMULATED
) -> None:
    table = Table(
        title=(
            f"pingpong: {report.frame_size}-byte frames, batch {report.batch}, "
            f"{'engine ' + scen.engine.value if nic == qemu.EMULATED else 'nic ' + nic}, "
            f"protection {scen.protection.value}, seed {scen.seed}"
        )
    )
    for col in ("direction", "frames", "bytes", "lost", "reordered", "corrupt", "dup", "Mpps"):
        table.add_column(col, justify="left" if col == "direction" else "right", no_wrap=True)
    for d in (report.forward, report.echo):
        table.add_row(
            d.name,
            f"{d.received:,}",
            f"{d.bytes:,}",
            str(d.lost),
            str(d.out_of_order),
            str(d.corrupt),
            str(d.duplicates),
            f"{d.received / report.seconds / 1e6:.3f}" if report.seconds else "-",
        )
    out.print(table)
    verdict = (
        "[green]every frame arrived intact, in order[/]" if report.clean else "[red]frames were lost or damaged[/]"
    )
    out.print(f"{verdict}; {report.seconds:.2f} s, {report.mpps:.3f} Mpps received in total")
    missed = ", ".join(f"{k}={v}" for k, v in report.missed.items())
    out.print(f"missed for lack of RX descriptors (MPC): {missed}")
    for path in report.pcaps:
        out.print(f"pcap: {path}  (try: tcpdump -nn -vv -r {path} | head)")
