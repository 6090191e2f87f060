"""QEMU's e1000 back end against the bare qtest traffic a batch needs, at the same batch size.

Two QEMU e1000s on one cable, 64-byte frames nic0 -> nic1, ``batch`` frames a round:

(a) raw: the least qtest traffic a round of ``batch`` frames needs, written
    straight on the qtest socket with no project logic in the loop.  Guest RAM
    is shared with QEMU (a memfd, driver/qemu/args.py), so descriptors and
    frames never cross qtest; what must is the TX doorbell (``writel TDT``,
    inside which QEMU transmits the whole batch), one read that learns the
    batch arrived (``readl ICR`` of the receiver, as an interrupt handler
    reads it) and the RX doorbell that gives the buffers back (``writel
    RDT``, posted, its answer read with the next round's): three commands.
    The loop waits for the last frame's DD bit in shared RAM, sleeping
    between looks, so qtest never competes with QEMU's one thread while it
    moves frames: the fastest a client of this QEMU can go.  The rings are
    set up once by the project (protection none) and the interrupt poller is
    stopped, so nothing else talks on the socket.
(b) stack: the project's whole path as users run it (the scenario's
    protection, verifier by default): ``tx_burst`` and ``rx_burst`` of the
    tenant driver, the kernel's doorbell traps and reaping, and the QEMU back
    end (posted qtest writes, the ICR poller of driver/qemu/irq.py).

The ratio stack / raw is the goal of issue 12 (>= 80%): how much of what
QEMU and qtest allow the project's back end delivers.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import time
from dataclasses import dataclass

import numpy as np

from bench.goals import GoalRow, Sense
from driver.qemu.args import QEMU_BINARY
from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from ring import regs
from ring.descriptors import RXD_STAT_DD, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS
from verifier.modes.protection import Protection
from world import scenario
from world.qemu import qemu_world
from world.traffic import UdpFlow

BATCH = 256
FRAME = 64
GOAL = 0.8
#: How long the raw loop sleeps between looks at the RX ring in RAM (the back end's drain sleeps as long).
POLL_S = 50e-6


@dataclass(frozen=True)
class Rate:
    batch: int
    frames: int
    seconds: float
    qtest_commands: int  # commands sent on the qtest socket while measuring

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def commands_per_batch(self) -> float:
        return self.qtest_commands * self.batch / self.frames if self.frames else 0.0


class _RawQtest:
    """Bare qtest lines on a socket: send text, count answers (no parsing beyond ``OK``)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = b""
        self.sent = 0

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode("ascii"))
        self.sent += text.count("\n")

    def answers(self, n: int) -> list[bytes]:
        """The next ``n`` answer lines."""
        while self.pending.count(b"\n") < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("QEMU closed the qtest socket")
            self.pending += chunk
        lines = self.pending.split(b"\n")
        self.pending = b"\n".join(lines[n:])
        for line in lines[:n]:
            if not line.startswith(b"OK"):
                raise RuntimeError(f"qtest answered {line!r}")
        return lines[:n]


def raw_rate(batch: int = BATCH, seconds: float = 1.0) -> Rate:
    """(a): TDT write, ICR reads until the last frame's DD shows in RAM, RDT write; per round of ``batch``."""
    scen = dataclasses.replace(scenario.load(), protection=Protection.NONE)
    with qemu_world(scen, pcap=False) as world:
        a, b = scen.tenants[:2]
        tx = TxQueue(world.tenants[a.name], a.nic, size=a.ring)
        rx = RxQueue(world.tenants[b.name], b.nic, size=b.ring)
        assert world.backend.poller is not None
        world.backend.poller.stop()  # its ICR reads would interleave with ours
        qtest = world.backend.machine.connection
        qtest.flush()
        mac = {n.name: n.mac for n in scen.nics}
        rows = UdpFlow(mac[a.nic], mac[b.nic], a.ip, b.ip, FRAME).frames(0, tx.size).as_matrix()
        # every TX slot holds one frame in its own buffer, ready to send again and again
        buf, length = tx.pool.buf_size, rows.shape[1]  # 60 bytes: the 64-byte frame less its FCS
        for i in range(tx.size):
            tx.pool.memory[i * buf : i * buf + length] = rows[i]
        tx.ring["addr"] = tx.pool.bus_addr[: tx.size]
        tx.ring["length"] = length
        tx.ring["cmd"] = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS
        tx.ring["status"] = 0
        nic0, nic1 = world.backend.nics[a.nic], world.backend.nics[b.nic]
        tdt, rdt, icr = nic0.bar0 + regs.TDT, nic1.bar0 + regs.RDT, nic1.bar0 + regs.ICR
        wire = _RawQtest(qtest.socket)
        tail, rx_next, rx_tail, size = tx.tail, rx.next, rx.tail, rx.size
        status = rx.ring["status"]

        owed = 0  # the RDT write of the round before: posted, its OK read with this round's answers

        def one_round() -> None:
            nonlocal tail, rx_next, rx_tail, owed
            tail = (tail + batch) % tx.size
            last = (rx_next + batch - 1) % size
            wire.send(f"writel {tdt:#x} {tail:#x}\n")  # posted: QEMU transmits the batch inside it
            while not status[last] & RXD_STAT_DD:  # the last frame's write-back, seen in shared RAM
                time.sleep(POLL_S)
            wire.send(f"readl {icr:#x}\n")  # the completion read an interrupt handler must make
            wire.answers(owed + 2)
            status[(rx_next + np.arange(batch)) % size] = 0
            rx_next = (rx_next + batch) % size
            rx_tail = (rx_tail + batch) % size
            wire.send(f"writel {rdt:#x} {rx_tail:#x}\n")
            owed = 1

        for _ in range(4):
            one_round()
        frames, sent0 = 0, wire.sent
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            one_round()
            frames += batch
        elapsed = time.perf_counter() - start
        wire.answers(owed)  # in step again for the client's own use (closing the world)
        return Rate(batch, frames, elapsed, wire.sent - sent0)


