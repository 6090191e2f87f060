"""Frames per second through two emulated NICs on a cable (one direction, RX checked for count).

Reference point: ixy.py, the published Python user-space driver, reached
0.14 Mpps at batch 32 on real hardware (Emmerich et al., "The Case for
Writing Network Drivers in High-Level Programming Languages", 2019).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from world import scenario
from world.build import World
from world.traffic import UdpFlow

IXY_PY_MPPS_BATCH32 = 0.14


@dataclass(frozen=True)
class DatapathResult:
    batch: int
    frames: int
    seconds: float

    @property
    def mpps(self) -> float:
        return self.frames / self.seconds / 1e6


def measure(batch: int, size: int = 64, min_seconds: float = 1.0, protection: str | None = None) -> DatapathResult:
    """Send bursts of ``batch`` frames alice -> bob until ``min_seconds`` passed; count frames received."""
    scen = scenario.load()
    if protection is not None:
        scen = dataclasses.replace(scen, protection=type(scen.protection)(protection))
    with World.build(scen, pcap=False) as world:
        a, b = scen.tenants[:2]
        tx = TxQueue(world.tenants[a.name], a.nic, size=a.ring)
        rx = RxQueue(world.tenants[b.name], b.nic, size=b.ring)
        mac = {n.name: n.mac for n in scen.nics}
        frames = UdpFlow(mac[a.nic], mac[b.nic], a.ip, b.ip, size).frames(0, batch)
        for _ in range(20):  # warm up caches and allocations
            tx.tx_burst(frames)
            rx.rx_burst()
        received = 0
        rounds = 0
        start = time.perf_counter()
        while True:
            tx.tx_burst(frames)
            received += len(rx.rx_burst())
            rounds += 1
            if rounds % 16 == 0 and time.perf_counter() - start >= min_seconds:
                break
        return DatapathResult(batch, received, time.perf_counter() - start)
