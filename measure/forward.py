"""A bounded forwarder, paced by a virtual clock: back-pressure against loss, measured hop by hop.

Three tenants: a source sends a numbered stream at ``rate`` frames per
second to the forwarder's NIC; the forwarder takes bursts from its RX ring
and posts them to its TX ring on a second NIC, whose cable leads to the
consumer's NIC; the consumer takes frames at ``consumer_rate``, slower.
Something has to give, and where it gives is the lesson:

- **with back-pressure** the forwarder keeps what ``tx_burst`` did not take
  (its ``last_shortfall`` says ring-full: EAGAIN) and reads no more input
  until it is gone, as a program whose non-blocking ``splice`` into a full
  pipe returned EAGAIN waits before reading more.  The second link speaks
  802.3x PAUSE, so a full consumer ring holds the forwarder's TX ring, which
  holds the forwarder, whose RX ring fills: the only loss is at the first hop
  (the source is open loop, as UDP is), and the forwarder's rate settles to
  the consumer's.
- **without it** the forwarder drops what did not fit and reads on (DPDK's
  l2fwd frees the mbufs ``rte_eth_tx_burst`` refused): the loss moves past
  the first hop, into the forwarder (counted ring-full), or, with no PAUSE
  on the second link, into the consumer's NIC (counted in its MPC).

Time is virtual (``device.clock.VirtualClock``): each period of
``period_ns`` the source sends what its rate owes, the forwarder does one
burst, the consumer takes what its rate allows.  With the inline engine the
whole run is deterministic: same flags, same numbers.  The run's own oracle
is the sequence numbers: which frames reached the forwarder, which it
posted, which reached the consumer; every drop a NIC or the forwarder
counts must match it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from device.clock import VirtualClock
from device.e1000 import EngineMode
from driver.tenant.rxq import RxQueue
from driver.tenant.shortfall import Reason
from driver.tenant.txq import TxQueue
from ring import regs
from ring.frames import FrameBatch
from ring.syscalls import RegisterBus
from world.backend import Backend
from world.build import World
from world.scenario import Scenario, ScenarioError
from world.traffic import MAC_DST, MAC_SRC, UdpFlow, sequence_numbers

#: One period of virtual time: the source, the forwarder and the consumer each act once per period.
DEFAULT_PERIOD_NS = 10_000
#: The forwarder gives up waiting for the rings to drain after this many periods with no progress.
STALL_PERIODS = 1000


class Policy(StrEnum):
    """What the forwarder does with frames its TX ring did not take."""

    BACKPRESSURE = "backpressure"  # hold them, read no more input until they are posted
    DROP = "drop"  # drop them (counted ring-full), read on


@dataclass(frozen=True)
class Period:
    """What one period did: what a batch tuner sees before it picks the next period's batch."""

    index: int
    t_ns: int  # virtual time at the end of the period, from the run's start
    batch: int  # the batch the forwarder used in it
    offered: int  # frames the source sent
    taken: int  # frames the forwarder took from its RX ring
    forwarded: int  # frames the forwarder's TX ring took
    consumed: int  # frames the consumer took
    rx_ring: int  # occupancy at the period's end: forwarder RX done-not-taken
    tx_ring: int  # forwarder TX posted-not-sent (held by PAUSE)
    consumer_ring: int  # consumer RX done-not-taken
    held: int  # frames the forwarder holds because its TX ring was full
    dropped_hop1: int  # frames the forwarder's NIC missed in the period (its MPC, read and so cleared)
    dropped_forwarder: int  # frames the forwarder dropped because tx_burst refused them (ring-full)
    dropped_hop2: int  # frames the consumer's NIC missed (its MPC)
    latency_p99_ns: int  # p99 of source-send to consumer-take, in virtual ns, of this period's frames (0: none)
    #: every frame the consumer took in the period, its source-send to consumer-take in virtual ns (a tuner's p99
    #: over many periods needs them all, not the periods' own p99s)
    latencies_ns: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False, compare=False
    )


#: The forwarder's batch for the next period, given the last one (None before the first): ``FixedBatch`` or a tuner.
BatchPolicy = Callable[[Period | None], int]


@dataclass(frozen=True)
class FixedBatch:
    """The same batch every period (``--batch N``)."""

    size: int

    def __call__(self, last: Period | None) -> int:
        return self.size


