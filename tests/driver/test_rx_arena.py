"""The compiled receive path's arena: started over only when no batch views it any more.

``RxQueue.rx_burst`` hands out each burst as a view of an arena; when the
arena is full it starts over if nothing but the queue holds it (as a DPDK
mbuf goes back to its pool when freed), else it takes a fresh one.  So a
batch someone keeps is never written again, whichever bursts come after it,
and a stream whose batches are dropped reuses one arena.
"""

from __future__ import annotations

import gc
import weakref

from driver.tenant import pmd
from ring.frames import FrameBatch
from tests.conftest import make_rig, seq_frame
from tests.driver.test_pmd import RING
from tests.verifier.compiled import compiled_accelerator


def test_kept_batches_stay_intact_while_dropped_ones_free_the_arena() -> None:
    compiled_accelerator(pmd.enabled(), pmd.status())
    rig = make_rig()
    tx, rx = rig.tx_queue(RING), rig.rx_queue(RING)
    kept: list[tuple[FrameBatch, bytes]] = []
    arenas: set[int] = set()
    seq = 0
    for burst in range(160):  # several arenas' worth of 64-byte frames
        frames = [seq_frame(seq + i) for i in range(RING - 1)]
        seq += len(frames)
        assert tx.tx_burst(FrameBatch.from_frames(frames)) == len(frames)
        got = rx.rx_burst()
        assert list(got) == frames
        arenas.add(id(rx._out))
        if burst % 50 == 0:  # a few kept across later arenas' worth of bursts
            kept.append((got, got.data.tobytes()))
        del got
    gc.collect()
    assert all(batch.data.tobytes() == raw for batch, raw in kept)
    assert rx.stats.frames == seq
    # one fresh arena for each time a kept batch still viewed the full one, and no more
    assert 1 < len(arenas) <= 1 + len(kept)


def test_a_stream_of_dropped_batches_reuses_one_arena() -> None:
    compiled_accelerator(pmd.enabled(), pmd.status())
    rig = make_rig()
    tx, rx = rig.tx_queue(RING), rig.rx_queue(RING)
    first = weakref.ref(rx._out)  # not a reference: one would keep the arena from being started over
    seq = 0
    for _ in range(120):  # past several fills of the arena's lengths
        frames = [seq_frame(seq + i) for i in range(RING - 1)]
        seq += len(frames)
        tx.tx_burst(FrameBatch.from_frames(frames))
        assert list(rx.rx_burst()) == frames
    assert first() is rx._out and rx.stats.frames == seq
