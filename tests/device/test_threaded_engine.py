"""The threaded engine: a poller thread runs the devices; the frames are the same as inline."""

from __future__ import annotations

import time

from device.e1000 import RX_FIFO_BYTES, EngineMode
from device.poller import DevicePoller
from driver.tenant.rxq import RxQueue
from ring import regs
from tests.conftest import Rig, batch, make_rig, seq_frame, seq_of


def receive(rxq: RxQueue, count: int, timeout_s: float = 5.0) -> list[bytes]:
    """Poll rx_burst until ``count`` frames came or the time is up (bounded)."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += list(rxq.rx_burst())
        if len(got) < count:
            time.sleep(1e-4)
    return got


def bursts() -> list[list[bytes]]:
    sizes = [60, 1514, 128, 700, 61, 1000]
    return [[seq_frame(10 * b + i, sizes[(b + i) % len(sizes)]) for i in range(1 + b % 7)] for b in range(12)]


def run(rig: Rig, poller: DevicePoller | None) -> tuple[list[bytes], list[bytes]]:
    txq, rxq = rig.tx_queue(size=32), rig.rx_queue(size=64)
    got: list[bytes] = []
    for frames in bursts():
        assert txq.tx_burst(batch(frames)) == len(frames)
        if poller is not None:
            assert poller.drain()
        got += receive(rxq, len(frames))
    return got, rig.wire


def test_threaded_delivers_what_inline_delivers(threaded_rig: Rig) -> None:
    inline_got, inline_wire = run(make_rig(), None)
    with DevicePoller([threaded_rig.nic0, threaded_rig.nic1]) as poller:
        threaded_got, threaded_wire = run(threaded_rig, poller)
    expected = [f for frames in bursts() for f in frames]
    assert inline_got == expected
    assert threaded_got == expected
    assert threaded_wire == inline_wire
    assert poller.rounds > 0
    assert threaded_rig.nic1.read32(regs.MPC) == 0


def test_nothing_moves_until_the_poller_runs(threaded_rig: Rig) -> None:
    txq, rxq = threaded_rig.tx_queue(size=16), threaded_rig.rx_queue(size=16)
    frames = [seq_frame(i) for i in range(5)]
    assert txq.tx_burst(batch(frames)) == 5
    nic0 = threaded_rig.nic0
    assert nic0.reg(regs.TDT) == 5 and nic0.reg(regs.TDH) == 0  # the doorbell only stored the tail
    assert nic0.busy() and threaded_rig.wire == []
    assert len(rxq.rx_burst()) == 0
    with DevicePoller([nic0, threaded_rig.nic1]) as poller:
        assert poller.drain()
        got = receive(rxq, 5)
    assert got == frames
    assert not nic0.busy()
    assert txq.reap() == 5


def test_manual_poll_and_fifo_overflow(threaded_rig: Rig) -> None:
    nic0, nic1 = threaded_rig.nic0, threaded_rig.nic1
    txq, rxq = threaded_rig.tx_queue(size=64), threaded_rig.rx_queue(size=64)
    frames = [seq_frame(i, 1514) for i in range(RX_FIFO_BYTES // 1514 + 1)]  # one burst larger than the RX FIFO
    assert txq.tx_burst(batch(frames)) == len(frames)
    assert nic0.poll() == len(frames)  # TX ran; the whole burst overflowed nic1's packet buffer
    assert nic1.read32(regs.MPC) == len(frames)
    assert nic1.read32(regs.ICR) & regs.ICR_RXO
    assert nic1.poll() == 0
    small = [seq_frame(100 + i) for i in range(3)]
    assert txq.tx_burst(batch(small)) == 3
    nic0.poll()
    assert nic1.busy()
    assert nic1.poll() == 3
    assert [seq_of(f) for f in rxq.rx_burst()] == [100, 101, 102]


def test_poller_stops_cleanly() -> None:
    rig = make_rig(EngineMode.THREADED)
    poller = DevicePoller([rig.nic0, rig.nic1])
    poller.start()
    assert poller.drain(timeout_s=1.0)
    poller.stop()
    assert not poller._thread.is_alive()