@dataclass(frozen=True)
class Roles:
    """Who is who in the scenario: tenants 1, 2 and 3, and the forwarder's second NIC."""

    source: str
    forwarder: str
    consumer: str
    out_nic: str  # the forwarder's TX NIC: the one cabled to the consumer's NIC

    @classmethod
    def of(cls, scenario: Scenario) -> Roles:
        """Tenant 1 sends, tenant 2 forwards, tenant 3 consumes; the second NIC is the consumer NIC's partner."""
        if len(scenario.tenants) < 3:
            raise ScenarioError(f"{scenario.source}: forward needs three tenants (source, forwarder, consumer)")
        if scenario.engine is not EngineMode.INLINE:
            raise ScenarioError(f"{scenario.source}: engine: forward runs on virtual time, so needs engine inline")
        src, fwd, dst = scenario.tenants[:3]
        peer = {c.a: c.b for c in scenario.cables} | {c.b: c.a for c in scenario.cables}
        if peer.get(src.nic) != fwd.nic:
            raise ScenarioError(f"{scenario.source}: forward needs a cable from {src.nic!r} to {fwd.nic!r}")
        out = peer.get(dst.nic)
        if out is None:
            raise ScenarioError(f"{scenario.source}: forward needs a cable to the consumer's NIC {dst.nic!r}")
        driven = {t.nic: t.name for t in scenario.tenants}
        if out in driven:
            raise ScenarioError(
                f"{scenario.source}: NIC {out!r} (cabled to {dst.nic!r}) is the forwarder's second NIC, "
                f"but tenant {driven[out]!r} drives it"
            )
        return cls(src.name, fwd.name, dst.name, out)


@dataclass
class Drops:
    """Frames lost, by where, as the counters say and as the run's sequence numbers say."""

    first_hop_mpc: int = 0  # the forwarder's RX NIC: no RX descriptor (its ring was full); MPC summed over periods
    forwarder_ring_full: int = 0  # the forwarder dropped what its full TX ring refused
    last_hop_mpc: int = 0  # the consumer's NIC: no RX descriptor
    oracle_first_hop: int = 0  # sent by the source, never taken by the forwarder
    oracle_forwarder: int = 0  # taken by the forwarder, never posted
    oracle_last_hop: int = 0  # posted by the forwarder, never taken by the consumer

    @property
    def past_first_hop(self) -> int:
        return self.forwarder_ring_full + self.last_hop_mpc

    @property
    def agree(self) -> bool:
        """Every counter equals what the sequence numbers say."""
        return (self.first_hop_mpc, self.forwarder_ring_full, self.last_hop_mpc) == (
            self.oracle_first_hop,
            self.oracle_forwarder,
            self.oracle_last_hop,
        )


