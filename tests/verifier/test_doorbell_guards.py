"""The trapped doorbell's guards: what sends a tail write past the one-call compiled doorbell.

``ShadowQueue.doorbell`` takes the compiled call only for a tail that is a slot of the ring, with no race hook
installed and no open packet held; everything else goes step by step (``_doorbell_slow``), the reference.  A
guard that let a write through wrongly would change what a tenant or a fuzzer's race sees, so each is held here
to the reference's behaviour (``make mutants`` plants the slips: ``fuzz/mutants/targets.py``):

* a tail that is no slot of the ring, even one no 32-bit register holds (the doorbell window passes the
  tenant's value as given), is refused and audited as RING_TAIL_BEYOND, never an exception;
* a ``before_read`` hook (the race-points class's "last moment before the kernel reads") runs once before every
  doorbell that brings descriptors, and ``after_check`` once after its check;
* a doorbell that brings nothing (the same tail again) runs no hook, posts nothing and audits nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.verifier.conftest import Env, RawTx
from verifier.queue_state import QueueState


def _tx_state(env: Env) -> QueueState:
    st = env.kernel.queue("nic0", "tx").state
    assert st is not None
    return st


@pytest.mark.parametrize("value", [-1, -(2**40), 2**32, 2**32 + 1, 2**64 + 3])
def test_a_tail_no_register_holds_is_refused_and_audited(make_env: Callable[..., Env], value: int) -> None:
    env = make_env("verifier")
    tx = RawTx(env.alice)
    st = _tx_state(env)
    tx.send(1, 64)
    tx.doorbell(value)
    assert [r["reason"] for r in env.records("tx")] == ["RING_TAIL_BEYOND"]
    assert (st.tail, st.user_reads) == (0, 0)  # nothing was read or posted
    tx.doorbell()  # the tenant's real tail still works afterwards
    assert (st.tail, st.user_reads) == (1, 1)


def test_the_race_hooks_run_once_a_doorbell_that_brings_descriptors(make_env: Callable[..., Env]) -> None:
    env = make_env("verifier")
    tx = RawTx(env.alice)
    st = _tx_state(env)
    seen: list[tuple[str, int, int]] = []
    st.before_read.append(lambda s: seen.append(("before_read", s.tail, s.user_reads)))
    st.after_check.append(lambda s: seen.append(("after_check", s.tail, s.user_reads)))
    tx.send(1, 64)
    tx.send(2, 64)
    tx.doorbell()
    # before_read: before the kernel has read a user descriptor; after_check: once, with both read and checked
    assert seen == [("before_read", 0, 0), ("after_check", 2, 2)]
    assert not env.records()


def test_a_doorbell_that_brings_nothing_runs_no_hook_and_posts_nothing(make_env: Callable[..., Env]) -> None:
    env = make_env("verifier")
    tx = RawTx(env.alice)
    st = _tx_state(env)
    tx.send(1, 64)
    tx.doorbell()
    seen: list[str] = []
    # after_check alone: a before_read hook would send every doorbell step by step
    st.after_check.append(lambda _s: seen.append("after_check"))
    for _ in range(3):
        tx.doorbell()  # the same tail again
    assert seen == []
    assert (st.tail, st.user_reads) == (1, 1)
    tx.send(2, 64)
    tx.doorbell()
    assert seen == ["after_check"]  # the hook is live: it runs for the doorbell that brings one
    assert not env.records()
