"""The emulated virtio-net device: its register window, and chains walked from the tenant's own table (mode none).

In protection ``none`` the device's queues point at the tenant's areas, so
these tests drive the device's own walker (device/virtq.py) directly: a TX
chain gathered over several buffers and through an indirect table, an RX
frame scattered over several writable buffers, and the hostile graphs that
make it mark itself DEVICE_NEEDS_RESET instead of looping.
"""

from __future__ import annotations

import numpy as np
import pytest

from device.virtio_net import VirtioNet
from driver.tenant.virtio_queue import VirtioRxQueue
from ring import virtio as V
from ring.memory import PhysicalMemory
from tests.conftest import seq_frame
from tests.virtio_rig import RawVirtq, build, wire_log

NEXT, WRITE, INDIRECT = V.VIRTQ_DESC_F_NEXT, V.VIRTQ_DESC_F_WRITE, V.VIRTQ_DESC_F_INDIRECT
HDR = bytes(V.VIRTIO_NET_HDR_SIZE)


def test_register_window_identifies_a_virtio_net_device() -> None:
    dev = VirtioNet("n", PhysicalMemory(1 << 20, 1 << 16), bytes.fromhex("020000000001"))
    assert dev.read32(V.MAGIC_VALUE) == V.MMIO_MAGIC and dev.read32(V.VERSION) == 2
    assert dev.read32(V.DEVICE_ID) == V.VIRTIO_ID_NET
    dev.write32(V.DEVICE_FEATURES_SEL, 1)
    assert dev.read32(V.DEVICE_FEATURES_REG) == 1  # VIRTIO_F_VERSION_1 is bit 32
    mac = dev.read32(V.CONFIG_MAC).to_bytes(4, "little") + dev.read32(V.CONFIG_MAC + 4).to_bytes(4, "little")[:2]
    assert mac == bytes.fromhex("020000000001")
    assert dev.read32(0x1FF) == 0xFFFF_FFFF and dev.counters.bad_register_access == 1  # unaligned


def test_features_it_did_not_offer_leave_features_ok_clear() -> None:
    dev = VirtioNet("n", PhysicalMemory(1 << 20, 1 << 16), bytes(6))
    dev.write32(V.DRIVER_FEATURES_SEL, 0)
    dev.write32(V.DRIVER_FEATURES_REG, 1 << V.VIRTIO_NET_F_MRG_RXBUF)
    dev.write32(V.STATUS, V.STATUS_ACKNOWLEDGE | V.STATUS_DRIVER | V.STATUS_FEATURES_OK)
    assert not dev.read32(V.STATUS) & V.STATUS_FEATURES_OK


@pytest.mark.parametrize("num", [0, 3, 2048])
def test_queue_num_must_be_a_power_of_two_up_to_the_maximum(num: int) -> None:
    dev = VirtioNet("n", PhysicalMemory(1 << 20, 1 << 16), bytes(6))
    dev.write32(V.QUEUE_NUM, num)
    assert dev.counters.bad_queue_num == 1 and dev.queues[0].num == 0


def test_tx_gathers_a_chain_strips_the_header_and_returns_it_used() -> None:
    with build("none") as world:
        wire = wire_log(world)
        alice = world.tenants["alice"]
        VirtioRxQueue(world.tenants["bob"], "nic1", 8)
        tx = RawVirtq(alice, "nic0", V.TRANSMITQ)
        frame = seq_frame(7, 100)
        tx.fill(0, HDR + frame[:20])  # header and the first 20 bytes in one buffer
        tx.fill(1, frame[20:60])
        tx.fill(2, frame[60:])
        tx.set(0, 12 + 20, NEXT, 1)
        tx.set(1, 40, NEXT, 2)
        tx.set(2, 40)
        tx.post(0)
        assert wire == [frame]
        heads, lens = tx.take_used()
        assert heads.tolist() == [0] and lens.tolist() == [0]


