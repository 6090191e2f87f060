"""Ring bookkeeping: packets held across doorbells (class ``held``) and slots handed back out of order
(class ``ring-order``), each slip found by the oracle's own account.

Each test writes one slip into the verifier for its duration -- a line of
``TxShadow._expire_held`` / ``_compiled`` or ``QueueState.mark_done`` /
``done_run`` replaced, as ``make mutants`` does, or the held-doorbell bound
off by one through the kernel's Policy -- runs the class for a small
deterministic budget and requires the oracle's finding.  The unmodified
verifier gives none.  Then the held-packet judge on its own.
"""

from __future__ import annotations

import inspect
import textwrap
from typing import Any

import numpy as np
import pytest

from fuzz.campaign import CampaignResult, run_campaign
from fuzz.oracle.held import HeldModel, judge_doorbell
from fuzz.oracle.rules import DEFAULT_RULES
from ring.descriptors import TX_DESC, TXD_CMD_EOP, TXD_STAT_DD, TXD_STAT_REFUSED
from verifier import kernel as kernel_mod
from verifier import queue_state
from verifier.modes import shadow
from verifier.rules.policy import Policy


def campaign(cls: str, iterations: int = 24) -> CampaignResult:
    return run_campaign("verifier", seed=1, classes=[cls], iterations=iterations, batch=32)


def found(result: CampaignResult) -> list[str]:
    return [f"{f.kind}: {f.escape.what}" for f in result.findings] + [e.what for e in result.audit_problems]


def slip(monkeypatch: pytest.MonkeyPatch, owner: type, name: str, old: str, new: str) -> None:
    """``owner.name`` with one expression of its source replaced (exactly once), as a mutant would have it."""
    function = getattr(owner, name)
    source = textwrap.dedent(inspect.getsource(function))
    assert source.count(old) == 1, old
    module = inspect.getmodule(function)
    space: dict[str, Any] = dict(vars(module))
    exec(compile(source.replace(old, new), inspect.getfile(function), "exec"), space)
    monkeypatch.setattr(owner, name, space[name])


@pytest.mark.parametrize("cls", ["held", "ring-order"])
def test_the_unmodified_verifier_gives_no_finding(cls: str) -> None:
    assert found(campaign(cls)) == []


@pytest.mark.parametrize(
    ("name", "old", "new", "says"),
    [
        ("_expire_held", "self.held_age + 1", "self.held_age", "still held after 9 doorbells"),
        ("_expire_held", "self.held_age > self", "self.held_age >= self", "had not ended 8 doorbells open"),
        ("_expire_held", "verdicts.reason[verdicts.held] = R.PKT_UNTERMINATED", "pass", "sent without EOP"),
        ("_expire_held", "self.held.size > 0 and bool(verdicts.held[0])", "self.held.size > 0", "had not ended"),
        ("_compiled", "consts is None or self.held.size", "consts is None", "before it is still held"),
    ],
)
def test_a_held_packet_slip_is_found(monkeypatch: pytest.MonkeyPatch, name: str, old: str, new: str, says: str) -> None:
    slip(monkeypatch, shadow.TxShadow, name, old, new)
    assert any(says in line for line in found(campaign("held"))), says


@pytest.mark.parametrize(("bound", "says"), [(7, "had not ended 8 doorbells open"), (9, "after 9 doorbells > 8")])
def test_the_held_bound_off_by_one_is_found(monkeypatch: pytest.MonkeyPatch, bound: int, says: str) -> None:
    monkeypatch.setattr(kernel_mod, "Policy", lambda: Policy(max_held_doorbells=bound))
    assert any(says in line for line in found(campaign("held"))), says


LAP = "ring: nic2 rx tail"


@pytest.mark.parametrize(
    ("name", "old", "new", "says"),
    [
        # done lags behind a refused slot when the valid ones before it come back (a free slot is refused), or
        # leaps a slot the device still holds (an overrun is taken); the first ring finding is reported
        ("mark_done", "n and not self.flagged and int", "n and int", LAP),
        ("done_run", "self.flagged or first_user", "first_user", LAP),
        ("mark_done", " and int(slots[-1]) == (self.done + n - 1) % self.size", "", LAP),
        ("mark_done", "(self.done + n - 1) % self.size", "(self.done + n) % self.size", LAP),
        (
            "mark_done",
            "k = pending if bool(window.all()) else int(np.argmin(window))",
            "k = int(np.count_nonzero(window))",
            LAP,
        ),
    ],
)
def test_a_slot_handed_back_out_of_order_slip_is_found(
    monkeypatch: pytest.MonkeyPatch, name: str, old: str, new: str, says: str
) -> None:
    slip(monkeypatch, queue_state.QueueState, name, old, new)
    assert any(says in line for line in found(campaign("ring-order", 48))), says


# -- the held-packet judge on its own ---------------------------------------------------------------------------
def ring(cmd: list[int], status: list[int]) -> np.ndarray[Any, np.dtype[np.void]]:
    r = np.zeros(16, dtype=TX_DESC)
    r["cmd"][: len(cmd)] = cmd
    r["status"][: len(status)] = status
    return r


SENT, REFUSED = TXD_STAT_DD, TXD_STAT_DD | TXD_STAT_REFUSED


def test_a_packet_held_up_to_the_bound_is_fine_and_refused_after_it() -> None:
    model = HeldModel()
    r = ring([0] * 10, [0] * 10)
    for d in range(8):  # one fragment per doorbell, still open: held, not refused
        assert judge_doorbell(model, r, d, d + 1, 16, DEFAULT_RULES, 0) == []
    assert (model.start, model.age) == (0, 8)
    r["status"][:9] = REFUSED  # the ninth doorbell leaves it open: every fragment refused
    assert judge_doorbell(model, r, 8, 9, 16, DEFAULT_RULES, 9) == []
    assert (model.start, model.age) == (-1, 0)


def test_held_too_long_refused_too_early_sent_open_or_out_of_order_are_found() -> None:
    model = HeldModel(start=0, age=8)
    assert "still held after 9" in judge_doorbell(model, ring([0] * 9, [0] * 9), 8, 9, 16, DEFAULT_RULES, 0)[0]
    model = HeldModel(start=0, age=7)
    early = judge_doorbell(model, ring([0] * 8, [REFUSED] * 8), 7, 8, 16, DEFAULT_RULES, 8)
    assert "had not ended 8 doorbells open" in early[0]
    model = HeldModel(start=0, age=8)
    assert "without EOP" in judge_doorbell(model, ring([0] * 9, [SENT] * 9), 8, 9, 16, DEFAULT_RULES, 0)[0]
    model = HeldModel(start=0, age=1)  # slot 0 held, slot 1 (its EOP) sent alone
    split = judge_doorbell(model, ring([0, TXD_CMD_EOP], [0, SENT]), 1, 2, 16, DEFAULT_RULES, 0)
    assert "slot 1 was completed while slot 0 before it is still held" in split[0]
