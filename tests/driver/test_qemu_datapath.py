"""The sandbox's kernel and user-space queues driving QEMU's e1000: TX, RX, and a hostile descriptor.

The frames are read and injected on the far end of the NIC's UDP cable
(tests/driver/qemu_rig.py): what QEMU put on the wire, byte for byte, and
what its DMA put into the tenant's buffers, which are guest RAM.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from ring import regs
from ring.descriptors import DESC_SIZE, TX_DESC, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS, TXD_STAT_DD, TXD_STAT_REFUSED
from ring.frames import FrameBatch
from ring.syscalls import DEVICE_READ
from tests.conftest import MAC0, MAC1, frame, seq_frame
from tests.driver.qemu_rig import qemu_rig
from verifier.audit.memory import MemoryAudit

pytestmark = pytest.mark.privileged  # QEMU: fails under CI=true when missing (tests/needs.py)

GOOD = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS
SIZES = (60, 61, 128, 1000, 1514)  # bytes without FCS; QEMU does not pad on TX, so none is below 60
DEADLINE_S = 5.0


def test_tx_through_the_verifier_leaves_qemu_byte_exact() -> None:
    with qemu_rig() as rig:
        kernel = rig.attach_kernel()
        tx = TxQueue(kernel.spawn("alice"), "nic0", size=64)
        frames = [seq_frame(i, size) for i, size in enumerate(SIZES)]
        assert tx.tx_burst(FrameBatch.from_frames(frames)) == len(frames)
        assert rig.wire(count=len(frames)) == frames  # raw Ethernet, no FCS: what QEMU's dgram netdev carries
        deadline = time.monotonic() + DEADLINE_S
        while tx.stats.completed < len(frames) and time.monotonic() < deadline:
            tx.reap()  # DD reaches the user ring through the interrupt handler (the ICR poller)
        assert tx.stats.completed == len(frames) and tx.stats.refused == 0
        assert rig.nic().read32(regs.TDH) == len(frames)  # the device's head, on the kernel's shadow ring


def test_rx_lands_in_the_tenant_buffers_byte_exact() -> None:
    with qemu_rig() as rig:
        kernel = rig.attach_kernel()
        rx = RxQueue(kernel.spawn("bob"), "nic0", size=64)
        rig.nic().wait_rx_ready()  # QEMU refuses frames for 1 s after RCTL is written
        frames = [
            frame(bytes((i + j) & 0xFF for j in range(size - 14)), dst=MAC0, src=MAC1) for i, size in enumerate(SIZES)
        ]
        rig.inject(frames)
        got: list[bytes] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < len(frames) and time.monotonic() < deadline:
            got += list(rx.rx_burst())
        assert got == frames
        # the bytes are where the descriptors said, in guest RAM = the sandbox's memory
        first = int(rx.pool.bus_addr[0])
        assert rig.memory.view(first, len(frames[0])).tobytes() == frames[0]
        assert rig.nic().read32(regs.RDH) == len(frames)


def test_the_verifier_refuses_a_hostile_descriptor_before_qemus_doorbell() -> None:
    """A TX descriptor pointing at kernel memory never reaches QEMU: its TDH does not move, nothing leaves."""
    with qemu_rig() as rig:
        kernel = rig.attach_kernel()
        mallory = kernel.spawn("mallory")
        size = 16
        region = mallory.alloc_dma(size * DESC_SIZE)
        queue = mallory.open_tx_queue("nic0", 0, region, size)
        ring = region.view.view(TX_DESC)
        ring[0] = (0x1000, 64, 0, GOOD, 0, 0, 0)  # a canary-filled kernel frame
        queue.doorbell.write32(queue.tail_offset, 1)
        assert ring["status"][0] == TXD_STAT_DD | TXD_STAT_REFUSED
        audit = kernel.audit
        assert isinstance(audit, MemoryAudit)
        assert [r["reason"] for r in audit.records] == ["ADDR_NOT_PINNED"]
        assert rig.nic().read32(regs.TDT) == 0 and rig.nic().read32(regs.TDH) == 0
        assert rig.quiet_wire()
        # the device is alive and sees the next, honest descriptor only
        buf = mallory.alloc_dma(4096)
        pin = mallory.pin(buf.vaddr, 4096, DEVICE_READ)
        honest = seq_frame(7)
        buf.view[: len(honest)] = np.frombuffer(honest, dtype=np.uint8)
        ring[1] = (pin.ranges[0][0], len(honest), 0, GOOD, 0, 0, 0)
        queue.doorbell.write32(queue.tail_offset, 2)
        assert rig.wire() == [honest]
        assert rig.nic().read32(regs.TDH) == 1  # one descriptor in the shadow ring: the honest one
