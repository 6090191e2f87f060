"""The tenant driver's compiled burst path (driver/tenant/pmd.c) against the numpy queues it stands in for.

Two identical worlds, in each protection mode that changes what the
tenant's ring sees (none: the device writes back; verifier: the kernel
does, and refuses), get the same random stream of bursts: frames of mixed
sizes (some needing two buffers, which the compiled path hands back to the
numpy code), bursts larger than the room left (back-pressure), receives
capped at a random number of frames, and now and then a descriptor written
by hand past the driver (a slot without a pool buffer, a buffer the tenant
never pinned: refused in verifier mode).  One world's queues run with the
compiled path, the other's with the numpy code only.  Every frame received,
every statistic, the rings, the pools' free stacks and all of memory must
be the same, and the compiled path must have been taken.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driver.tenant import pmd
from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from ring import indices
from ring.descriptors import TX_DESC, TXD_CMD_EOP, TXD_CMD_RS
from ring.frames import FrameBatch
from tests.conftest import RIG, Rig, make_rig, seq_frame
from tests.verifier.compiled import compiled_accelerator
from verifier.modes.protection import Protection
from world.build import World


@pytest.fixture(autouse=True)
def _compiled() -> None:
    """The pmd module must be here wherever it can be built (tests/verifier/compiled.py)."""
    compiled_accelerator(pmd.enabled(), pmd.status())


RING = 32


def rig_in(protection: Protection) -> Rig:
    if protection is Protection.NONE:
        return make_rig()
    world = World.build(dataclasses.replace(RIG, protection=protection), pcap=False)
    nics, tenants = world.backend.nics, world.tenants
    rig = Rig(world.memory, nics["nic0"], nics["nic1"], world.backend.cables[0], world.kernel, tenants["alice"],
              tenants["bob"])  # fmt: skip
    rig.cable.taps.append(lambda _src, frames, _stamps: rig.wire.extend(frames))
    return rig


def queues(rig: Rig, compiled: bool) -> tuple[TxQueue, RxQueue]:
    tx, rx = rig.tx_queue(RING, pool_size=RING - 4), rig.rx_queue(RING)
    if not compiled:
        tx.fast = rx.fast = None
    return tx, rx


# One step: ("send", frame sizes) | ("recv", max frames) | ("rogue", kind) -- a descriptor written past the driver.
sizes = st.lists(st.sampled_from((60, 64, 64, 64, 128, 1514, 2048, 3000)), min_size=0, max_size=40)
step = st.one_of(
    st.tuples(st.just("send"), sizes),
    st.tuples(st.just("recv"), st.integers(1, 40)),
    st.tuples(st.just("rogue"), st.sampled_from(("no-buffer", "unpinned"))),
)


def rogue(rig: Rig, tx: TxQueue, kind: str) -> None:
    """A descriptor the driver did not allocate: its slot has no pool buffer (slot_buf stays -1)."""
    if indices.free(tx.clean, tx.tail, tx.size) == 0:
        return
    desc = np.zeros(1, dtype=TX_DESC)
    desc["addr"] = tx.pool.bus_addr[0] if kind == "no-buffer" else rig.memory.size - 4096
    desc["length"] = 64
    desc["cmd"] = TXD_CMD_EOP | TXD_CMD_RS
    tx.ring[tx.tail] = desc[0]
    tx.tail = indices.advance(tx.tail, 1, tx.size)
    tx.doorbell.write32(tx.handle.tail_offset, tx.tail)


def run(rig: Rig, compiled: bool, steps: list[tuple[str, object]]) -> tuple[object, ...]:
    tx, rx = queues(rig, compiled)
    got: list[bytes] = []
    seq = 0
    for op, arg in steps:
        if op == "send":
            assert isinstance(arg, list)
            frames = [seq_frame(seq + i, size) for i, size in enumerate(arg)]
            seq += len(arg)
            tx.tx_burst(FrameBatch.from_frames(frames))
        elif op == "recv":
            assert isinstance(arg, int)
            got.extend(rx.rx_burst(arg))
        else:
            rogue(rig, tx, str(arg))
    tx.reap()
    return (
        got,
        dataclasses.asdict(tx.stats),
        dataclasses.asdict(rx.stats),
        (tx.clean, tx.tail, rx.next, rx.tail),
        tx.slot_buf.tobytes(),
        tx.pool.stack[: tx.pool.available].tobytes(),
        rig.memory.data.tobytes(),
        [bytes(f) for f in rig.wire],
    )


@pytest.mark.parametrize("protection", [Protection.NONE, Protection.VERIFIER])
@settings(max_examples=40, deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=25))
def test_compiled_queues_leave_rings_pools_frames_and_memory_as_the_numpy_queues_do(
    protection: Protection, steps: list[tuple[str, object]]
) -> None:
    assert run(rig_in(protection), True, steps) == run(rig_in(protection), False, steps)


@pytest.mark.parametrize("protection", [Protection.NONE, Protection.VERIFIER])
def test_a_plain_burst_takes_the_compiled_path(protection: Protection, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = rig_in(protection)
    tx, rx = queues(rig, True)
    calls: list[str] = []
    loaded = pmd.enabled()
    assert loaded is not None
    real = loaded

    class Spy:
        """The loaded library, with each call of a pmd_ function noted."""

        def __getattr__(self, name: str) -> object:
            calls.append(name)
            return getattr(real.lib, name)

    monkeypatch.setattr(tx, "fast", dataclasses.replace(real, lib=Spy()))
    monkeypatch.setattr(rx, "fast", dataclasses.replace(real, lib=Spy()))
    frames = [seq_frame(i) for i in range(16)]
    assert tx.tx_burst(FrameBatch.from_frames(frames)) == 16
    assert list(rx.rx_burst()) == frames
    assert tx.reap() == 16
    assert calls.count("pmd_tx_post") == 1 and calls.count("pmd_rx_burst") == 1 and "pmd_tx_reap" in calls


def test_a_double_free_is_still_reported() -> None:
    """pmd_tx_reap refuses to overflow the pool; the numpy code then raises as it always did."""
    rig = make_rig()
    tx, _rx = queues(rig, True)
    tx.tx_burst(FrameBatch.from_frames([seq_frame(0)]))
    tx.pool.free(np.array([0], dtype=np.int64))  # buffer 0 is in flight, and now also free: the pool is full
    with pytest.raises(ValueError, match="double free"):
        tx.tx_burst(FrameBatch.from_frames([seq_frame(1)]))


def test_a_buffer_id_outside_the_pool_is_never_written_through() -> None:
    """A corrupted free list: the compiled post refuses it untouched and the numpy code fails its index."""
    rig = make_rig()
    tx, _rx = queues(rig, True)
    tx.pool.stack[tx.pool.available - 1] = 1 << 40  # the id the next alloc hands out
    before = rig.memory.data.copy()
    with pytest.raises(IndexError):
        tx.tx_burst(FrameBatch.from_frames([seq_frame(0)]))
    assert np.array_equal(rig.memory.data, before)
