"""Frames per second through two emulated NICs on a cable (one direction, RX checked for count).

Reference point: ixy.py, the published Python user-space driver, reached
0.14 Mpps at batch 32 on real hardware (Emmerich et al., "The Case for
Writing Network Drivers in High-Level Programming Languages", 2019).

Issue 12 judges the data path against the numpy limit (bench/numpy_limit.py)
measured in the same process, twice: as users run it, with the compiled
burst paths of driver, kernel and device (ring/cbuild.py), and on the numpy
path alone (``NIC_SANDBOX_FASTPATH=0``, in a child process, since the
switch is read once per process).  ``python -m bench.datapath --json``
prints one process's figures; ``goal_rows`` turns both into goal rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

from bench import numpy_limit
from bench.goals import GoalRow, Sense
from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from world import scenario
from world.build import World
from world.traffic import UdpFlow

IXY_PY_MPPS_BATCH32 = 0.14


#: The data path's figure at one batch size (the probe's type: the two are compared row by row).
DatapathResult = numpy_limit.FrameRate


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


BATCHES = (32, 256)
#: Issue 12's goals, as fractions of the numpy limit: (batch, numpy path, compiled path).
GOALS = {32: (0.50, 0.50), 256: (0.60, 1.50)}
VERIFIER_COST_GOAL = 0.10


def against_limit(seconds: float) -> dict[str, float]:
    """This process's figures: the numpy limit and the verifier-mode data path at each batch, in Mpps."""
    out: dict[str, float] = {}
    for batch in BATCHES:
        out[f"limit{batch}"] = numpy_limit.measure(batch, seconds).mpps
        out[f"path{batch}"] = measure(batch, min_seconds=seconds, protection="verifier").mpps
    return out


def numpy_path(seconds: float) -> dict[str, float]:
    """``against_limit`` in a child process with every accelerator off (the numpy path alone)."""
    env = dict(os.environ, NIC_SANDBOX_FASTPATH="0")
    child = subprocess.run(
        [sys.executable, "-m", "bench.datapath", "--json", "--seconds", str(seconds)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    figures: dict[str, float] = json.loads(child.stdout)
    return figures


def verifier_cost(seconds: float, rounds: int = 3) -> tuple[float, float]:
    """Mpps of protection none and verifier at batch 256, interleaved, the best of ``rounds`` each.

    Interleaving and best-of keep a neighbour's burst of load from landing
    on one side of the comparison only.
    """
    none = verifier = 0.0
    for _ in range(rounds):
        none = max(none, measure(256, min_seconds=seconds / rounds, protection="none").mpps)
        verifier = max(verifier, measure(256, min_seconds=seconds / rounds, protection="verifier").mpps)
    return none, verifier


def goal_rows(seconds: float) -> list[GoalRow]:
    compiled, plain = against_limit(seconds), numpy_path(seconds)
    rows = []
    for batch in BATCHES:
        numpy_goal, compiled_goal = GOALS[batch]
        for label, figures, goal in (("numpy path", plain, numpy_goal), ("compiled path", compiled, compiled_goal)):
            path, limit = figures[f"path{batch}"], figures[f"limit{batch}"]
            rows.append(
                GoalRow(
                    f"data path, 64 B, batch {batch}, verifier, {label} vs numpy limit",
                    f"{path:.3f} Mpps",
                    f"{limit:.3f} Mpps limit",
                    path / limit,
                    goal,
                )
            )
    none, verifier = verifier_cost(seconds)
    rows.append(
        GoalRow(
            "verifier cost on the data path (verifier vs none, batch 256)",
            f"{verifier:.3f} Mpps",
            f"{none:.3f} Mpps none",
            1 - verifier / none,
            VERIFIER_COST_GOAL,
            Sense.AT_MOST,
            "%",
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.datapath", description="the data path against the numpy limit"
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default 1)")
    parser.add_argument("--json", action="store_true", help="print this process's figures as JSON (for goal_rows)")
    args = parser.parse_args()
    if args.json:
        print(json.dumps(against_limit(args.seconds)))
        return
    for row in goal_rows(args.seconds):
        print(f"{row.what}: {row.figure} vs {row.baseline}: {row.show(row.value)} (goal {row.sense} "
              f"{row.show(row.goal)}, {row.verdict})")  # fmt: skip


if __name__ == "__main__":
    main()
