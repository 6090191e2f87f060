"""The forward demo: the same stream through a bounded forwarder twice, with back-pressure and without.

Each run gets a fresh world built from the same scenario (same seed, same
addresses), so the two columns differ only in what the forwarder does with
frames its TX ring refused (measure/forward.py).  ``pause=False`` takes
802.3x PAUSE off the second link, so no back-pressure crosses the wire and a
slow consumer's own NIC misses frames whatever the forwarder does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from measure import forward
from measure.forward import BatchPolicy, ForwardReport, Policy
from verifier.audit.rejections import AuditSink
from world.build import World
from world.scenario import Scenario


def with_pause(scenario: Scenario, pause: bool) -> Scenario:
    """The scenario with 802.3x PAUSE as it says (``pause``) or off on every NIC (not ``pause``)."""
    if pause:
        return scenario
    nics = tuple(dataclasses.replace(n, flow_control=False) for n in scenario.nics)
    return dataclasses.replace(scenario, nics=nics)


def run(
    scenario: Scenario,
    policies: Sequence[Policy],
    count: int,
    size: int,
    rate: float,
    consumer_rate: float,
    batch: Callable[[], BatchPolicy],
    pause: bool = True,
    period_ns: int = forward.DEFAULT_PERIOD_NS,
    audit: AuditSink | None = None,
    stop: Callable[[], bool] | None = None,
    slow_down: tuple[int, float] | None = None,
) -> list[ForwardReport]:
    """One run per policy, each in a world of its own; ``batch`` makes each run's batch policy (a tuner is stateful).

    ``stop`` (Ctrl-C) ends the current run's source early and starts no further run.
    """
    forward.Roles.of(scenario)  # refuse a scenario that cannot forward before building anything
    scen = with_pause(scenario, pause)
    reports: list[ForwardReport] = []
    for policy in policies:
        if reports and stop is not None and stop():
            break  # stopped during a run: keep what was measured, start no other
        with World.build(scen, pcap=False, audit=audit) as world:
            reports.append(
                forward.run(world, count, size, rate, consumer_rate, batch(), policy, period_ns, stop, slow_down)
            )
    return reports