def test_tx_follows_an_indirect_table() -> None:
    with build("none") as world:
        wire = wire_log(world)
        VirtioRxQueue(world.tenants["bob"], "nic1", 8)
        tx = RawVirtq(world.tenants["alice"], "nic0", V.TRANSMITQ)
        frame = seq_frame(9, 80)
        tx.fill(1, HDR)
        tx.fill(2, frame)
        addr, nbytes = tx.table_at(3, [(tx.buf(1), 12, NEXT, 1), (tx.buf(2), len(frame), 0, 0)])
        tx.set(0, nbytes, INDIRECT, addr=addr)
        tx.post(0)
        assert wire == [frame]


def test_rx_scatters_header_and_frame_over_writable_buffers() -> None:
    with build("none") as world:
        bob = world.tenants["bob"]
        rx = RawVirtq(bob, "nic1", V.RECEIVEQ)
        rx.set(0, 40, WRITE | NEXT, 1)
        rx.set(1, 2048, WRITE)
        rx.post(0)
        tx = RawVirtq(world.tenants["alice"], "nic0", V.TRANSMITQ)
        frame = seq_frame(3, 128)
        tx.fill(0, HDR + frame)
        tx.set(0, 12 + len(frame))
        tx.post(0)
        heads, lens = rx.take_used()
        assert heads.tolist() == [0] and lens.tolist() == [12 + len(frame)]
        got = bytes(rx.pool.memory[:40]) + bytes(rx.pool.memory[2048 : 2048 + len(frame) + 12 - 40])
        header = np.frombuffer(got[:12], dtype=V.VIRTIO_NET_HDR)[0]
        assert int(header["num_buffers"]) == 1 and got[12:] == frame


def test_rx_frame_longer_than_its_chain_is_dropped_and_one_without_a_chain_missed() -> None:
    with build("none") as world:
        rx = RawVirtq(world.tenants["bob"], "nic1", V.RECEIVEQ)
        rx.set(0, 50, WRITE)
        rx.post(0)
        tx = RawVirtq(world.tenants["alice"], "nic0", V.TRANSMITQ)
        tx.fill(0, HDR + seq_frame(1, 64))
        tx.set(0, 12 + 64)
        tx.post(0)
        dev = world.nics["nic1"]
        assert dev.counters.rx_too_big == 1 and rx.ready() == 0
        rx.set(0, 2048, WRITE)  # the chain was not taken: the driver may still change it
        tx.post(0)
        tx.post(0)
        assert rx.ready() == 1 and dev.missed == 1


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([(0, 12, NEXT, 8)], "Desc next is 8"),  # next == queue size
        ([(0, 12, NEXT, 1), (1, 12, NEXT, 0)], "Looped descriptor"),
    ],
)
def test_a_chain_the_device_cannot_follow_marks_it_broken(rows: list[tuple[int, int, int, int]], message: str) -> None:
    with build("none") as world:
        wire = wire_log(world)
        tx = RawVirtq(world.tenants["alice"], "nic0", V.TRANSMITQ)
        for i, length, flags, nxt in rows:
            tx.set(i, length, flags, nxt)
        tx.post(0)
        dev = world.nics["nic0"]
        assert dev.broken_reason == message and dev.read32(V.STATUS) & V.STATUS_DEVICE_NEEDS_RESET
        assert wire == [] and tx.ready() == 0
        tx.post(0)  # a broken device takes nothing more
        assert dev.counters.notify_not_ready == 1


def test_nested_indirect_breaks_the_device() -> None:
    with build("none") as world:
        tx = RawVirtq(world.tenants["alice"], "nic0", V.TRANSMITQ)
        inner, inner_len = tx.table_at(4, [(tx.buf(1), 12, 0, 0)])
        addr, nbytes = tx.table_at(3, [(inner, inner_len, INDIRECT, 0)])
        tx.set(0, nbytes, INDIRECT, addr=addr)
        tx.post(0)
        assert world.nics["nic0"].broken_reason == "Nested indirect descriptor"


def test_an_avail_jump_past_the_queue_size_breaks_the_device() -> None:
    with build("none") as world:
        tx = RawVirtq(world.tenants["alice"], "nic0", V.TRANSMITQ)
        tx.avail_idx[0] = 9  # queue size 8
        tx.doorbell.write32(V.QUEUE_NOTIFY, V.TRANSMITQ)
        assert world.nics["nic0"].broken_reason == "Guest moved avail index from 0 to 9"