@dataclass
class ForwardReport:
    """One run: totals, drops by place, the periods as columns, and the rates it settled to."""

    policy: Policy
    pause: bool  # 802.3x PAUSE on the second link
    rate: float  # source, frames per virtual second
    consumer_rate: float
    frame_size: int
    period_ns: int
    ring: dict[str, int]  # ring sizes: forwarder RX, forwarder TX, consumer RX
    offered: int = 0
    taken: int = 0
    forwarded: int = 0
    delivered: int = 0
    corrupt: int = 0  # frames the consumer got that are not what the source sent, re-addressed
    drops: Drops = field(default_factory=Drops)
    shortfalls: dict[str, int] = field(default_factory=dict)  # forwarder tx_burst shortfalls, by reason
    pauses: dict[str, int] = field(default_factory=dict)  # XOFF/XON counts of the second link
    periods: list[Period] = field(default_factory=list)
    latency_ns: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def duration_ns(self) -> int:
        return self.periods[-1].t_ns if self.periods else 0

    def column(self, name: str) -> npt.NDArray[np.int64]:
        """One field of every period, as an array (``t_ns``, ``rx_ring``, ``forwarded`` ...)."""
        return np.array([getattr(p, name) for p in self.periods], dtype=np.int64)

    def settled_rate(self, name: str = "forwarded") -> float:
        """Frames per virtual second of ``name`` over the second half of the source's sending time."""
        offered = self.column("offered")
        sending = np.flatnonzero(offered)
        if sending.size < 2:
            return 0.0
        first, last = int(sending[sending.size // 2]), int(sending[-1])
        counts = self.column(name)[first : last + 1]
        seconds = (last + 1 - first) * self.period_ns / 1e9
        return float(counts.sum()) / seconds

    def latency_percentile(self, q: float) -> float:
        """Source-send to consumer-take, in virtual microseconds (0 if nothing arrived)."""
        return float(np.percentile(self.latency_ns, q)) / 1e3 if self.latency_ns.size else 0.0


def run(
    world: World[Backend[RegisterBus]],
    count: int,
    size: int,
    rate: float,
    consumer_rate: float,
    batch: BatchPolicy,
    policy: Policy,
    period_ns: int = DEFAULT_PERIOD_NS,
    stop: Callable[[], bool] | None = None,
    slow_down: tuple[int, float] | None = None,
) -> ForwardReport:
    """Send ``count`` frames of ``size`` bytes through the forwarder and report where each one went.

    ``batch`` is asked for the forwarder's burst size once per period (a
    fixed size, or a tuner).  ``stop``, polled once per period, ends the
    source early (Ctrl-C): the rings still drain and the report is whole.
    ``slow_down`` = (period, rate): from that period on the consumer takes
    ``rate`` frames per second instead (a workload that changes mid-run).
    """
    roles = Roles.of(world.scenario)
    scen = world.scenario
    src_spec, fwd_spec, dst_spec = (scen.tenant(n) for n in (roles.source, roles.forwarder, roles.consumer))
    src, fwd, dst = (world.tenants[n] for n in (roles.source, roles.forwarder, roles.consumer))
    mac = {n.name: n.mac for n in scen.nics}
    pause = any(n.flow_control for n in scen.nics if n.name in (roles.out_nic, dst_spec.nic))
    src_tx = TxQueue(src, src_spec.nic, size=src_spec.ring)
    fwd_rx = RxQueue(fwd, fwd_spec.nic, size=fwd_spec.ring)
    fwd_tx = TxQueue(fwd, roles.out_nic, size=fwd_spec.ring)
    dst_rx = RxQueue(dst, dst_spec.nic, size=dst_spec.ring)
    flow = UdpFlow(mac[src_spec.nic], mac[fwd_spec.nic], src_spec.ip, dst_spec.ip, size, scen.seed)
    out_macs = np.frombuffer(mac[dst_spec.nic] + mac[roles.out_nic], dtype=np.uint8)
    nics = world.nics
    for name in (fwd_spec.nic, dst_spec.nic, roles.out_nic):
        nics[name].read32(regs.MPC)  # statistics clear on read: start from zero
    report = ForwardReport(
        policy, pause, rate, consumer_rate, size, period_ns,
        {"forwarder rx": fwd_spec.ring, "forwarder tx": fwd_spec.ring, "consumer rx": dst_spec.ring},
    )  # fmt: skip
    sent_at = np.zeros(count, dtype=np.int64)
    seen_fwd = np.zeros(count, dtype=bool)
    posted = np.zeros(count, dtype=bool)
    seen_dst = np.zeros(count, dtype=bool)
    latencies: list[npt.NDArray[np.int64]] = []
    shortfalls = {r.value: 0 for r in (Reason.RING_FULL, Reason.POOL_EMPTY)}
    held: npt.NDArray[np.uint8] = np.zeros((0, flow.frame_len), dtype=np.uint8)
    clock = VirtualClock(start_ns=0)
    offered = spent = 0
    owed_before, since_ns, consumer_now = 0, 0, consumer_rate  # the consumer's allowance, piecewise in its rate
    last: Period | None = None
    quiet = 0
    index = 0
    while True:
        now = clock.advance(period_ns)
        if stop is not None and offered < count and stop():
            count = offered  # Ctrl-C: the source stops; what is in flight still drains
        # 1. the source: what its rate owes by now (open loop, as UDP is; its own ring never fills here)
        owed = min(count, int(rate * now / 1e9)) - offered
        sent_now = 0
        while owed > 0:
            n = src_tx.tx_burst(flow.frames(offered, min(owed, src_spec.ring - 1)))
            sent_at[offered : offered + n] = now
            offered += n
            owed -= n
            sent_now += n
            if n == 0:
                break
        # 2. the forwarder: one burst per period
        size_now = max(1, batch(last))
        taken = forwarded = ring_full = 0
        if len(held):
            k = fwd_tx.tx_burst(FrameBatch.from_matrix(held))
            posted[sequence_numbers(held[:k]).astype(np.int64)] = True
            forwarded += k
            held = held[k:]
            _count_short(fwd_tx, shortfalls)
        if not len(held) or policy is Policy.DROP:
            got = fwd_rx.rx_burst(size_now)
            taken = len(got)
            if taken:
                rows = got.as_matrix().copy()
                seqs = sequence_numbers(rows).astype(np.int64)
                seen_fwd[seqs] = True
                rows[:, MAC_DST], rows[:, MAC_SRC] = out_macs[:6], out_macs[6:]  # re-address to the next hop
                k = fwd_tx.tx_burst(FrameBatch.from_matrix(rows))
                posted[seqs[:k]] = True
                forwarded += k
                _count_short(fwd_tx, shortfalls)
                if k < taken:
                    if policy is Policy.BACKPRESSURE:
                        held = rows[k:]
                    else:
                        ring_full = taken - k
        # 3. the consumer: what its rate allows by now
        if slow_down is not None and index == slow_down[0]:
            owed_before += int(consumer_now * (now - period_ns - since_ns) / 1e9)
            since_ns, consumer_now = now - period_ns, slow_down[1]
        allowed = owed_before + int(consumer_now * (now - since_ns) / 1e9) - spent
        got = dst_rx.rx_burst(allowed) if allowed > 0 else FrameBatch()
        spent += max(allowed, 0)  # an idle consumer banks no capacity: what it had no frames for is gone
        lat = np.zeros(0, dtype=np.int64)
        if len(got):
            rows = got.as_matrix()
            numbers = sequence_numbers(rows)
            valid = numbers < np.uint64(count)
            expect = flow.expected(numbers[valid])
            expect[:, MAC_DST], expect[:, MAC_SRC] = out_macs[:6], out_macs[6:]
            good = valid.copy()
            good[valid] = (rows[valid] == expect).all(axis=1)
            report.corrupt += int(np.count_nonzero(~good))
            s = numbers[good].astype(np.int64)
            seen_dst[s] = True
            lat = now - sent_at[s]
            latencies.append(lat)
        fwd_tx.reap()
        last = Period(
            index, now, size_now, sent_now, taken, forwarded, len(got),
            fwd_rx.ready(), fwd_tx.in_flight, dst_rx.ready(), len(held),
            nics[fwd_spec.nic].read32(regs.MPC), ring_full, nics[dst_spec.nic].read32(regs.MPC),
            int(np.percentile(lat, 99)) if lat.size else 0, lat,
        )  # fmt: skip
        report.periods.append(last)
        index += 1
        busy = len(held) + last.rx_ring + last.tx_ring + last.consumer_ring
        if offered >= count and busy == 0:
            break
        quiet = 0 if (taken or forwarded or len(got) or sent_now) else quiet + 1
        if quiet >= STALL_PERIODS:
            break  # nothing moves any more (a consumer rate of almost nothing): report what is stuck
    report.offered, report.taken, report.forwarded, report.delivered = (
        offered, int(seen_fwd.sum()), int(posted.sum()), int(seen_dst.sum()),
    )  # fmt: skip
    d = report.drops
    d.first_hop_mpc = int(report.column("dropped_hop1").sum())
    d.forwarder_ring_full = int(report.column("dropped_forwarder").sum())
    d.last_hop_mpc = int(report.column("dropped_hop2").sum())
    d.oracle_first_hop = offered - report.taken
    d.oracle_forwarder = report.taken - report.forwarded
    d.oracle_last_hop = report.forwarded - report.delivered
    report.shortfalls = shortfalls
    out = nics[roles.out_nic]
    report.pauses = {"xoff": out.read32(regs.XOFFRXC), "xon": out.read32(regs.XONRXC)}
    report.latency_ns = np.concatenate(latencies) if latencies else np.zeros(0, dtype=np.int64)
    return report


def _count_short(tx: TxQueue, counts: dict[str, int]) -> None:
    short = tx.last_shortfall
    if short is not None:
        counts[short.reason.value] += 1
