"""QEMU's e1000 as the device: qtest round trips, and the pingpong demo's frames per second over it.

``python -m bench.qemu_pingpong`` prints two tables.  The first shows why
the qtest client posts writes and pipelines reads: one command per round
trip against many per write.  The second runs the pingpong demo (verifier
on) over one QEMU with two e1000s at several batch sizes: every doorbell is
a qtest write and every completion an ICR poll plus head reads, so batching
pays here even more than on the emulated NIC.
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from driver.qemu.args import QEMU_BINARY
from ring import regs
from sandbox.demos import pingpong
from world import scenario
from world.qemu import qemu_world


@dataclass(frozen=True)
class QtestCost:
    round_trip_us: float
    pipelined_us: float


@dataclass(frozen=True)
class PingpongRate:
    batch: int
    size: int
    frames: int  # received, both directions
    seconds: float
    clean: bool

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def qtest_cost(reads: int = 2000) -> QtestCost:
    """Microseconds per STATUS read: one at a time, then all in one pipelined batch."""
    with qemu_world(scenario.load(), pcap=False) as world:
        nic = world.nics["nic0"]
        qtest = world.backend.machine.connection
        start = time.perf_counter()
        for _ in range(reads):
            nic.read32(regs.STATUS)
        single = time.perf_counter() - start
        start = time.perf_counter()
        qtest.readl_many([nic.bar0 + regs.STATUS] * reads)
        piped = time.perf_counter() - start
    return QtestCost(single / reads * 1e6, piped / reads * 1e6)


def pingpong_rate(batch: int, count: int, size: int = 64) -> PingpongRate:
    with qemu_world(scenario.load(), pcap=False) as world:
        report = pingpong.run(world, count, size, batch)
    return PingpongRate(batch, size, report.forward.received + report.echo.received, report.seconds, report.clean)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.qemu_pingpong", description=__doc__)
    parser.add_argument("--count", type=int, default=20_000, help="frames per run at batch >= 32 (default 20000)")
    args = parser.parse_args()
    out = Console(width=120)
    if shutil.which(QEMU_BINARY) is None:
        out.print(f"{QEMU_BINARY} is not installed (Debian package qemu-system-x86): nothing to measure")
        return
    cost = qtest_cost()
    table = Table(title="qtest: one 32-bit MMIO read")
    for col in ("mode", "us per read", "reads/s"):
        table.add_column(col, justify="right")
    table.add_row("round trip each", f"{cost.round_trip_us:.1f}", f"{1e6 / cost.round_trip_us:,.0f}")
    table.add_row("pipelined", f"{cost.pipelined_us:.1f}", f"{1e6 / cost.pipelined_us:,.0f}")
    out.print(table)
    table = Table(title="pingpong over QEMU's e1000 (verifier on): frames received per second, both directions")
    for col in ("batch", "frame bytes", "frames", "seconds", "frames/s", "clean"):
        table.add_column(col, justify="right")
    for batch, size, count in ((1, 64, max(1, args.count // 20)), (32, 64, args.count), (256, 64, args.count),
                               (32, 1518, args.count)):  # fmt: skip
        r = pingpong_rate(batch, count, size)
        table.add_row(str(batch), str(size), f"{r.frames:,}", f"{r.seconds:.2f}", f"{r.fps:,.0f}", str(r.clean))
    out.print(table)


if __name__ == "__main__":
    main()
