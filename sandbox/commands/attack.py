"""``nic-sandbox demo attack``: its flags, and printing it: a table (or JSON), the audit pointers, the leaked bytes."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from scapy.utils import hexdump

from sandbox.demos import attack as attack_demo
from sandbox.demos import attack_virtio as graph_demo
from sandbox.errors import UsageError
from sandbox.flags import (
    add_demo_kind,
    add_json_flag,
    add_kernel_flags,
    add_scenario_flags,
    audit_from_flags,
    durability_json,
    durability_line,
    scenario_from_flags,
)
from verifier.modes.protection import Protection
from world import scenario

P = TypeVar("P", bound=argparse.ArgumentParser)
NAME = "attack"
DESCRIPTION = (
    "attack: a malicious tenant (mallory) tries eight DMA attacks -- send kernel memory out, read another tenant's "
    "buffer, DMA-write into kernel memory, straddle its own pin by one byte, wrap addr + len, race a descriptor "
    "rewrite after the doorbell, unpin a buffer in flight, repoint the ring base register -- and an independent "
    "oracle says which got through.  With --protection none they leak; with verifier or iommu every one is "
    "blocked and audited.  Exit code, as the fuzzer's: 0 when every attack was stopped and the honest traffic "
    "beside them arrived intact, 1 when anything got through (so --protection none exits 1, by design)."
)
EXAMPLES = (
    "  nic-sandbox demo attack --protection none        watch the kernel canaries leak\n"
    "  nic-sandbox demo attack --protection verifier --json\n"
    "  nic-sandbox demo attack --nic virtio             virtqueue graph attacks, modes none and verifier side by side"
)
NICS = ("emulated", "virtio")  # as the pingpong demo names them (qemu: not for the attacks)


def add_parser(kinds: argparse._SubParsersAction[P]) -> None:
    """Add ``attack`` to the ``demo`` kinds."""
    demo = add_demo_kind(
        kinds,
        NAME,
        "mallory tries eight DMA attacks; an independent oracle says which got through",
        DESCRIPTION,
        EXAMPLES,
    )
    add_scenario_flags(demo)
    add_kernel_flags(demo)
    add_json_flag(demo)
    demo.add_argument(
        "--nic",
        choices=NICS,
        default="emulated",
        help="emulated: the eight DMA attacks on emulated e1000 NICs (default); virtio: mallory's virtqueue graph "
        "attacks (loops, indirect tables, chains of queue size + 1, avail jumps, a repointed used ring, a next "
        "rewritten after the notify) on virtio-net NICs, each in modes none and verifier (or only --protection's)",
    )
    demo.set_defaults(func=cmd_attack)


def cmd_attack(args: argparse.Namespace, out: Console) -> int:
    if args.nic == "virtio":
        return _cmd_virtio(args, out)
    scen = scenario_from_flags(args, NAME)
    names = {t.name for t in scen.tenants}
    missing = {"alice", "bob", "mallory", "eve"} - names
    if missing:
        raise UsageError(f"{scen.source}: the attack demo needs tenants {', '.join(sorted(missing))}")
    with audit_from_flags(args, scen) as audit:
        report = attack_demo.run(scen, audit)
    if args.json:
        doc = {
            "protection": report.protection.value,
            "audit_log": args.audit_log,
            **durability_json(audit),
            "attacks": [r.as_dict() for r in report.results],
            "honest_traffic": {"clean": report.honest.clean, "frames": report.honest.forward.received},
        }
        print(json.dumps(doc, indent=2))
    else:
        _print(out, report, args.audit_log, scen)
        out.print(f"audit log {args.audit_log}: {audit.disk.line()}", markup=False, highlight=False, soft_wrap=True)
        out.print(durability_line(audit), markup=False, highlight=False, soft_wrap=True)
    return 0 if report.stopped_everything else 1


def _print(out: Console, report: attack_demo.AttackReport, log: str, scen: scenario.Scenario) -> None:
    table = Table(title=f"attack demo: mallory against protection {report.protection.value} (seed {scen.seed})")
    table.add_column("attack", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("how")
    table.add_column("audit seq", justify="right")
    for r in report.results:
        result = "[red bold]SUCCEEDED[/]" if r.succeeded else "[green]blocked[/]"
        seq = "-" if r.audit_seq is None else str(r.audit_seq)
        table.add_row(f"{r.name}\n[dim]{r.title}[/]", result, r.reason, seq)
    out.print(table)
    won = sum(r.succeeded for r in report.results)
    out.print(f"{won} of {len(report.results)} attacks got through; audit log: {log}")
    honest = report.honest
    state = "[green]clean[/]" if honest.clean else "[red]damaged[/]"
    out.print(f"honest traffic alongside (alice ⇄ bob, {honest.forward.received} frames each way): {state}")
    leak = next((r for r in report.results if r.succeeded and r.evidence), None)
    if leak is not None:
        out.print(f"\nbytes that left on the wire in {leak.name} (scapy hexdump, first 128 bytes):")
        out.print(hexdump(leak.evidence[:128], dump=True), markup=False, highlight=False)
    if report.protection is Protection.UNSAFE_INPLACE:
        out.print("unsafe-inplace checks the user ring in place: the race above is why verifier takes a snapshot.")


def _cmd_virtio(args: argparse.Namespace, out: Console) -> int:
    """The graph attacks on the fuzzer's virtio machine: a table, one column per mode; exit 1 if any got through
    under a mode that protects (verifier), or under the one mode asked for."""
    if args.scenario is not None:
        raise UsageError("--scenario: the virtio graph attacks run on the fuzzer's virtio machine (the embedded "
                         "attack scenario); give --seed or --protection instead")  # fmt: skip
    if args.engine is not None:
        raise UsageError("--engine applies to emulated e1000 NICs (the virtio device runs inline)")
    modes: tuple[Protection, ...] = graph_demo.MODES
    if args.protection is not None:
        if Protection(args.protection) not in modes:
            raise UsageError(f"--nic virtio supports --protection {' and '.join(m.value for m in modes)}, "
                             f"not {args.protection}")  # fmt: skip
        modes = (Protection(args.protection),)
    scen = scenario_from_flags(args, NAME)
    scen = dataclasses.replace(scen, protection=modes[-1])
    with audit_from_flags(args, scen) as audit:
        results = graph_demo.run(scen.seed, audit, modes)
    judged = [r for r in results if len(modes) == 1 or r.protection is not Protection.NONE]
    if args.json:
        doc = {"nic": "virtio", "seed": scen.seed, "modes": [m.value for m in modes], "audit_log": args.audit_log,
               "attacks": [r.as_dict() for r in results]}  # fmt: skip
        print(json.dumps(doc, indent=2))
    else:
        table = Table(title=f"virtio graph attacks: mallory's virtqueues on virtio-net (seed {scen.seed})")
        table.add_column("attack", max_width=36)
        for mode in modes:
            table.add_column(f"protection {mode.value}")
        by = {(r.name, r.protection): r for r in results}
        for name, title, _ in graph_demo.ATTACKS:
            cells = []
            for mode in modes:
                r = by[(name, mode)]
                mark = "[red bold]ESCAPED[/]" if r.escaped else "[green]safe[/]"
                cells.append(f"{mark} {escape(r.how)}")
            table.add_row(f"{name}\n[dim]{title}[/]", *cells)
        out.print(table)
        won = sum(r.escaped for r in judged)
        out.print(f"{won} of {len(judged)} attack runs got through"
                  + (" under verifier (none is shown for contrast)" if len(modes) > 1 else ""))  # fmt: skip
        out.print(f"audit log {args.audit_log}: {audit.disk.line()}", markup=False, highlight=False, soft_wrap=True)
    return 1 if any(r.escaped for r in judged) else 0