def stack_rate(batch: int = BATCH, seconds: float = 1.0, protection: Protection | None = None) -> Rate:
    """(b): ``tx_burst`` of ``batch`` frames, ``rx_burst`` until all arrived, through kernel and back end."""
    scen = scenario.load()
    if protection is not None:
        scen = dataclasses.replace(scen, protection=protection)
    with qemu_world(scen, pcap=False) as world:
        a, b = scen.tenants[:2]
        tx = TxQueue(world.tenants[a.name], a.nic, size=a.ring)
        rx = RxQueue(world.tenants[b.name], b.nic, size=b.ring)
        mac = {n.name: n.mac for n in scen.nics}
        frames = UdpFlow(mac[a.nic], mac[b.nic], a.ip, b.ip, FRAME).frames(0, batch)
        qtest = world.backend.machine.connection

        def one_round() -> int:
            sent = tx.tx_burst(frames)
            got = 0
            deadline = time.monotonic() + 5.0
            while got < sent:
                burst = len(rx.rx_burst())
                got += burst
                if not burst:  # nothing yet: wait for the back end to deliver completions, not spin
                    world.settle(1.0)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"QEMU stack: {sent - got} of {sent} frames did not arrive")
            return got

        for _ in range(4):
            one_round()
        received, sent0 = 0, qtest.commands
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            received += one_round()
        elapsed = time.perf_counter() - start
        return Rate(batch, received, elapsed, qtest.commands - sent0)


def goal_rows(seconds: float) -> list[GoalRow]:
    """One row: the project's QEMU back end against raw qtest, frames/s at batch 256 (none if QEMU is missing)."""
    if shutil.which(QEMU_BINARY) is None:
        return []
    raw = raw_rate(BATCH, seconds)
    stack = stack_rate(BATCH, seconds)
    return [
        GoalRow(
            what=f"QEMU e1000 back end vs raw qtest, batch {BATCH}",
            figure=f"{stack.fps:,.0f} frames/s",
            baseline=f"{raw.fps:,.0f} frames/s raw qtest",
            value=stack.fps / raw.fps if raw.fps else 0.0,
            goal=GOAL,
            sense=Sense.AT_LEAST,
        )
    ]


def main() -> None:
    if shutil.which(QEMU_BINARY) is None:
        print(f"{QEMU_BINARY} is not installed (Debian package qemu-system-x86): nothing to measure")
        return
    for batch in (32, BATCH):
        raw = raw_rate(batch, 2.0)
        stack = stack_rate(batch, 2.0)
        print(f"batch {batch}: raw qtest {raw.fps:,.0f} frames/s ({raw.commands_per_batch:.1f} qtest commands/batch), "
              f"stack {stack.fps:,.0f} frames/s ({stack.commands_per_batch:.1f} commands/batch): "
              f"{stack.fps / raw.fps:.2f}x")  # fmt: skip
    for row in goal_rows(2.0):
        print(f"{row.what}: {row.figure} vs {row.baseline}: {row.show(row.value)} (goal {row.sense} "
              f"{row.show(row.goal)}): {row.verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
