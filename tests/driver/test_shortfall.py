"""EAGAIN-like partial bursts: ``tx_burst``/``rx_burst`` say how many they did and why, and 802.3x PAUSE holds.

The forward scenario's second link speaks PAUSE: a consumer that does not
read fills its RX ring, its NIC pauses the sender, the sender's TX ring
fills, and ``tx_burst`` returns short with ``last_shortfall`` ring-full,
while nothing is missed (MPC stays 0).  Reading the consumer's ring sends
XON and the held frames go out.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from driver.tenant.rxq import RxQueue
from driver.tenant.shortfall import Reason, Shortfall
from driver.tenant.txq import TxQueue
from ring import regs
from world import scenario
from world.build import World
from world.emulated import Emulated
from world.traffic import UdpFlow

RING = 256
Link = tuple[World[Emulated], TxQueue, RxQueue, UdpFlow]


@pytest.fixture
def link() -> Iterator[Link]:
    scen = scenario.load(None, "forward")
    with World.build(scen, pcap=False) as world:
        fwd, dst = world.tenants["forwarder"], world.tenants["consumer"]
        tx, rx = TxQueue(fwd, "nic2", size=RING), RxQueue(dst, "nic3", size=RING)
        flow = UdpFlow(world.nics["nic2"].mac, world.nics["nic3"].mac, "198.18.0.2", "198.18.0.3", 64)
        yield world, tx, rx, flow


def test_a_full_ring_is_a_counted_shortfall_not_a_drop(link: Link) -> None:
    world, tx, rx, flow = link
    sent = 0
    for _ in range(6):
        n = tx.tx_burst(flow.frames(sent, 100))
        sent += n
        if n < 100:
            break
    # the consumer's ring holds RING - 1 frames, the sender's TX ring RING - 1 more (held by PAUSE)
    assert sent == 2 * (RING - 1)
    assert tx.last_shortfall == Shortfall(100, sent % 100, Reason.RING_FULL)
    assert tx.stats.ring_full == tx.stats.backpressure == 1 and tx.stats.pool_empty == 0
    assert tx.tx_burst(flow.frames(sent, 5)) == 0 and tx.last_shortfall == Shortfall(5, 0, Reason.RING_FULL)
    assert tx.in_flight == RING - 1 and rx.ready() == RING - 1
    nic2, nic3 = world.nics["nic2"], world.nics["nic3"]
    assert nic3.read32(regs.MPC) == 0  # nothing was missed: the pause held it
    assert nic3.read32(regs.XOFFTXC) >= 1 and nic2.read32(regs.XOFFRXC) >= 1

    got = rx.rx_burst(10)
    assert len(got) == 10 and rx.last_shortfall is None
    tx.reap()
    assert tx.in_flight == RING - 1 - 10  # XON: ten held frames went out into the ten re-armed slots
    assert nic2.read32(regs.XONRXC) >= 1

    got = rx.rx_burst(10_000)
    assert len(got) == RING - 1
    # re-arming sent XON, and the held frames arrived at once: more are ready
    assert rx.last_shortfall == Shortfall(10_000, RING - 1, Reason.MORE_READY)
    total = 10 + len(got)
    while len(got := rx.rx_burst(10_000)):
        total += len(got)
    assert total == sent and rx.last_shortfall == Shortfall(10_000, 0, Reason.RING_EMPTY)
    assert tx.tx_burst(flow.frames(sent, 5)) == 5 and tx.last_shortfall is None


def test_without_pause_a_full_ring_is_missed_and_counted(link: Link) -> None:
    world, tx, rx, flow = link
    for name in ("nic2", "nic3"):  # ethtool -A DEV rx off tx off
        nic = world.nics[name]
        nic.write32(regs.CTRL, nic.read32(regs.CTRL) & ~(regs.CTRL_RFCE | regs.CTRL_TFCE))
    assert tx.tx_burst(flow.frames(0, 200)) == 200 and tx.tx_burst(flow.frames(200, 200)) == 200
    assert tx.last_shortfall is None
    assert rx.ready() == RING - 1
    assert world.nics["nic3"].read32(regs.MPC) == 400 - (RING - 1)
