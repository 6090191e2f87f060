"""The bounded forwarder on the inline engine's virtual clock: where frames are lost, and what rate it settles to.

Every run is deterministic (inline engine, virtual time), so the numbers
below are facts of the model, not timings: with back-pressure nothing is
lost past the first hop and the forwarder's rate is the consumer's; without
it the loss moves past the first hop, and every counter (MPC, ring-full)
equals what the run's sequence numbers say.
"""

from __future__ import annotations

import pytest

from measure.forward import FixedBatch, ForwardReport, Period, Policy
from sandbox.demos import forward
from world import scenario
from world.scenario import ScenarioError

COUNT, RATE, CONSUMER = 3000, 1_000_000.0, 400_000.0


def runs(*policies: Policy, pause: bool = True, consumer: float = CONSUMER, batch: int = 32) -> list[ForwardReport]:
    scen = scenario.load(None, "forward")
    return forward.run(scen, policies, COUNT, 64, RATE, consumer, lambda: FixedBatch(batch), pause=pause)


@pytest.fixture(scope="module")
def side_by_side() -> list[ForwardReport]:
    return runs(Policy.BACKPRESSURE, Policy.DROP)


def test_backpressure_loses_nothing_past_the_first_hop(side_by_side: list[ForwardReport]) -> None:
    bp = side_by_side[0]
    d = bp.drops
    assert d.past_first_hop == 0 and d.oracle_forwarder == d.oracle_last_hop == 0
    assert bp.taken == bp.forwarded == bp.delivered and bp.corrupt == 0
    assert d.first_hop_mpc == bp.offered - bp.delivered > 0  # the source is open loop: the excess dies at hop 1
    assert d.agree
    assert bp.shortfalls["ring-full"] > 0 and bp.pauses["xoff"] > 0  # EAGAIN and PAUSE were what held it


def test_backpressure_rate_converges_to_the_consumers(side_by_side: list[ForwardReport]) -> None:
    bp = side_by_side[0]
    for column in ("taken", "forwarded", "consumed"):
        assert bp.settled_rate(column) == pytest.approx(CONSUMER, rel=0.02), column
    assert bp.settled_rate("offered") == pytest.approx(RATE, rel=0.02)


def test_without_backpressure_the_forwarder_drops_and_counts_it(side_by_side: list[ForwardReport]) -> None:
    drop = side_by_side[1]
    d = drop.drops
    assert d.forwarder_ring_full > 0 and d.agree
    assert d.forwarder_ring_full == drop.taken - drop.forwarded == d.oracle_forwarder
    assert d.first_hop_mpc == 0  # it always read its input: the loss moved past the first hop
    assert drop.settled_rate("taken") == pytest.approx(RATE, rel=0.02)
    assert drop.settled_rate("forwarded") == pytest.approx(CONSUMER, rel=0.02)


@pytest.mark.parametrize("policy", list(Policy))
def test_without_pause_the_consumers_nic_misses_and_mpc_is_the_oracles(policy: Policy) -> None:
    (report,) = runs(policy, pause=False)
    d = report.drops
    assert d.last_hop_mpc > 0 and d.agree
    assert d.last_hop_mpc == report.forwarded - report.delivered
    assert d.forwarder_ring_full == 0 and report.pauses == {"xoff": 0, "xon": 0}


def test_a_fast_consumer_loses_nothing() -> None:
    (report,) = runs(Policy.DROP, consumer=2 * RATE)
    assert report.delivered == report.offered == COUNT
    assert report.drops.past_first_hop == report.drops.first_hop_mpc == 0


def test_same_flags_same_numbers(side_by_side: list[ForwardReport]) -> None:
    (again,) = runs(Policy.BACKPRESSURE)
    assert again.periods == side_by_side[0].periods


def test_the_batch_is_asked_each_period() -> None:
    seen: list[Period | None] = []

    def alternate(last: Period | None) -> int:
        seen.append(last)
        return 4 if last is None or last.index % 2 else 16

    scen = scenario.load(None, "forward")
    (report,) = forward.run(scen, [Policy.BACKPRESSURE], 500, 64, RATE, CONSUMER, lambda: alternate)
    assert seen[0] is None and len(seen) == len(report.periods)
    assert [p.batch for p in report.periods[1:5]] == [16, 4, 16, 4]
    assert all(p.taken <= p.batch for p in report.periods)


def test_a_scenario_without_three_tenants_is_refused() -> None:
    scen = scenario.load(None, "pingpong")
    with pytest.raises(ScenarioError, match="three tenants"):
        forward.run(scen, [Policy.DROP], 10, 64, RATE, CONSUMER, lambda: FixedBatch(8))
