"""``demo pingpong --batch auto``: the pingpong whose batch size tunes itself, timed in the sandbox's own clock.

Each round, alice posts one burst of ``batch`` numbered frames (one
doorbell), bob receives them in bursts of ``batch`` (a doorbell each, as his
RX tail write re-arms the slots), checks every byte, echoes them (a doorbell)
and alice receives the echoes (a doorbell).  A frame's latency is from the
doorbell that posted it to alice's receipt of its echo: doorbell to
completion, a round trip.  The frames really cross the kernel's verifier,
the emulated NICs and the cable; only time is modelled, by
:class:`measure.cost_clock.CostClock` (the inline engine's 1 Gb/s virtual
wire, plus a declared cost per doorbell and per frame the consumer handles),
which is why this mode needs the inline engine: it is deterministic, and a
round is over when the calls return.

A period is whole rounds of one batch, at least ``period_frames`` frames.
:func:`run` lets a :class:`driver.tenant.tuner.BatchTuner` choose each
period's batch; :func:`sweep` runs every fixed batch of a range for one
period each, the exhaustive search the tuner is judged against.  The
workload (frame size, consumer cost) may change from one period to the
next (``schedule``), to show that the optimum moves and the tuner follows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from device.e1000 import EngineMode
from driver.tenant.rxq import RxQueue
from driver.tenant.tuner import BatchTuner, Sample
from driver.tenant.txq import TxQueue
from measure.cost_clock import DOORBELL_NS, CostClock
from measure.periods import PeriodMeter, PeriodResult
from ring.frames import FrameBatch
from ring.syscalls import RegisterBus
from world.backend import Backend
from world.build import World
from world.traffic import UdpFlow, sequence_numbers, swap_endpoints


@dataclass(frozen=True)
class Workload:
    """What one period runs: frames of ``size`` bytes on the wire (FCS included), ``consumer_ns`` per frame at bob."""

    size: int
    consumer_ns: int = 0


@dataclass
class TunedRun:
    """A tuned run: the controller's trajectory, the workload of each period, the frames' fate."""

    trajectory: list[Sample]
    workloads: list[Workload]
    sent: int = 0
    echoed: int = 0  # echoes alice received intact
    bad: int = 0  # frames lost or damaged on either leg
    doorbells: int = 0
    virtual_ns: int = 0
    interrupted: bool = False

    @property
    def clean(self) -> bool:
        return self.bad == 0 and self.echoed == self.sent


class Rounds:
    """Synchronous pingpong rounds on a built inline world, timed by a :class:`CostClock`."""

    def __init__(self, world: World[Backend[RegisterBus]], doorbell_ns: int = DOORBELL_NS) -> None:
        if world.scenario.engine is not EngineMode.INLINE:
            raise ValueError("a tuned pingpong keeps time in the inline engine's virtual clock: it needs engine inline")
        spec_a, spec_b = world.scenario.tenants[:2]
        proc_a, proc_b = world.tenants[spec_a.name], world.tenants[spec_b.name]
        self.tx_a, self.rx_a = (
            TxQueue(proc_a, spec_a.nic, size=spec_a.ring),
            RxQueue(proc_a, spec_a.nic, size=spec_a.ring),
        )
        self.tx_b, self.rx_b = (
            TxQueue(proc_b, spec_b.nic, size=spec_b.ring),
            RxQueue(proc_b, spec_b.nic, size=spec_b.ring),
        )
        mac = {n.name: n.mac for n in world.scenario.nics}
        self._flow = lambda size: UdpFlow(
            mac[spec_a.nic], mac[spec_b.nic], spec_a.ip, spec_b.ip, size, world.scenario.seed
        )
        self._flows: dict[int, UdpFlow] = {}
        #: the largest burst: one round must fit the smaller ring (one slot stays empty, as in the fixed pingpong)
        self.window = max(1, min(spec_a.ring, spec_b.ring) - 1)
        self.clock = CostClock(doorbell_ns)
        self.seq = 0
        self.sent = self.echoed = self.bad = 0

    def flow(self, size: int) -> UdpFlow:
        if size not in self._flows:
            self._flows[size] = self._flow(size)
        return self._flows[size]

    def period(self, batch: int, work: Workload, frames: int) -> PeriodResult:
        """Whole rounds of ``batch`` frames, at least ``frames`` of them; the period's throughput and p99."""
        if not 1 <= batch <= self.window:
            raise ValueError(f"batch {batch} is outside 1..{self.window} (the ring holds one round)")
        self.clock.consumer_ns = work.consumer_ns
        meter = PeriodMeter(self.clock.now_ns)
        for _ in range(math.ceil(frames / batch)):
            self._round(batch, self.flow(work.size), meter)
        return meter.result(self.clock.now_ns)

    def _post(self, txq: TxQueue, batch: FrameBatch) -> int:
        """Post a whole burst, a doorbell per ``tx_burst`` that took frames; how many went."""
        done = 0
        while done < len(batch):
            k = txq.tx_burst(batch.take(done, len(batch)))
            if k == 0:
                break
            self.clock.doorbell()
            self.clock.send(batch.lengths[done : done + k])
            done += k
        return done

    def _receive(self, rxq: RxQueue, batch: int, consume: bool) -> list[FrameBatch]:
        bursts = []
        while len(got := rxq.rx_burst(batch)):
            self.clock.doorbell()
            if consume:
                self.clock.consume(len(got))
            bursts.append(got)
        return bursts

    def _round(self, n: int, flow: UdpFlow, meter: PeriodMeter) -> None:
        clock = self.clock
        t0 = clock.now_ns
        seqs = np.arange(self.seq, self.seq + n, dtype=np.uint64)
        self.seq += n
        expected = flow.expected(seqs)
        self.sent += n
        self._post(self.tx_a, FrameBatch.from_matrix(expected))
        good = _matching(self._receive(self.rx_b, n, consume=True), expected)
        self._post(self.tx_b, FrameBatch.from_matrix(swap_endpoints(good)) if len(good) else FrameBatch())
        back_expected = swap_endpoints(expected)
        echoed = 0
        for burst in self._receive(self.rx_a, n, consume=False):
            ok = len(_matching([burst], back_expected))
            echoed += ok
            meter.completed(np.full(ok, clock.now_ns - t0, dtype=np.int64))
        self.echoed += echoed
        self.bad += n - echoed


