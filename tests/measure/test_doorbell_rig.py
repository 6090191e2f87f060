"""The rig times only what it says: the tail write, with the device held (or not), every batch sent and done."""

from __future__ import annotations

import pytest

from measure.doorbell_rig import MAX_BATCH, DoorbellRig, ring_size
from ring import regs
from verifier.modes.protection import Protection


def test_ring_holds_two_of_the_largest_batch_within_e1000_limits() -> None:
    assert ring_size(4096) == 8192
    assert ring_size(1) == 8
    assert ring_size(MAX_BATCH) * 16 <= 0xF_FF80  # TDLEN's bits 19:7
    for n in (1, 3, 100, 4096, MAX_BATCH):
        size = ring_size(n)
        assert size >= 2 * n and size % 8 == 0
    with pytest.raises(ValueError):
        ring_size(MAX_BATCH + 1)


@pytest.mark.parametrize("protection", list(Protection))
def test_the_device_sends_nothing_during_the_timed_write_and_everything_after(protection: Protection) -> None:
    with DoorbellRig(protection, 64) as rig:
        port = rig.device.port
        for n in (1, 5, 64, 64, 63, 64):  # the ring (128 slots) wraps: fillers keep each batch in one piece
            start, new_tail = rig.prepare(n)
            before = port.sent_frames  # a filler batch went out in prepare
            rig.bus.write32(rig.tail_offset, new_tail)  # what time_one times
            assert port.sent_frames == before, "the transmitter must be held while the clock runs"
            assert not rig.device.read32(regs.TCTL) & regs.TCTL_EN
            rig.finish(start, n)
            assert port.sent_frames == before + n
        for n in (1, 64, 7):
            sent = port.sent_frames
            assert rig.time_one(n) > 0
            assert port.sent_frames - sent >= n  # n, plus a filler batch when the ring's end came first


@pytest.mark.parametrize("protection", [Protection.NONE, Protection.VERIFIER])
def test_with_the_device_the_frames_are_sent_inside_the_write(protection: Protection) -> None:
    with DoorbellRig(protection, 16, with_device=True) as rig:
        port = rig.device.port
        _start, new_tail = rig.prepare(16)
        rig.bus.write32(rig.tail_offset, new_tail)
        assert port.sent_frames == 16
        assert rig.device.read32(regs.TCTL) & regs.TCTL_EN


def test_a_batch_outside_the_rig_is_refused() -> None:
    with DoorbellRig(Protection.NONE, 8) as rig, pytest.raises(ValueError, match="between 1 and 8"):
        rig.time_one(9)
