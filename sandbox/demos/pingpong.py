"""The pingpong demo: one tenant sends numbered UDP frames, the other checks and echoes them.

Both tenants drive their NICs entirely from user space through ``tx_burst``
and ``rx_burst``; every received frame is compared byte for byte with what
its sequence number says it must be, in both directions.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from device.virtio_net import VirtioNet
from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from ring import regs
from ring.frames import FrameBatch
from ring.syscalls import RegisterBus
from verifier.kernel import Process
from world.backend import Backend
from world.build import World
from world.traffic import UdpFlow, sequence_numbers, swap_endpoints

Expect = Callable[[npt.NDArray[np.uint64]], npt.NDArray[np.uint8]]


class Sender(Protocol):
    def tx_burst(self, batch: FrameBatch) -> int: ...


class Receiver(Protocol):
    def rx_burst(self, max_frames: int = ...) -> FrameBatch: ...


#: Opens a tenant's transmit and receive queue on a NIC with rings of a size: e1000 rings by default,
#: world/virtio.py's ``virtio_queues`` on virtio NICs.
OpenQueues = Callable[[Process, str, int], tuple[Sender, Receiver]]


def e1000_queues(proc: Process, nic: str, size: int) -> tuple[Sender, Receiver]:
    return TxQueue(proc, nic, size=size), RxQueue(proc, nic, size=size)


def missed_frames(dev: RegisterBus) -> int:
    """Frames a NIC missed for lack of receive buffers: e1000's MPC register, a virtio device's own count."""
    return dev.missed if isinstance(dev, VirtioNet) else dev.read32(regs.MPC)


@dataclass
class Direction:
    """What one side received, judged against what the other side sent."""

    name: str
    space: int  # sequence numbers run from 0 to space - 1
    expected: int = 0  # frames that should arrive (the echo expects only what the other side got)
    received: int = 0
    bytes: int = 0
    corrupt: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    _seen: npt.NDArray[np.bool_] = field(init=False, repr=False)
    _highest: int = -1

    @property
    def lost(self) -> int:
        return self.expected - int(np.count_nonzero(self._seen))

    def __post_init__(self) -> None:
        self._seen = np.zeros(self.space, dtype=bool)

    def check(self, frames: FrameBatch, expect: Expect) -> npt.NDArray[np.uint8]:
        """Judge a burst; return the good frames as a matrix (for the echo)."""
        self.received += len(frames)
        self.bytes += frames.nbytes
        try:
            rows = frames.as_matrix()
        except ValueError:  # mixed lengths: nothing the demo sent
            self.corrupt += len(frames)
            return np.zeros((0, 0), dtype=np.uint8)
        seqs = sequence_numbers(rows)
        valid = seqs < np.uint64(self.space)
        good = valid.copy()
        good[valid] = (rows[valid] == expect(seqs[valid])).all(axis=1)
        self.corrupt += int(np.count_nonzero(~good))
        s = seqs[good].astype(np.int64)
        self.duplicates += int(np.count_nonzero(self._seen[s])) + (s.size - np.unique(s).size)
        self._seen[s] = True
        if s.size:
            running = np.maximum.accumulate(np.concatenate(([self._highest], s)))[:-1]
            self.out_of_order += int(np.count_nonzero(s < running))
            self._highest = max(self._highest, int(s.max()))
        return rows[good]

    def as_dict(self) -> dict[str, int | str]:
        out = {k: v for k, v in asdict(self).items() if not k.startswith("_") and k != "space"}
        out["lost"] = self.lost
        return out


@dataclass
class PingPongReport:
    forward: Direction
    echo: Direction
    seconds: float
    frame_size: int
    batch: int
    missed: dict[str, int]  # MPC per NIC
    pcaps: list[str]

    @property
    def mpps(self) -> float:
        """Frames received per second, both directions together, in millions."""
        return (self.forward.received + self.echo.received) / self.seconds / 1e6 if self.seconds else 0.0

    @property
    def clean(self) -> bool:
        return all(d.lost == d.corrupt == d.duplicates == d.out_of_order == 0 for d in (self.forward, self.echo))


def run(
    world: World[Backend[RegisterBus]],
    count: int,
    size: int,
    batch: int,
    progress: Callable[[int, int], None] | None = None,
    idle_timeout_s: float = 5.0,
    queues: OpenQueues = e1000_queues,
) -> PingPongReport:
    """Send ``count`` frames of ``size`` bytes in bursts of ``batch`` and echo them back.

    ``queues`` opens each tenant's queues (e1000 rings, or virtqueues on virtio NICs).
    """
    spec_a, spec_b = world.scenario.tenants[:2]
    proc_a, proc_b = world.tenants[spec_a.name], world.tenants[spec_b.name]
    mac = {n.name: n.mac for n in world.scenario.nics}
    tx_a, rx_a = queues(proc_a, spec_a.nic, spec_a.ring)
    tx_b, rx_b = queues(proc_b, spec_b.nic, spec_b.ring)
    flow = UdpFlow(mac[spec_a.nic], mac[spec_b.nic], spec_a.ip, spec_b.ip, size, world.scenario.seed)
    forward = Direction(f"{spec_a.name}→{spec_b.name}", space=count, expected=count)
    echo = Direction(f"{spec_b.name}→{spec_a.name} echo", space=count)

    def expect_echo(seqs: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
        return swap_endpoints(flow.expected(seqs))

    window = max(1, min(spec_a.ring, spec_b.ring) - 1)
    cable_limit = world.backend.in_flight_limit(size)  # a lossy cable (QEMU's UDP sockets) caps it too
    if cable_limit is not None:
        window = max(1, min(window, cable_limit))
    written_off = 0
    pending: deque[npt.NDArray[np.uint8]] = deque()
    sent = 0
    quiet = False
    start = time.perf_counter()
    while True:
        moved = 0
        # Self-clocking, as a window protocol is: never more frames outstanding (sent, not yet
        # echoed) than the smaller RX ring can hold, so a slow receiver is not flooded.
        outstanding = sent - echo.received - forward.corrupt - written_off
        room = window - outstanding
        if sent < count and room > 0:
            n = tx_a.tx_burst(flow.frames(sent, min(batch, count - sent, room)))
            sent += n
            moved += n
        # Receivers drain their rings a burst at a time, as a DPDK poll loop does: reading only
        # one burst per round would let a threaded device run ahead until the ring overflows.
        while len(got := rx_b.rx_burst(batch)):
            moved += len(got)
            good = forward.check(got, flow.expected)
            echo.expected += len(good)
            if len(good):
                pending.append(swap_endpoints(good))
        while pending:
            rows = pending[0]
            k = tx_b.tx_burst(FrameBatch.from_matrix(rows))
            moved += k
            if k < len(rows):
                pending[0] = rows[k:]
                break
            pending.popleft()
        while len(back := rx_a.rx_burst(batch)):
            moved += len(back)
            echo.check(back, expect_echo)
        if progress is not None and moved:
            progress(sent, echo.received)
        if not pending and not moved:
            # Quiet: let the devices finish (threaded engine), then look once more.
            if not quiet:
                quiet = world.settle(idle_timeout_s)
                if quiet:
                    continue
            if sent == count:
                break
            # Everything is idle yet frames are outstanding: they were dropped (MPC); stop waiting for them.
            written_off += outstanding
            quiet = False
        else:
            quiet = False
    seconds = time.perf_counter() - start
    missed = {name: missed_frames(dev) for name, dev in world.nics.items()}
    return PingPongReport(forward, echo, seconds, size, batch, missed, [str(p.path) for p in world.pcaps])
