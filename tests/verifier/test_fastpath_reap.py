"""The compiled interrupt reap (fastpath.c ``tx_/rx_reap``, ``tx_/rx_reap_mapped``) against a reference.

The reap compares the finished shadow slots with the next user slots in runs
that wrap neither ring and writes the run back without a second look at
``to_user``; ``*_reap_mapped`` reads the device's head word itself.  Each
must return what the reference returns and leave the same bytes: the
reference here is the definition (every finished slot maps to the next user
slot in order, else decline and write nothing) with the write-back of the
general path's own compiled functions (``tx_complete``/``rx_complete``,
which look every slot up in ``to_user``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from device.e1000 import E1000
from ring.descriptors import DESC_SIZE, TXD_STAT_DD
from tests.verifier.conftest import WRITE, Env, RawRx, RawTx
from tests.verifier.test_fastpath_doorbell import Rings, lib
from verifier.modes.shadow import ShadowQueue
from verifier.rules import fastpath


def reference(r: Rings, direction: str, head: int, device_head: int, done: int) -> int:
    """What a reap returns, writing back into ``r.user`` through the general path's compiled write-back."""
    fast = lib()
    size = r.to_user.size
    if not (0 <= head < size and 0 <= device_head < size and 0 <= done < size):
        return fastpath.FP_DECLINED
    n = (device_head - head) % size
    shadow_slots = (head + np.arange(n)) % size
    if not np.array_equal(r.to_user[shadow_slots], (done + np.arange(n)) % size):
        return fastpath.FP_DECLINED
    user, shadow, to_user = r.reaped
    if direction == "tx":
        fast.lib.tx_complete(user, size, to_user, head, n, TXD_STAT_DD)
    else:
        fast.lib.rx_complete(user, size, shadow, to_user, head, n)
    return n


@pytest.mark.parametrize("direction", ["tx", "rx"])
def test_the_reap_is_the_reference_on_every_position(direction: str) -> None:
    """Random positions on rings of 8 to 512 slots (many wrapping the shadow ring, the user ring or both; heads
    and dones out of range now and then), maps in order or with one slot wrong: same result, same bytes."""
    fast = lib()
    rng = np.random.default_rng(17)
    reap = fast.lib.tx_reap if direction == "tx" else fast.lib.rx_reap
    results = set()
    for size in (8, 16, 64, 512):
        a, b = Rings(fast, size), Rings(fast, size)
        for _ in range(400):
            head, done = (int(x) for x in rng.integers(0, size, 2))
            n = int(rng.integers(0, size))
            to_user = (np.arange(size) - head + done) % size
            roll = rng.random()
            if roll < 0.3 and n:  # one finished slot that is not the next user slot
                wrong = (head + int(rng.integers(0, n))) % size
                to_user[wrong] = (to_user[wrong] + int(rng.integers(1, size))) % size
            elif roll < 0.4:
                to_user = rng.integers(-1, size, size)
            device_head = (head + n) % size
            if rng.random() < 0.05:
                head, device_head, done = (int(x) for x in rng.integers(0, size + 3, 3))
            user = rng.integers(0, 256, size * DESC_SIZE, dtype=np.uint8)
            shadow = rng.integers(0, 256, size * DESC_SIZE, dtype=np.uint8)
            for r in (a, b):
                r.user[:], r.shadow[:], r.to_user[:] = user, shadow, to_user
            want = reference(a, direction, head, device_head, done)
            assert reap(b.q, *b.reaped, head, device_head, done) == want, (size, head, device_head, done)
            assert b.user.tobytes() == a.user.tobytes()
            assert b.shadow.tobytes() == shadow.tobytes() and b.to_user.tobytes() == a.to_user.tobytes()
            results.add(want > 0 if want >= 0 else None)
    assert results == {True, False, None}


@pytest.mark.parametrize("direction", ["tx", "rx"])
def test_the_mapped_reap_is_the_reap_with_the_head_word_read(direction: str) -> None:
    """``*_reap_mapped`` returns what ``*_reap_rings`` returns given the word at ``head_reg`` as the device's head,
    leaves the same bytes, and records that word in ``seen_head`` (the general path's head on a decline)."""
    fast = lib()
    rng = np.random.default_rng(23)
    size = 64
    a, b = Rings(fast, size), Rings(fast, size)
    word = np.zeros(1, dtype=np.uint32)
    ra = fast.ffi.new("struct fp_rings *", (a.q, *a.rings))
    rb = fast.ffi.new("struct fp_rings *", (b.q, *b.rings))
    rb.head_reg = fast.ffi.cast("uint32_t *", word.ctypes.data)
    rings_reap = fast.lib.tx_reap_rings if direction == "tx" else fast.lib.rx_reap_rings
    mapped_reap = fast.lib.tx_reap_mapped if direction == "tx" else fast.lib.rx_reap_mapped
    declined = 0
    for _ in range(300):
        head, done = (int(x) for x in rng.integers(0, size, 2))
        to_user = (np.arange(size) - head + done) % size if rng.random() < 0.8 else rng.integers(0, size, size)
        user = rng.integers(0, 256, size * DESC_SIZE, dtype=np.uint8)
        for r in (a, b):
            r.user[:], r.to_user[:] = user, to_user
        word[0] = int(rng.integers(0, size)) if rng.random() < 0.9 else int(rng.integers(size, 1 << 32))
        want = rings_reap(ra, head, int(word[0]), done)
        assert mapped_reap(rb, head, done) == want
        assert rb.seen_head == int(word[0])
        assert b.user.tobytes() == a.user.tobytes()
        declined += want == fastpath.FP_DECLINED
    assert 0 < declined < 300


def test_a_queue_on_an_emulated_nic_reaps_with_the_device_head_word(make_env: Callable[..., Env]) -> None:
    """On the emulated e1000 each trapped queue's compiled reap reads the device's own TDH/RDH word (the view
    ``E1000.mapped_word`` hands out), and traffic through it completes as before."""
    fast = lib()
    env = make_env("verifier")
    tx, rx = RawTx(env.alice), RawRx(env.bob)
    queues = [q for q in env.kernel.queues.values() if isinstance(q.handler, ShadowQueue)]
    assert len(queues) == 2
    for q in queues:
        h = q.handler
        assert isinstance(h, ShadowQueue) and h.quick is not None and h.head_word is not None
        dev = h.state.bus
        assert isinstance(dev, E1000)
        word = dev.regs[h.state.head_reg >> 2 :]
        assert int(fast.ffi.cast("uintptr_t", h.c_queue.head_reg)) == word.ctypes.data
        kind = h.state.origin.kind
        assert h.c_reap_mapped is getattr(fast.lib, f"{kind}_reap_mapped")
    good = env.buffer(env.bob, 8 * 2048, WRITE)
    for i in range(8):
        rx.put(good.bus + i * 2048)
    rx.doorbell(rx.tail)
    for i in range(5):
        tx.send(i)
    tx.doorbell(tx.q.tail)
    for q in queues:
        h = q.handler
        assert isinstance(h, ShadowQueue)
        assert h.head == h.state.bus.read32(h.state.head_reg) == 5  # the reap moved to the device's head
    assert len(env.wire) == 5
