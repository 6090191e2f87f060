"""The compiled doorbell and reap (fastpath.c ``tx_/rx_doorbell``, ``tx_/rx_reap``) against the numpy reference.

One compiled call judges a doorbell's tail, snapshots, checks and posts; one
writes back an interrupt's completions.  Each may only ever decline more
than the reference (the step-by-step doorbell in verifier/modes/shadow.py
then judges), never take what the reference refuses, so:

* its tail judgement is ``judge_tail``'s, exhaustively over small rings;
* its in-order reap takes only what ``QueueState.done_run`` takes;
* two machines, one compiled and one on the numpy path, fed the same
  hostile doorbells, end every step with the same rings, audit records,
  ring positions and wire frames.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ring.descriptors import DESC_SIZE, TX_DESC, TXD_CMD_EOP, TXD_STAT_DD
from ring.memory import PAGE_SIZE
from tests.verifier.compiled import compiled_fast_path
from tests.verifier.conftest import MORE, READ, WRITE, Env, RawRx, RawTx
from verifier.modes.shadow import RxShadow, ShadowQueue, TxShadow
from verifier.queue_state import judge_tail
from verifier.rules import fastpath
from verifier.rules import reasons as R
from verifier.rules.policy import Policy


def lib() -> fastpath.FastPath:
    fast = compiled_fast_path(required=True)
    assert fast is not None
    return fast


class Rings:
    """A bare ``struct fp_queue`` over zeroed rings of ``size`` slots and a pin table of ``frames`` frames."""

    def __init__(self, fast: fastpath.FastPath, size: int, frames: int = 16) -> None:
        self.user = np.zeros(size * DESC_SIZE, dtype=np.uint8)
        self.shadow = np.zeros(size * DESC_SIZE, dtype=np.uint8)
        self.snap = np.zeros(size * DESC_SIZE, dtype=np.uint8)
        self.to_user = np.full(size, -1, dtype=np.int64)
        self.frame_ok = np.zeros(frames + 1, dtype=bool)
        q = fast.ffi.new("struct fp_queue *")
        q.nframes, q.size = frames, size
        mask, expect, limit = Policy().tx_fast_path or (0, 0, 0)
        q.cmd_mask, q.cmd_expect, q.max_len, q.done_status = int(mask), int(expect), int(limit), TXD_STAT_DD
        q.buffer_size = Policy().rx_buffer_size
        self.q = q
        user, shadow, to_user = fast.ptr(self.user), fast.ptr(self.shadow), fast.i64(self.to_user)
        #: the pointers a doorbell takes after the struct, and those a reap takes
        self.rings = (user, shadow, fast.ptr(self.snap), to_user, fast.ptr(self.frame_ok))
        self.reaped = (user, shadow, to_user)


@pytest.mark.parametrize("size", [8, 16])
@pytest.mark.parametrize("direction", ["tx", "rx"])
def test_the_compiled_tail_judgement_is_judge_tails(size: int, direction: str) -> None:
    """Every (tail, done, new tail) of a small ring: declined exactly where judge_tail refuses; nothing new is
    a no-op; a good tail over descriptors that fail the check (all zero here) hands the snapshot back."""
    fast = lib()
    rings = Rings(fast, size)
    doorbell = fast.lib.tx_doorbell if direction == "tx" else fast.lib.rx_doorbell
    for tail in range(size):
        for done in range(size):
            for new_tail in range(size + 2):
                got = doorbell(rings.q, *rings.rings, new_tail, tail, done, 0)
                reason = judge_tail(new_tail, tail, done, size)
                if reason != R.OK:
                    assert got == fastpath.FP_DECLINED, (tail, done, new_tail, R.name(reason))
                elif new_tail == tail:
                    assert got == 0
                else:
                    assert got == fastpath.FP_REFUSE, (tail, done, new_tail)


def test_a_clean_batch_is_posted_in_one_call_and_reaped_in_one() -> None:
    fast = lib()
    size = 16
    rings = Rings(fast, size)
    rings.frame_ok[:-1] = True
    user = rings.user.view(TX_DESC)
    slots = np.arange(12, 12 + 6) % size  # wraps
    user["addr"][slots] = np.arange(6, dtype=np.uint64) * PAGE_SIZE
    user["length"][slots] = 60
    user["cmd"][slots] = TXD_CMD_EOP
    # tail 12 -> 2: six new, posted from shadow slot 3
    assert fast.lib.tx_doorbell(rings.q, *rings.rings, 2, 12, 12, 3) == 6
    shadow = rings.shadow.view(TX_DESC)
    assert shadow[3:9].tobytes() == user[slots].tobytes()
    assert list(rings.to_user[3:9]) == list(slots)
    assert fast.lib.tx_reap(rings.q, *rings.reaped, 3, 7, 12) == 4  # four finished, the next user slots from done = 12
    assert list(user["status"][slots]) == [TXD_STAT_DD] * 4 + [0, 0]
    # not the slots after done: the general (numpy) path's case
    assert fast.lib.tx_reap(rings.q, *rings.reaped, 7, 9, 13) == fastpath.FP_DECLINED
    assert list(user["status"][slots[4:]]) == [0, 0]  # declined: nothing written back


def test_the_compiled_reap_takes_only_in_order_completions_done_run_takes() -> None:
    fast = lib()
    size = 8
    rng = np.random.default_rng(3)
    for _ in range(500):
        rings = Rings(fast, size)
        head, n, done = (int(x) for x in rng.integers(0, size, 3))
        n = min(n, size - 1)
        rings.to_user[:] = rng.permutation(size) if rng.random() < 0.5 else (np.arange(size) - head + done) % size
        got = fast.lib.rx_reap(rings.q, *rings.reaped, head, (head + n) % size, done)
        if got != fastpath.FP_DECLINED:
            assert got == n
            last = (head + n - 1) % size
            assert n == 0 or (rings.to_user[head] == done and rings.to_user[last] == (done + n - 1) % size)


def _addresses(fast: fastpath.FastPath, *pointers: Any) -> list[int]:
    return [int(fast.ffi.cast("uintptr_t", p)) for p in pointers]


@pytest.mark.parametrize("direction", ["tx", "rx"])
def test_the_rings_struct_entry_points_are_the_pointer_calls(direction: str) -> None:
    """``tx_/rx_doorbell_rings`` and ``tx_/rx_reap_rings`` (one ``struct fp_rings`` for the five pointers) return what
    ``tx_/rx_doorbell`` and ``tx_/rx_reap`` return and leave the same bytes, on twin rings: random positions (many
    of them refused, many wrapping the user ring, the shadow ring or both) over descriptors some of which fail."""
    fast = lib()
    rng = np.random.default_rng(5)
    plain_doorbell = fast.lib.tx_doorbell if direction == "tx" else fast.lib.rx_doorbell
    rings_doorbell = fast.lib.tx_doorbell_rings if direction == "tx" else fast.lib.rx_doorbell_rings
    plain_reap = fast.lib.tx_reap if direction == "tx" else fast.lib.rx_reap
    rings_reap = fast.lib.tx_reap_rings if direction == "tx" else fast.lib.rx_reap_rings
    results = set()
    for size in (8, 16, 512):
        a, b = Rings(fast, size), Rings(fast, size)
        both = fast.ffi.new("struct fp_rings *", (b.q, *b.rings))
        for _ in range(300):
            user = rng.integers(0, 256, size * DESC_SIZE, dtype=np.uint8)
            descs = user.view(TX_DESC)
            good = rng.random(size) < 0.97  # most batches clean, so that many are posted
            descs["addr"] = np.where(good, rng.integers(0, 15, size) * PAGE_SIZE, descs["addr"])
            descs["length"] = np.where(good, 60, descs["length"])
            descs["cmd"] = np.where(good, TXD_CMD_EOP, descs["cmd"])
            frame_ok = rng.random(a.frame_ok.size) < 0.98
            frame_ok[-1] = False
            to_user = rng.integers(0, size, size)
            for r in (a, b):
                r.user[:], r.frame_ok[:], r.to_user[:] = user, frame_ok, to_user
            tail, done, shadow_tail = (int(x) for x in rng.integers(0, size, 3))
            new_tail = int(rng.integers(0, size + 2))
            got = plain_doorbell(a.q, *a.rings, new_tail, tail, done, shadow_tail)
            assert rings_doorbell(both, new_tail, tail, done, shadow_tail) == got
            head, n = int(rng.integers(0, size)), int(rng.integers(0, size))
            if rng.random() < 0.5:  # the in-order case the reap takes
                a.to_user[:] = b.to_user[:] = (np.arange(size) - head + done) % size
            reaped = plain_reap(a.q, *a.reaped, head, (head + n) % size, done)
            assert rings_reap(both, head, (head + n) % size, done) == reaped
            for x, y in ((a.user, b.user), (a.shadow, b.shadow), (a.snap, b.snap), (a.to_user, b.to_user)):
                assert x.tobytes() == y.tobytes()
            results.add((got > 0, reaped > 0))
    assert results == {(True, True), (True, False), (False, True), (False, False)}


def test_a_queue_hands_the_compiled_calls_its_own_arrays(make_env: Callable[..., Env]) -> None:
    """Each trapped queue's ``struct fp_rings`` names its ``struct fp_queue`` and its own rings, snapshot, map and
    pin row (the addresses the pointer calls were given), and the queue calls the ``_rings`` entry points."""
    fast = lib()
    env = make_env("verifier")
    RawTx(env.alice), RawRx(env.bob)  # open one queue each way
    handlers = [q.handler for q in env.kernel.queues.values() if isinstance(q.handler, ShadowQueue)]
    assert {type(h).__name__ for h in handlers} == {"TxShadow", "RxShadow"}
    for h in handlers:
        assert h.quick is not None
        r = h.c_queue
        assert _addresses(fast, r.q, r.user, r.shadow, r.snap, r.to_user, r.frame_ok) == _addresses(
            fast, h.quick, *h.c_rings
        )
        assert _addresses(fast, r.user, r.shadow, r.snap, r.to_user) == [
            a.ctypes.data for a in (h.state.user.view, h.shadow, h.snap, h.to_user)
        ]
        kind = h.state.origin.kind
        assert h.c_doorbell is getattr(fast.lib, f"{kind}_doorbell_rings")
        assert h.c_reap is getattr(fast.lib, f"{kind}_reap_rings")


# -- two machines, one compiled and one on the numpy path, fed the same hostile doorbells -----------------
Seen = list[tuple[bytes, bytes, list[dict[str, Any]], tuple[int, ...]]]


def script(env: Env, rng: np.random.Generator, steps: int, compiled: bool) -> Seen:
    """Hostile TX and RX doorbells, from one seed; what the tenants, the kernel and the wire show after each."""
    tx, rx = RawTx(env.alice), RawRx(env.bob)
    handlers: list[Any] = [q.handler for q in env.kernel.queues.values()]
    assert len(handlers) == 2
    for handler in handlers:
        if not compiled:
            handler.fast = None  # the numpy path on this machine (as Kernel(accelerators=False) opens it)
        assert (handler.quick is not None) == compiled
    good_rx = env.buffer(env.bob, 64 * 2048, WRITE)
    unpinned = env.buffer(env.alice, PAGE_SIZE, None)
    read_only = env.buffer(env.bob, PAGE_SIZE, READ)
    seen = []
    for step in range(steps):
        for _ in range(int(rng.integers(1, 9))):  # RX buffers, now and then one the device may not write
            roll = rng.random()
            addr = read_only.bus if roll < 0.1 else good_rx.bus + int(rng.integers(0, 64)) * 2048
            rx.put(addr)
        rx.doorbell(rx.tail if rng.random() > 0.05 else rx.size + 3)
        for i in range(int(rng.integers(1, 12))):  # TX: good frames, a few broken or fragmented
            roll = rng.random()
            if roll < 0.7:
                tx.send(step * 16 + i)
            elif roll < 0.8:
                tx.put(unpinned.bus, 60)
            elif roll < 0.9:
                tx.put(tx.pool_frame(i, bytes(60)), 0)
            else:
                tx.put(tx.pool_frame(i, bytes(60)), 60, MORE)  # an open packet, held for the next doorbell
        tx.doorbell(tx.q.tail if rng.random() > 0.05 else (tx.q.tail - 2) % tx.size)
        records = [{k: v for k, v in r.items() if k not in ("time", "ts")} for r in env.audit.records]
        states = tuple(
            x
            for q in env.kernel.queues.values()
            if q.state is not None
            for x in (q.state.tail, q.state.done, q.state.user_reads)
        )
        seen.append((tx.q.ring.tobytes(), rx.ring.tobytes(), records, (*states, len(env.wire))))
    return seen


def test_compiled_and_numpy_machines_agree_step_by_step(make_env: Callable[..., Env]) -> None:
    lib()
    compiled, plain = make_env("verifier"), make_env("verifier")
    a = script(compiled, np.random.default_rng(11), 60, compiled=True)
    b = script(plain, np.random.default_rng(11), 60, compiled=False)
    for step, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x[0] == y[0], f"TX ring differs after step {step}"
        assert x[1] == y[1], f"RX ring differs after step {step}"
        assert x[2] == y[2], f"audit records differ after step {step}"
        assert x[3] == y[3], f"ring positions or wire differ after step {step}"
    assert compiled.wire == plain.wire and len(compiled.wire) > 100
    assert a[-1][2], "the script refused nothing: it compared only clean batches"


@pytest.mark.parametrize("name", ShadowQueue.HOT_PATHS)
def test_each_direction_runs_its_own_copy_of_the_hot_paths(name: str) -> None:
    """TX and RX run the doorbell and the reap from code objects of their own (their own inline caches,
    ``ShadowQueue.__init_subclass__``), which are the shared function's code exactly: the same bytecode,
    constants, names and source lines, so a change to ``ShadowQueue`` (or a planted mutant) reaches both."""
    shared = getattr(ShadowQueue, name)
    copies = [vars(cls)[name] for cls in (TxShadow, RxShadow)]
    assert copies[0].__code__ is not copies[1].__code__
    for own in copies:
        code, base = own.__code__, shared.__code__
        assert code is not base
        assert (code.co_code, code.co_consts, code.co_names, code.co_varnames, code.co_freevars) == (
            base.co_code, base.co_consts, base.co_names, base.co_varnames, base.co_freevars,
        )  # fmt: skip
        assert (code.co_filename, code.co_firstlineno, list(code.co_lines())) == (
            base.co_filename, base.co_firstlineno, list(base.co_lines()),
        )  # fmt: skip
        names = ("__qualname__", "__module__", "__doc__")
        assert [getattr(own, a) for a in names] == [getattr(shared, a) for a in names]
        assert own.__globals__ is shared.__globals__ and own.__defaults__ == shared.__defaults__
