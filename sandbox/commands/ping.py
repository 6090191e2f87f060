"""``nic-sandbox demo ping``: its flags, and printing it.

Checks first (root, /dev/net/tun, ip, ping), then ping's own lines, the RTTs
and a verdict (or JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
from typing import TypeVar

from rich.console import Console
from rich.table import Table

from driver.netns import NetnsError, link_exists, namespace_exists
from driver.tap.device import TUN_PATH, TapError
from sandbox.argtypes import bounded_number, int_range
from sandbox.demos import ping as ping_demo
from sandbox.demos.ping import PingError, PingReport, Reply, Session
from sandbox.errors import UsageError, print_error
from sandbox.flags import (
    add_demo_kind,
    add_json_flag,
    add_kernel_flags,
    add_scenario_flags,
    audit_from_flags,
    durability_json,
    durability_line,
    flags_given,
    scenario_from_flags,
)
from world import scenario
from world.build import World
from world.traffic import MAX_SIZE, MIN_SIZE

P = TypeVar("P", bound=argparse.ArgumentParser)
NAME = "ping"
#: Flags that make no sense with --serve (nothing is sent by the demo itself).
NOT_FOR_SERVE = ("count", "size", "interval", "json")
DEFAULT_COUNT = 5
DEFAULT_INTERVAL_S = 0.2
#: Exit code of a demo that ran but did not get every echo back (usage errors are 2).
EXIT_FAILED = 1
DESCRIPTION = (
    "ping (root): the Linux network stack pings a tenant.  A network namespace gets a TAP device "
    "(198.18.0.1/24, no route out) plugged into an emulated NIC; the tenant answers ARP and ICMP echo "
    "for 198.18.0.2 from user space through its rings, with the verifier on, and the real ping runs "
    "inside the namespace.  Prints ping's lines, the RTTs and a verdict; --serve keeps answering "
    "until Ctrl-C so you can ping, arping or tcpdump by hand.  The namespace and the TAP are removed "
    "on exit, on error and on Ctrl-C."
)
EXAMPLES = (
    "  sudo nic-sandbox demo ping --count 10 --size 1518 --interval 0.05\n"
    "  sudo nic-sandbox demo ping --serve             then: ip netns exec NAME ping 198.18.0.2"
)


def add_parser(kinds: argparse._SubParsersAction[P]) -> None:
    """Add ``ping`` to the ``demo`` kinds."""
    demo = add_demo_kind(
        kinds, NAME, "(root) the Linux network stack pings a tenant through a TAP device", DESCRIPTION, EXAMPLES
    )
    demo.add_argument("--count", type=int_range(1, 10**9, "--count"), help=f"echo requests (default {DEFAULT_COUNT})")
    demo.add_argument(
        "--size",
        type=int_range(MIN_SIZE, MAX_SIZE, "--size"),
        help=f"frame size on the wire, FCS included, {MIN_SIZE}-{MAX_SIZE} "
        f"(default {ping_demo.DEFAULT_FRAME_SIZE}, i.e. ping -s 56: the ICMP payload is SIZE - 46)",
    )
    demo.add_argument(
        "--interval",
        type=bounded_number(float, "--interval", 0.002, 60),
        help=f"seconds between echo requests, 0.002-60 (default {DEFAULT_INTERVAL_S:g})",
    )
    demo.add_argument("--serve", action="store_true", help="answer ARP and ping until Ctrl-C, and say how to try it")
    add_scenario_flags(demo)
    add_kernel_flags(demo)
    add_json_flag(demo)
    demo.set_defaults(func=cmd_ping)


def cmd_ping(args: argparse.Namespace, out: Console) -> int:
    if args.serve and (wrong := flags_given(args, NOT_FOR_SERVE)):
        raise UsageError(f"{', '.join(wrong)} do not apply to --serve (it answers until Ctrl-C)")
    scen = scenario_from_flags(args, NAME)
    if not scen.tenants:
        raise UsageError(f"{scen.source}: the ping demo needs a tenant")
    tenant = scen.tenants[0]
    if any(tenant.nic in (c.a, c.b) for c in scen.cables):
        raise UsageError(f"{scen.source}: NIC {tenant.nic!r} is on a cable; the ping demo plugs it into a TAP")
    try:
        ping_demo.check_tenant(tenant)
    except ValueError as err:
        raise UsageError(f"{scen.source}: {err}") from None
    _check_host(need_ping=not args.serve)
    try:
        with audit_from_flags(args, scen) as audit, World.build(scen, pcap=False, audit=audit) as world:
            if args.serve:
                code = _serve(world, tenant, out, args.audit_log)
                out.print(durability_line(audit), markup=False, highlight=False, soft_wrap=True)
                return code
            frame_size = args.size or ping_demo.DEFAULT_FRAME_SIZE
            count = args.count or DEFAULT_COUNT
            interval = args.interval if args.interval is not None else DEFAULT_INTERVAL_S
            with ping_demo.tap_session(world, tenant) as session:
                names = (session.netns.name, session.tap.name)
                if not args.json:
                    _print_header(out, session, scen)
                echo = None if args.json else _echo_line(out)
                report = ping_demo.run_ping(session, count, ping_demo.payload_for(frame_size), interval, echo)
            rejected = sum(audit.counters.values())
            durability = durability_json(audit), durability_line(audit)
    except (NetnsError, TapError, PingError) as failure:
        print_error(str(failure))
        return EXIT_FAILED
    removed = _removed(*names)
    if args.json:
        doc = _as_json(report, scen, session, frame_size, args.audit_log, rejected, removed)
        print(json.dumps({**doc, **durability[0]}, indent=2))
    else:
        _print_report(out, report, session, args.audit_log, rejected, removed)
        out.print(durability[1], markup=False, highlight=False, soft_wrap=True)
    return 0 if report.ok and removed else EXIT_FAILED


def _check_host(need_ping: bool) -> None:
    """Root, /dev/net/tun, ip and ping: say which is missing in one line before anything is created."""
    if os.geteuid() != 0:
        raise UsageError("the ping demo creates a network namespace and a TAP device: run it as root (CAP_NET_ADMIN)")
    if not os.path.exists(TUN_PATH):
        raise UsageError(f"{TUN_PATH} is missing: the kernel has no TUN/TAP driver (modprobe tun)")
    tools = {"ip": "iproute2", **({"ping": "iputils-ping"} if need_ping else {})}
    for tool, package in tools.items():
        if shutil.which(tool) is None:
            raise UsageError(f"{tool} is not installed (apt-get install {package})")


def _removed(netns: str, tap: str) -> bool:
    """The namespace and the TAP interface are gone (the TAP would be in the root namespace if anywhere)."""
    return not namespace_exists(netns) and not link_exists(tap)


def _print_header(out: Console, session: Session, scen: scenario.Scenario) -> None:
    out.print(
        f"ping demo: Linux {ping_demo.LINUX_SIDE} on TAP {session.tap.name} in namespace {session.netns.name}"
        f"  ⇄  emulated {session.nic}"
        f"  ⇄  tenant {session.tenant_ip} ({session.tenant_mac.hex(':')}), protection {scen.protection.value}, "
        f"engine {scen.engine.value}",
        highlight=False,
        soft_wrap=True,
    )
    sys.stdout.flush()


def _echo_line(out: Console) -> ping_demo.LineSink:
    def show(line: str, _reply: Reply | None) -> None:
        if line.strip():
            out.print(f"  [dim]ping:[/] {line}", highlight=False, soft_wrap=True)
            sys.stdout.flush()

    return show


def _print_report(out: Console, report: PingReport, session: Session, log: str, rejected: int, removed: bool) -> None:
    table = Table(
        title=f"ping {session.tenant_ip}: {report.count} echoes of {report.payload} bytes "
        f"({report.payload + ping_demo.PING_OVERHEAD}-byte frames with FCS), every {report.interval:g} s"
    )
    for col in ("sent", "answered", "lost", "dup", "corrupt", "rtt min", "avg", "max", "mdev (ms)"):
        table.add_column(col, justify="right", no_wrap=True)
    rtts = report.rtts_ms
    figures = [min(rtts), statistics.fmean(rtts), max(rtts), statistics.pstdev(rtts)] if rtts else []
    table.add_row(
        str(report.transmitted),
        str(report.received),
        str(report.transmitted - report.received),
        str(report.duplicates),
        str(report.corrupt + report.short),
        *([f"{v:.3f}" for v in figures] or ["-"] * 4),
    )
    out.print(table)
    out.print(
        f"RTTs (ms, by icmp_seq): {', '.join(f'{r.seq}: {r.rtt_ms:.3f}' for r in report.replies if r.rtt_ms)}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"ARP: Linux's neighbour entry: {report.neighbour or '(none)'}", highlight=False, soft_wrap=True)
    out.print(
        f"tenant: answered {report.arp_answered} ARP and {report.echo_answered} echo requests through its rings, "
        f"ignored {report.ignored} other frames; audit log: {log} ({rejected} rejections recorded by this run)",
        highlight=False,
        soft_wrap=True,
    )
    where = f"namespace {session.netns.name} and TAP {session.tap.name}"
    out.print(f"{where} removed" if removed else f"[red]{where} still exist[/]", highlight=False, soft_wrap=True)
    verdict = (
        "[green]every echo was answered, byte for byte[/]"
        if report.ok
        else "[red]some echoes were lost, duplicated or damaged[/]"
    )
    out.print(f"{verdict}; {report.seconds:.2f} s")


def _as_json(
    report: PingReport,
    scen: scenario.Scenario,
    session: Session,
    frame_size: int,
    log: str,
    rejected: int,
    removed: bool,
) -> dict[str, object]:
    rtts = report.rtts_ms
    return {
        "demo": "ping",
        "namespace": session.netns.name,
        "interface": session.tap.name,
        "linux_address": str(ping_demo.LINUX_SIDE),
        "tenant_ip": session.tenant_ip,
        "tenant_mac": session.tenant_mac.hex(":"),
        "protection": scen.protection.value,
        "engine": scen.engine.value,
        "count": report.count,
        "frame_size": frame_size,
        "payload": report.payload,
        "interval_s": report.interval,
        "transmitted": report.transmitted,
        "received": report.received,
        "duplicates": report.duplicates,
        "corrupt": report.corrupt,
        "short": report.short,
        "reply_bytes": [r.nbytes for r in report.replies],
        "rtt_ms": rtts,
        "rtt_min_ms": min(rtts) if rtts else None,
        "rtt_avg_ms": round(statistics.fmean(rtts), 3) if rtts else None,
        "rtt_max_ms": max(rtts) if rtts else None,
        "neighbour": report.neighbour,
        "arp_answered": report.arp_answered,
        "echo_answered": report.echo_answered,
        "ignored": report.ignored,
        "audit_log": log,
        "rejected": rejected,
        "removed": removed,
        "seconds": round(report.seconds, 3),
        "ok": report.ok,
    }


def _serve(world: World, tenant: scenario.TenantSpec, out: Console, log: str) -> int:
    answered: dict[str, int] = {}
    with ping_demo.tap_session(world, tenant) as session:
        names = (session.netns.name, session.tap.name)
        ns, tap, ip = session.netns.name, session.tap.name, session.tenant_ip
        out.print(
            f"serving: tenant {ip} ({session.tenant_mac.hex(':')}) answers ARP and ping on TAP {tap} "
            f"in namespace {ns} (Linux side {ping_demo.LINUX_SIDE}); Ctrl-C stops and removes both.\n"
            "try, in another shell as root:\n"
            f"  ip netns exec {ns} ping {ip}\n"
            f"  ip netns exec {ns} arping -c 3 -I {tap} {ip}\n"
            f"  ip netns exec {ns} tcpdump -nn -e -i {tap}\n"
            f"  ip netns exec {ns} ip neigh show {ip}",
            highlight=False,
            soft_wrap=True,
        )
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how --serve ends
            ping_demo.serve(session)
        answered = dict(session.responder.answered)
    removed = _removed(*names)
    out.print(
        f"stopped: answered {answered.get('arp', 0)} ARP and {answered.get('echo', 0)} echo requests; "
        f"namespace {names[0]} and TAP {names[1]} "
        + ("removed" if removed else "[red]still exist[/]")
        + f"; audit log: {log}",
        highlight=False,
        soft_wrap=True,
    )
    return 0 if removed else EXIT_FAILED