def _matching(bursts: list[FrameBatch], expected: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The received frames that are byte for byte one of ``expected`` (looked up by sequence number)."""
    if not bursts:
        return expected[:0]
    got = FrameBatch.concat(bursts)
    if not len(got) or int(got.lengths.min()) != expected.shape[1] or int(got.lengths.max()) != expected.shape[1]:
        return expected[:0]
    rows = got.as_matrix()
    first = int(sequence_numbers(expected[:1])[0])
    idx = sequence_numbers(rows).astype(np.int64) - first
    inside = (idx >= 0) & (idx < len(expected))
    ok = inside.copy()
    ok[inside] = (rows[inside] == expected[idx[inside]]).all(axis=1)
    return rows[ok]


def run(
    rounds: Rounds,
    tuner: BatchTuner,
    schedule: Callable[[int], Workload],
    periods: int,
    period_frames: int,
    progress: Callable[[Sample], None] | None = None,
) -> TunedRun:
    """``periods`` periods, each at the batch the tuner asks for; Ctrl-C ends it early with what was measured."""
    out = TunedRun(tuner.trajectory, [])
    start = rounds.clock.now_ns
    try:
        for p in range(periods):
            work = schedule(p)
            result = rounds.period(tuner.batch, work, period_frames)
            out.workloads.append(work)
            tuner.feed(result.kpps, result.p99_us)
            if progress is not None:
                progress(tuner.trajectory[-1])
    except KeyboardInterrupt:
        out.interrupted = True
    del out.workloads[len(tuner.trajectory) :]  # a period cut short by Ctrl-C is not in the trajectory
    out.sent, out.echoed, out.bad = rounds.sent, rounds.echoed, rounds.bad
    out.doorbells, out.virtual_ns = rounds.clock.doorbells, rounds.clock.now_ns - start
    return out


@dataclass
class Sweep:
    """Every fixed batch of a range, one period each, for one workload; Ctrl-C keeps the batches measured."""

    work: Workload
    lam: float
    points: list[tuple[int, PeriodResult]] = field(default_factory=list)
    interrupted: bool = False

    def utility(self, r: PeriodResult) -> float:
        return r.kpps - self.lam * r.p99_us

    @property
    def best(self) -> tuple[int, PeriodResult]:
        return max(self.points, key=lambda p: self.utility(p[1]))


def sweep(rounds: Rounds, batches: Iterable[int], work: Workload, period_frames: int, lam: float) -> Sweep:
    out = Sweep(work, lam)
    try:
        for b in batches:
            out.points.append((b, rounds.period(b, work, period_frames)))
    except KeyboardInterrupt:
        out.interrupted = True
    return out
