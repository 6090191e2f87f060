"""The kernel in front of a virtio NIC: open, the trapped notify, the snapshot the device walks, audit records.

Mode ``verifier``: the device's queues point at the kernel's shadow
virtqueue; a refused chain is completed with VIRTQ_USED_LEN_REFUSED and one
audit record naming the descriptor that broke it; the device walks only the
kernel's copy, so a ``next`` or an address rewritten after the notify never
reaches it (TOCTOU for graphs).  Mode ``none`` is the contrast: the same
hostile chain moves kernel memory onto the wire.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from driver.tenant.virtio_queue import VirtioRxQueue, VirtioTxQueue
from ring import virtio as V
from ring.frames import FrameBatch
from ring.memory import CANARY_TAG, PAGE_SIZE
from tests.conftest import seq_frame
from tests.virtio_rig import RawVirtq, build, wire_log
from verifier.kernel import KernelError
from verifier.modes.protection import Protection
from world import scenario
from world.virtio import virtio_world

NEXT, WRITE, INDIRECT = V.VIRTQ_DESC_F_NEXT, V.VIRTQ_DESC_F_WRITE, V.VIRTQ_DESC_F_INDIRECT
HDR = bytes(V.VIRTIO_NET_HDR_SIZE)
KERNEL_ADDR = 5 * PAGE_SIZE  # inside the kernel's canary-filled region


def records(world: object) -> list[dict[str, object]]:
    audit = world.kernel.audit  # type: ignore[attr-defined]
    return [r for r in audit.since(0) if isinstance(r, dict)]


@pytest.mark.parametrize("protection", ["iommu", "unsafe-inplace"])
def test_virtio_nics_refuse_the_modes_they_do_not_support(protection: str) -> None:
    scen = dataclasses.replace(scenario.load(), protection=Protection(protection))
    with pytest.raises(KernelError, match="supports protection none and verifier"):
        virtio_world(scen, pcap=False)


def test_open_virtqueue_refusals() -> None:
    with build("verifier") as world:
        alice, bob = world.tenants["alice"], world.tenants["bob"]
        region = alice.alloc_dma(V.VirtqLayout.of(8).nbytes)
        with pytest.raises(KernelError, match="power of 2"):
            alice.open_virtqueue("nic0", V.TRANSMITQ, region, 6)
        with pytest.raises(KernelError, match="not 2"):
            alice.open_virtqueue("nic0", 2, region, 8)
        with pytest.raises(KernelError, match="virtqueues"):
            alice.open_tx_queue("nic0", 0, region, 8)
        with pytest.raises(KernelError, match="too small"):
            alice.open_virtqueue("nic0", V.TRANSMITQ, region, 16)
        alice.open_virtqueue("nic0", V.TRANSMITQ, region, 8)
        with pytest.raises(KernelError, match="belongs to tenant"):
            bob.open_virtqueue("nic0", V.TRANSMITQ, bob.alloc_dma(PAGE_SIZE), 8)
        with pytest.raises(KernelError, match="virtqueue 1 of nic0"):
            alice.free_dma(region)


def test_only_a_notify_of_ones_own_queue_reaches_the_kernel() -> None:
    with build("verifier") as world:
        alice, bob = world.tenants["alice"], world.tenants["bob"]
        RawVirtq(alice, "nic0", V.TRANSMITQ)
        dev = world.nics["nic0"]
        before = dev.read32(V.STATUS)
        alice.map_registers("nic0").write32(V.STATUS, 0)  # a reset of the device: refused
        bob.map_registers("nic0").write32(V.QUEUE_NOTIFY, V.TRANSMITQ)  # someone else's queue
        assert dev.read32(V.STATUS) == before
        got = [(r["reason"], r["detail"]["register"]) for r in records(world)]  # type: ignore[index]
        assert got == [("REG_NOT_DOORBELL", "STATUS"), ("REG_NOT_OWNER", "QUEUE_NOTIFY")]
        assert alice.map_registers("nic0").read32(V.QUEUE_DESC_LOW) == 0  # the shadow's address is not shown


def test_a_refused_chain_is_completed_without_dma_and_audited_once() -> None:
    with build("verifier") as world:
        wire = wire_log(world)
        VirtioRxQueue(world.tenants["bob"], "nic1", 8)
        tx = RawVirtq(world.tenants["alice"], "nic0", V.TRANSMITQ)
        tx.fill(0, HDR + seq_frame(1, 64))
        tx.set(0, 12 + 64)  # a good chain
        tx.set(1, 12, NEXT, 2)
        tx.set(2, 64, addr=KERNEL_ADDR)  # reads the kernel's memory
        tx.post(0, 1)
        assert wire == [seq_frame(1, 64)]
        heads, lens = tx.take_used()
        assert dict(zip(heads.tolist(), lens.tolist(), strict=True)) == {0: 0, 1: V.VIRTQ_USED_LEN_REFUSED}
        (rec,) = records(world)
        assert rec["reason"] == "ADDR_NOT_PINNED" and rec["ring_index"] == 1 and rec["kind"] == "tx"
        detail = rec["detail"]
        assert isinstance(detail, dict)
        assert detail["descriptor"] == 2 and detail["table"] == "descriptors" and detail["head"] == 1
        assert detail["first_bad_byte"] == f"{KERNEL_ADDR:#x}" and detail["frame_owner"] == "kernel"
        assert rec["desc"] == {"addr": KERNEL_ADDR, "len": 64, "flags": 0, "next": 0}  # the 16 bytes as judged
        assert rec["desc_hex"] == tx.desc[2].tobytes().hex()


def test_the_same_chain_in_mode_none_leaks_kernel_memory() -> None:
    with build("none") as world:
        wire = wire_log(world)
        VirtioRxQueue(world.tenants["bob"], "nic1", 8)
        tx = RawVirtq(world.tenants["alice"], "nic0", V.TRANSMITQ)
        tx.set(1, 12, NEXT, 2)
        tx.set(2, 64, addr=KERNEL_ADDR)
        tx.post(1)
        assert len(wire) == 1 and CANARY_TAG in wire[0]


def test_an_indirect_refusal_names_the_table_entry() -> None:
    with build("verifier") as world:
        tx = RawVirtq(world.tenants["alice"], "nic0", V.TRANSMITQ)
        addr, nbytes = tx.table_at(3, [(tx.buf(1), 12, NEXT, 1), (tx.buf(2), 64, NEXT, 5)])  # next beyond 2 entries
        tx.set(0, nbytes, INDIRECT, addr=addr)
        tx.post(0)
        (rec,) = records(world)
        detail = rec["detail"]
        assert isinstance(detail, dict)
        assert rec["reason"] == "VIRTQ_NEXT_BEYOND" and detail["table"] == "indirect" and detail["descriptor"] == 1


def test_avail_may_move_by_the_queue_size_but_not_one_more() -> None:
    with build("verifier") as world:
        wire = wire_log(world)
        VirtioRxQueue(world.tenants["bob"], "nic1", 8)
        tx = RawVirtq(world.tenants["alice"], "nic0", V.TRANSMITQ)
        for i in range(8):
            tx.fill(i, HDR + seq_frame(i, 64))
            tx.set(i, 12 + 64)
        tx.post(*range(8))  # a jump of exactly 8
        assert len(wire) == 8 and tx.ready() == 8
        tx.take_used()
        tx.avail_ring[:] = np.arange(8)
        tx.avail = (tx.avail + 9) & 0xFFFF  # a jump of 9
        tx.avail_idx[0] = tx.avail
        tx.doorbell.write32(V.QUEUE_NOTIFY, V.TRANSMITQ)
        assert len(wire) == 8 and tx.ready() == 0
        (rec,) = records(world)
        assert rec["reason"] == "VIRTQ_AVAIL_JUMP"


def test_the_device_follows_the_kernels_copy_not_a_next_rewritten_after_the_notify() -> None:
    with build("verifier") as world:
        kernel_before = bytes(world.memory.data[KERNEL_ADDR : KERNEL_ADDR + 2048])
        rx = RawVirtq(world.tenants["bob"], "nic1", V.RECEIVEQ)
        rx.set(0, 40, WRITE | NEXT, 1)
        rx.set(1, 2048, WRITE)
        rx.post(0)  # checked and copied now; the device waits for a frame
        rx.set(0, 40, WRITE | NEXT, 2)  # the race: next now names a descriptor ...
        rx.set(2, 2048, WRITE, addr=KERNEL_ADDR)  # ... whose buffer is the kernel's memory
        tx = RawVirtq(world.tenants["alice"], "nic0", V.TRANSMITQ)
        frame = seq_frame(5, 200)
        tx.fill(0, HDR + frame)
        tx.set(0, 12 + len(frame))
        tx.post(0)
        heads, lens = rx.take_used()
        assert heads.tolist() == [0] and lens.tolist() == [12 + len(frame)]
        assert bytes(rx.pool.memory[2048 : 2048 + len(frame) + 12 - 40]) == (HDR + frame)[40:]  # buffer 1, not 2
        assert bytes(world.memory.data[KERNEL_ADDR : KERNEL_ADDR + 2048]) == kernel_before
        assert records(world) == []


def test_an_indirect_table_rewritten_after_the_notify_is_not_seen() -> None:
    with build("verifier") as world:
        rx = RawVirtq(world.tenants["bob"], "nic1", V.RECEIVEQ)
        addr, nbytes = rx.table_at(3, [(rx.buf(1), 2048, WRITE, 0)])
        rx.set(0, nbytes, INDIRECT, addr=addr)
        rx.post(0)
        rx.table_at(3, [(KERNEL_ADDR, 2048, WRITE, 0)])  # the table rewritten in place
        kernel_before = bytes(world.memory.data[KERNEL_ADDR : KERNEL_ADDR + 2048])
        tx = RawVirtq(world.tenants["alice"], "nic0", V.TRANSMITQ)
        frame = seq_frame(6, 64)
        tx.fill(0, HDR + frame)
        tx.set(0, 12 + len(frame))
        tx.post(0)
        assert bytes(rx.pool.memory[2048 + 12 : 2048 + 12 + len(frame)]) == frame
        assert bytes(world.memory.data[KERNEL_ADDR : KERNEL_ADDR + 2048]) == kernel_before


def test_pins_outlive_the_chains_the_device_holds() -> None:
    with build("verifier") as world:
        bob = world.tenants["bob"]
        rx = VirtioRxQueue(bob, "nic1", 8)  # eight chains in the shadow, waiting for frames
        assert bob.unpin(rx.pool.pin) == "deferred"
        assert [r["reason"] for r in records(world)] == ["PIN_IN_FLIGHT"]


def test_pingpong_bursts_through_the_shadow() -> None:
    with build("verifier") as world:
        wire = wire_log(world)
        tx = VirtioTxQueue(world.tenants["alice"], "nic0", 8)
        rx = VirtioRxQueue(world.tenants["bob"], "nic1", 8)
        sent = 0
        for _ in range(5):  # more frames than the queues hold: completions recycle both shadows
            sent += tx.tx_burst(FrameBatch.from_frames([seq_frame(sent + i, 64) for i in range(6)]))
            got = rx.rx_burst()
            assert len(got) == 6
        assert sent == 30 and len(wire) == 30 and wire == [seq_frame(i, 64) for i in range(30)]
        assert records(world) == []


def test_a_chain_waiting_for_shadow_room_is_published_later_from_the_kernels_copy() -> None:
    with build("verifier") as world:
        rx = RawVirtq(world.tenants["bob"], "nic1", V.RECEIVEQ)
        addr, nbytes = rx.table_at(
            7, [(rx.buf(j), 256, WRITE | NEXT, j + 1) for j in range(7)] + [(rx.buf(7), 16, WRITE, 0)]
        )
        rx.set(0, nbytes, INDIRECT, addr=addr)  # eight buffers: the whole shadow table
        rx.set(1, 2048, WRITE)
        rx.post(0, 1)  # chain 1 passes but waits: no shadow slot is free
        rx.set(1, 2048, WRITE, addr=KERNEL_ADDR)  # rewritten while it waits
        kernel_before = bytes(world.memory.data[KERNEL_ADDR : KERNEL_ADDR + 2048])
        tx = RawVirtq(world.tenants["alice"], "nic0", V.TRANSMITQ)
        for seq in (1, 2):
            tx.fill(seq, HDR + seq_frame(seq, 64))
            tx.set(seq, 12 + 64)
            tx.post(seq)  # the first fills chain 0 and frees the shadow; the second lands in chain 1
        heads, lens = rx.take_used()
        assert heads.tolist() == [0, 1] and lens.tolist() == [76, 76]
        assert bytes(rx.pool.memory[2048 + 12 : 2048 + 76]) == seq_frame(2, 64)  # buffer 1, as checked
        assert bytes(world.memory.data[KERNEL_ADDR : KERNEL_ADDR + 2048]) == kernel_before


def test_no_more_chains_than_the_queue_holds_may_be_outstanding() -> None:
    with build("verifier") as world:
        rx = VirtioRxQueue(world.tenants["bob"], "nic1", 8)  # all eight chains outstanding
        tx = VirtioTxQueue(world.tenants["alice"], "nic0", 8)
        assert tx.tx_burst(FrameBatch.from_frames([seq_frame(0, 64)])) == 1
        assert len(rx.rx_burst()) == 1  # one came back and is posted again: eight outstanding, no refusal
        assert records(world) == []
        rx.make_available(np.array([0]))  # a ninth: the used ring could not take its completion
        (rec,) = records(world)
        detail = rec["detail"]
        assert isinstance(detail, dict)
        assert rec["reason"] == "VIRTQ_AVAIL_JUMP" and detail["outstanding"] == 8
