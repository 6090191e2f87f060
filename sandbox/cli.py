"""``nic-sandbox``: the command line.

Every bad input ends the same way: one line on stderr that says what is
wrong, and exit code 2.  ``--help`` on every command says what it does and
shows an example.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from device.e1000 import EngineMode
from sandbox.commands import attack as attack_cli
from sandbox.commands import ping as ping_cli
from sandbox.commands import qemu as qemu_cli
from sandbox.demos import pingpong
from sandbox.flags import add_kernel_flags, bounded_number, flags_given, open_audit
from verifier.audit.log import AuditLog
from verifier.modes.protection import Protection
from world import scenario
from world.traffic import MAX_SIZE, MIN_SIZE

PROG = "nic-sandbox"
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _int_range(low: int, high: int, what: str) -> Any:
    return bounded_number(int, what, low, high)


def build_parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog=PROG,
        description=(
            "A kernel-bypass NIC driver sandbox: tenants drive emulated e1000 NICs from user space "
            "through descriptor rings and doorbells, in one simulated machine with no IOMMU."
        ),
        epilog=(
            "examples:\n"
            "  nic-sandbox demo                      send 100000 frames alice -> bob and back\n"
            "  nic-sandbox demo --size 1518 --batch 256\n"
            "  nic-sandbox scenario > my.toml        start a scenario of your own\n"
            "  nic-sandbox demo --scenario my.toml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="run a demo: pingpong (default), attack, ping or afxdp",
        description=(
            "pingpong: tenant 1 sends sequence-numbered Ether/IPv4/UDP frames (built with scapy) through "
            "its TX ring; tenant 2 receives them through its RX ring, checks every byte, and echoes them "
            "back.  Prints frames, bytes, lost, out-of-order and Mpps per direction, and writes a pcap "
            "of the cable.\n\n"
            "attack: a malicious tenant (mallory) tries eight DMA attacks -- send kernel memory out, read "
            "another tenant's buffer, DMA-write into kernel memory, straddle its own pin by one byte, wrap "
            "addr + len, race a descriptor rewrite after the doorbell, unpin a buffer in flight, repoint the "
            "ring base register -- and an independent oracle says which got through.  With --protection "
            "none they leak; with verifier or iommu every one is blocked and audited.\n\n"
            "ping (root): the Linux network stack pings a tenant.  A network namespace gets a TAP device "
            "(198.18.0.1/24, no route out) plugged into an emulated NIC; the tenant answers ARP and ICMP echo "
            "for 198.18.0.2 from user space through its rings, with the verifier on, and the real ping runs "
            "inside the namespace.  Prints ping's lines, the RTTs and a verdict; --serve keeps answering "
            "until Ctrl-C so you can ping, arping or tcpdump by hand.  The namespace and the TAP are removed "
            "on exit, on error and on Ctrl-C.\n\n"
            "afxdp (root): the real kernel's AF_XDP rings.  A namespace gets a veth pair (198.18.1.1/30 <-> "
            ".2/30); an AF_XDP socket (copy mode) on one end sends --count numbered frames (default 10000, "
            "--size default 64, --batch default 64) through its TX ring to a packet socket on the other end, "
            "which sends as many back; a hand-assembled XDP program redirects them into the socket's RX ring.  "
            "Every frame is checked byte for byte; prints frames/s, the kernel's XDP_STATISTICS and the ring "
            "counters.  Everything is removed on exit, on error and on Ctrl-C."
        ),
        epilog=(
            "examples:\n"
            "  nic-sandbox demo --count 20000 --size 128 --batch 64 --pcap /tmp/pp.pcap\n"
            "  nic-sandbox demo --protection verifier --audit-log /tmp/audit.jsonl\n"
            "  nic-sandbox demo --nic qemu                the same pingpong on QEMU's e1000 (qtest)\n"
            "  nic-sandbox demo attack --protection none        watch the kernel canaries leak\n"
            "  nic-sandbox demo attack --protection verifier --json\n"
            "  sudo nic-sandbox demo ping --count 10 --size 1518 --interval 0.05\n"
            "  sudo nic-sandbox demo ping --serve             then: ip netns exec NAME ping 198.18.0.2\n"
            "  sudo nic-sandbox demo afxdp --count 100000 --size 1518 --batch 256"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "name", nargs="?", default="pingpong", choices=["pingpong", "attack", "ping", "afxdp"], help="which demo"
    )
    demo.add_argument(
        "--count",
        type=_int_range(1, 10**9, "--count"),
        help="pingpong: frames to send (default 100000); ping: echo requests (default 5)",
    )
    demo.add_argument(
        "--size",
        type=_int_range(MIN_SIZE, MAX_SIZE, "--size"),
        help=f"frame size on the wire, FCS included, {MIN_SIZE}-{MAX_SIZE} (pingpong default 64; "
        "ping default 102, i.e. ping -s 56: the ICMP payload is SIZE - 46)",
    )
    demo.add_argument(
        "--batch", type=_int_range(1, 4096, "--batch"), help="pingpong: frames per tx_burst/rx_burst (default 32)"
    )
    pcap = demo.add_mutually_exclusive_group()
    pcap.add_argument(
        "--pcap", metavar="PATH", help="pingpong: write the cable's frames here (default: the scenario's)"
    )
    pcap.add_argument("--no-pcap", action="store_true", help="pingpong: write no pcap (fastest)")
    demo.add_argument("--scenario", metavar="FILE", help="scenario TOML (default: the embedded one of the demo)")
    demo.add_argument("--seed", type=_int_range(0, 2**63 - 1, "--seed"), help="override the scenario's seed")
    demo.add_argument(
        "--engine",
        choices=[m.value for m in EngineMode],
        help="inline: the device runs inside the doorbell write (deterministic); threaded: on its own thread",
    )
    qemu_cli.add_nic_flag(demo)
    demo.add_argument(
        "--interval",
        type=bounded_number(float, "--interval", 0.002, 60),
        help="ping: seconds between echo requests, 0.002-60 (default 0.2)",
    )
    demo.add_argument(
        "--serve", action="store_true", help="ping: answer ARP and ping until Ctrl-C, and say how to try it"
    )
    add_kernel_flags(demo)
    demo.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    demo.set_defaults(func=cmd_demo)

    show = sub.add_parser(
        "scenario",
        help="print an embedded scenario (TOML) to copy and edit",
        description="Print an embedded scenario, with comments explaining every key.",
        epilog="example: nic-sandbox scenario attack > my-attack.toml",
    )
    show.add_argument("name", nargs="?", default="pingpong", choices=["pingpong", "attack", "ping"], help="which one")
    show.set_defaults(func=cmd_scenario)

    # `nic-sandbox audit ...` lives in sandbox/commands/audit.py, which imports UsageError from here:
    # import it when the parser is built, not at module load, so there is no import cycle.
    from sandbox.commands.audit import build_audit_parser

    build_audit_parser(sub)
    from sandbox.commands.fuzz import build_fuzz_parser

    build_fuzz_parser(sub)
    from sandbox.commands.verify import build_verify_parser

    build_verify_parser(sub)
    return top


def cmd_scenario(args: argparse.Namespace, out: Console) -> int:
    sys.stdout.write(scenario.default_text(args.name))
    return 0


PINGPONG_ONLY = ("count", "size", "batch", "pcap", "no_pcap")


def cmd_demo(args: argparse.Namespace, out: Console) -> int:
    if problem := qemu_cli.nic_flag_problem(args):
        raise UsageError(problem)
    if args.name == "ping":
        return ping_cli.cmd_ping(args, out)
    if wrong := flags_given(args, ping_cli.PING_ONLY):
        raise UsageError(f"{', '.join(wrong)} only apply to the ping demo")
    if args.name == "afxdp":
        from sandbox.demos import afxdp as afxdp_demo  # cffi/bpf only when asked for

        return afxdp_demo.cmd_afxdp(args, out)
    if args.name == "attack":
        if wrong := flags_given(args, PINGPONG_ONLY):
            raise UsageError(f"{', '.join(wrong)} only apply to the pingpong demo")
        return attack_cli.cmd_attack(args, out)
    scen = _scenario(args, "pingpong")
    if len(scen.tenants) < 2:
        raise UsageError(f"{scen.source}: pingpong needs two tenants")
    count = qemu_cli.default_count(args, 100_000)
    size = args.size or 64
    batch = args.batch or 32
    pcap: str | bool = False if args.no_pcap else (args.pcap or True)
    with _audit(args, scen, out) as audit, qemu_cli.build_world(args, scen, pcap, audit) as world:
        if args.json or not out.is_terminal:
            report = pingpong.run(world, count, size, batch)
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
                report = pingpong.run(world, count, size, batch, lambda _sent, back: bar.update(task, completed=back))
        rejected = sum(audit.counters.values())
    if args.json:
        extra = {"nic": args.nic, "audit_log": args.audit_log, "rejected": rejected}
        print(json.dumps({**_report_json(report, scen), **extra}, indent=2))
    else:
        _print_report(out, report, scen, args.nic)
        clock = "virtual time, so runs repeat byte for byte" if scen.engine is EngineMode.INLINE else "wall-clock time"
        clock = "wall-clock time, QEMU's e1000 over qtest" if args.nic == qemu_cli.QEMU else clock
        out.print(f"audit log: {args.audit_log} ({rejected} rejections recorded by this run; {clock})")
    return 0 if report.clean else 1


def _scenario(args: argparse.Namespace, embedded: str) -> scenario.Scenario:
    """The scenario with the command line's overrides applied."""
    scen = scenario.load(args.scenario, embedded=embedded)
    if args.seed is not None:
        scen = dataclasses.replace(scen, seed=args.seed)
    if args.engine is not None:
        scen = dataclasses.replace(scen, engine=EngineMode(args.engine))
    if args.protection is not None:
        scen = dataclasses.replace(scen, protection=Protection(args.protection))
    return scen


def _audit(args: argparse.Namespace, scen: scenario.Scenario, out: Console) -> AuditLog:
    try:
        return open_audit(args.audit_log, scen.protection, args.fsync, scen.engine)
    except ValueError as err:
        raise UsageError(str(err)) from None


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
    out: Console, report: pingpong.PingPongReport, scen: scenario.Scenario, nic: str = "emulated"
) -> None:
    table = Table(
        title=(
            f"pingpong: {report.frame_size}-byte frames, batch {report.batch}, "
            f"{'nic qemu' if nic == qemu_cli.QEMU else 'engine ' + scen.engine.value}, "
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


def main(argv: Sequence[str] | None = None) -> int:
    out = Console()
    if not out.is_terminal:  # pipes and CI logs: wide enough that tables never wrap
        out = Console(width=120)
    err = Console(stderr=True)
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args, out))
    except (UsageError, scenario.ScenarioError) as e:
        err.print(f"{PROG}: error: {e}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print(f"{PROG}: interrupted", markup=False, highlight=False)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
