"""``python -m lab demo`` runs this inside the lab VM: the VFIO back end, end to end.

1. Traffic: numbered UDP frames go out of the real e1000e and come back
   through its PHY loopback, with the project's verifier in front of the
   doorbell; every frame is checked byte for byte.
2. The attack set twice: with the verifier (each attack refused and
   audited before the doorbell) and without it (the real IOMMU faults; the
   guest kernel's DMAR lines are matched to the attacks by address).

Exit code 0 when every frame arrived intact and every attack was stopped
by the layer that should stop it; 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table

from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from lab.guest.attacks import LAB_ATTACKS, LabAttackResult, run_lab_attack
from lab.guest.world import MAC, NIC, LabWorld
from lab.qemu import E1000E_BDF
from sandbox.argtypes import int_range
from verifier.audit.memory import MemoryAudit
from verifier.modes.protection import Protection
from world.traffic import UdpFlow, sequence_numbers

SRC_IP, DST_IP = "198.18.7.1", "198.18.7.2"  # the benchmarking range; the frames never leave the device


@dataclass
class TrafficReport:
    sent: int
    received: int
    intact: int
    in_order: bool
    seconds: float
    mapped_pages: int
    rejections: int


def loopback_traffic(count: int, size: int, batch: int, protection: Protection) -> TrafficReport:
    """Send ``count`` frames through the real device and back; check each one."""
    flow = UdpFlow(MAC, MAC, SRC_IP, DST_IP, size)
    audit = MemoryAudit()
    with LabWorld.build(E1000E_BDF, protection, audit) as world:
        owner = world.spawn_owner("alice")
        txq, rxq = TxQueue(owner, NIC, size=256), RxQueue(owner, NIC, size=256)
        seqs: list[np.ndarray] = []
        intact = sent = 0
        start = time.perf_counter()
        while sent < count:
            sent += txq.tx_burst(flow.frames(sent, min(batch, count - sent)))
            world.nic.poll()
            got = rxq.rx_burst()
            if len(got):
                rows = got.data.reshape(len(got), -1)  # equal lengths: one row per frame
                numbers = sequence_numbers(rows)
                intact += int(np.count_nonzero((rows == flow.expected(numbers)).all(axis=1)))
                seqs.append(numbers)
        seconds = time.perf_counter() - start
        order = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.uint64)
        return TrafficReport(sent, int(order.size), intact, bool((order == np.arange(order.size)).all()), seconds,
                             len(world.iommu.refs), int(audit.seq))  # fmt: skip


def fault_text(result: LabAttackResult) -> str:
    if not result.faults:
        return "no fault" if result.blocked_by else "[red]no fault: it got through[/red]"
    first = result.matched[0] if result.matched else result.faults[0]
    more = f" (+{len(result.faults) - 1})" if len(result.faults) > 1 else ""
    return f"DMAR {first.kind} fault at {first.addr:#x}, reason {first.reason:#04x}{more}"


def verifier_text(result: LabAttackResult) -> str:
    if result.blocked_by != "verifier":
        return f"[red]not stopped[/red] {result.audit_reasons}"
    if result.moved:
        seen = f"; [red]the device moved {'/'.join(result.moved)}[/red]"
    elif result.expected.hostile:
        seen = f"; {'/'.join(result.expected.hostile)} unmoved: the device never saw it"
    else:
        seen = f"; {'; '.join(result.notes)}"
    return f"refused, audited: {result.audit_reasons[0]}{seen}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.guest.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--count", type=int_range(1, 10_000_000, "--count"), default=2000,
                        help="frames to send through the loopback (default 2000)")  # fmt: skip
    parser.add_argument("--size", type=int_range(64, 1518, "--size"), default=128,
                        help="bytes per frame on the wire, FCS included, 64-1518 (default 128)")  # fmt: skip
    parser.add_argument("--batch", type=int_range(1, 256, "--batch"), default=32,
                        help="frames per tx_burst, 1-256 (default 32)")  # fmt: skip
    args = parser.parse_args(argv)
    out = Console()
    out.print(f"[bold]lab demo[/bold]: the project's kernel in front of a real 82574L ({E1000E_BDF}) under vfio-pci, "
              "behind QEMU's VT-d IOMMU", highlight=False)  # fmt: skip

    traffic = loopback_traffic(args.count, args.size, args.batch, Protection.VERIFIER)
    rate = traffic.received / traffic.seconds if traffic.seconds else 0.0
    good = traffic.received == traffic.sent == traffic.intact == args.count and traffic.in_order
    out.print(f"\n1. traffic, verifier in front: {traffic.sent} UDP frames of {args.size} bytes, batch {args.batch}: "
              f"{traffic.received} came back through PHY loopback, {traffic.intact} intact, "
              f"{'in order' if traffic.in_order else '[red]out of order[/red]'}; {rate:,.0f} frames/s under TCG; "
              f"{traffic.mapped_pages} pages mapped in the IOMMU (pool, rings), {traffic.rejections} rejections",
              highlight=False)  # fmt: skip

    out.print("\n2. the attack set: with the verifier (checks before the doorbell) and without it (the IOMMU alone)",
              highlight=False)  # fmt: skip
    table = Table(show_lines=False)
    table.add_column("attack")
    table.add_column("verifier on")
    table.add_column("verifier off: the real IOMMU")
    results: list[tuple[LabAttackResult, LabAttackResult]] = []
    for name, title, _ in LAB_ATTACKS:
        checked = run_lab_attack(E1000E_BDF, name, Protection.VERIFIER)
        bare = run_lab_attack(E1000E_BDF, name, Protection.NONE)
        results.append((checked, bare))
        table.add_row(f"{name}\n[dim]{title}[/dim]", verifier_text(checked), fault_text(bare))
    out.print(table)
    out.print("\n3. the guest kernel's DMAR lines, matched to the attack that caused each one:", highlight=False)
    for _checked, bare in results:
        for fault in bare.faults:
            mark = "matched" if bare.expected.allows(fault) else "[red]unexpected[/red]"
            out.print(f"   {bare.name:18} {mark}: {fault.describe()}", highlight=False)

    stopped = sum(c.blocked_by == "verifier" for c, _ in results)
    faulted = sum(b.blocked_by == "iommu" for _, b in results)
    out.print(f"\n{stopped}/{len(results)} refused and audited by the verifier before the doorbell; "
              f"{faulted}/{len(results)} stopped by the IOMMU at DMA time; traffic {'intact' if good else 'DAMAGED'}",
              highlight=False)  # fmt: skip
    return 0 if good and stopped == faulted == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
