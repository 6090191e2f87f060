"""The data path's whole-batch bursts (issue 12) against the paths they stand in for.

Equal-length bursts are what the compiled path and the numpy path's row
scatter (TX) and same-length run (RX) take: two identical worlds get the
same random stream of such bursts (of random sizes, with back-pressure,
receive caps, slots wrapping past the ring's end and descriptors written by
hand past the driver); one runs pmd.c, one the numpy code, and a third
world's receive queue never takes the same-length run (the general numpy
code, the semantics it replaced).  Frames, statistics, rings, pools and all
of memory must be the same.  And a batch the compiled path received stays
intact however many bursts come after it (it is a view of an arena that is
never written twice).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driver.tenant import pmd
from driver.tenant.rxq import RxQueue
from ring.frames import FrameBatch
from tests.conftest import make_rig, seq_frame
from tests.driver.test_pmd import RING, rig_in, run
from tests.verifier.compiled import compiled_accelerator
from verifier.modes.protection import Protection


class GeneralRx(RxQueue):
    """A receive queue that never takes the same-length run: the general numpy code decides every burst."""

    def _same_length_run(self, posted: int, max_frames: int) -> FrameBatch | None:
        return None


# ("send", frames all of one size) | ("recv", max frames) | ("rogue", kind)
same_size = st.tuples(st.sampled_from((60, 64, 128, 1514, 2048, 3000)), st.integers(0, 40)).map(lambda t: [t[0]] * t[1])
step = st.one_of(
    st.tuples(st.just("send"), same_size),
    st.tuples(st.just("send"), same_size),
    st.tuples(st.just("recv"), st.integers(1, 40)),
    st.tuples(st.just("rogue"), st.sampled_from(("no-buffer", "unpinned"))),
)


@pytest.mark.parametrize("protection", [Protection.NONE, Protection.VERIFIER])
@settings(max_examples=30, deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=25))
def test_equal_length_bursts_leave_the_same_world_on_every_path(
    protection: Protection, steps: list[tuple[str, object]]
) -> None:
    compiled_accelerator(pmd.enabled(), pmd.status())
    compiled = run(rig_in(protection), True, steps)
    numpy = run(rig_in(protection), False, steps)
    with pytest.MonkeyPatch.context() as m:
        m.setattr("tests.conftest.RxQueue", GeneralRx)
        general = run(rig_in(protection), False, steps)
    assert compiled == numpy == general


def test_a_received_batch_is_never_overwritten_by_later_bursts() -> None:
    compiled_accelerator(pmd.enabled(), pmd.status())
    rig = make_rig()
    tx, rx = rig.tx_queue(RING), rig.rx_queue(RING)
    kept: list[tuple[FrameBatch, bytes]] = []
    seq = 0
    for _ in range(120):  # ~3,700 frames of 64 bytes: several arenas of RING * 2048 bytes
        frames = [seq_frame(seq + i) for i in range(RING - 1)]
        seq += len(frames)
        assert tx.tx_burst(FrameBatch.from_frames(frames)) == len(frames)
        got = rx.rx_burst()
        assert list(got) == frames
        kept.append((got, got.data.tobytes()))
    assert all(batch.data.tobytes() == raw for batch, raw in kept)
    assert rx.stats.frames == seq and np.array_equal(kept[-1][0].lengths, np.full(RING - 1, 64))


@pytest.mark.parametrize("compiled", [True, False])
def test_a_batch_built_from_a_matrix_is_sent_as_the_same_frames_listed_one_by_one(compiled: bool) -> None:
    """``FrameBatch.known_same`` (set by from_matrix) spares the numpy post its pass over the lengths, nothing else."""
    worlds = []
    for as_matrix in (True, False):
        rig = rig_in(Protection.VERIFIER)
        tx, rx = rig.tx_queue(RING), rig.rx_queue(RING)
        if not compiled:
            tx.fast = rx.fast = None
        got: list[bytes] = []
        for burst in range(12):
            frames = [seq_frame(burst * 40 + i, 96) for i in range(40)]  # more than fit: back-pressure too
            matrix = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(len(frames), 96)
            batch = FrameBatch.from_matrix(matrix) if as_matrix else FrameBatch.from_frames(frames)
            assert (batch.known_same == 96) is as_matrix
            tx.tx_burst(batch)
            got.extend(rx.rx_burst(burst + 5))
        worlds.append((got, tx.stats, rx.stats, tx.slot_buf.tobytes(), rig.memory.data.tobytes()))
    assert worlds[0] == worlds[1]
