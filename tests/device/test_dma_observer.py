"""Invariant 1, one DMA choke point: every byte the devices move is shown to the observer first."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from device.dma import READ, WRITE, DmaBatch
from ring import indices, regs
from ring.descriptors import DESC_SIZE
from tests.conftest import Rig, batch, seq_frame
from tests.device.raw import DmaLog, watch


class ByteRecorder(DmaLog):
    """A DmaLog that also copies what each allowed read returns, at the moment it is observed."""

    def __init__(self, rig: Rig) -> None:
        super().__init__(rig.memory)
        self.read_bytes: dict[str, list[bytes]] = {}

    def __call__(self, b: DmaBatch) -> None:
        super().__call__(b)
        if b.direction == READ:
            chunks = self.read_bytes.setdefault(b.purpose, [])
            for phys, length, ok in zip(b.phys.tolist(), b.lengths.tolist(), b.allowed.tolist(), strict=True):
                if ok:
                    chunks.append(self.memory.data[phys : phys + length].tobytes())


def written_mask(log: DmaLog, size: int) -> npt.NDArray[np.bool_]:
    mask = np.zeros(size, dtype=bool)
    for b in log.batches:
        if b.direction == WRITE:
            for phys, length, ok in zip(b.phys.tolist(), b.lengths.tolist(), b.allowed.tolist(), strict=True):
                if ok:
                    mask[phys : phys + length] = True
    return mask


def test_every_device_write_was_observed(rig: Rig) -> None:
    rig.nic1.write32(regs.RCTL, rig.nic1.read32(regs.RCTL) | regs.RCTL_LPE)
    txq, rxq = rig.tx_queue(size=32), rig.rx_queue(size=32)
    sizes = [60, 1514, 3000, 200, 61, 2048, 2049, 100]
    frames = [seq_frame(i, n) for i, n in enumerate(sizes)]
    # the tenant fills the ring while the transmitter is paused; then only the devices touch memory
    rig.nic0.write32(regs.TCTL, regs.TCTL_PSP)
    assert txq.tx_burst(batch(frames)) == len(frames)
    before = rig.memory.data.copy()
    log = ByteRecorder(rig)
    for dev in (rig.nic0, rig.nic1):
        dev.dma.observers.append(log)
    rig.nic0.write32(regs.TCTL, regs.TCTL_EN | regs.TCTL_PSP)
    changed = rig.memory.data != before
    assert changed.any()
    assert not (changed & ~written_mask(log, rig.memory.size)).any()
    assert {b.purpose for b in log.batches} == {"tx-desc", "tx-data", "tx-wb", "rx-desc", "rx-data", "rx-wb"}
    log.assert_bounded()
    # the bytes on the wire are exactly the bytes the observer saw read as TX data
    assert b"".join(rig.wire) == b"".join(log.read_bytes["tx-data"])
    # TX descriptors were read for exactly the slots the tenant posted
    ndesc = txq.tail
    assert ndesc == len(frames) + 2  # 3000 and 2049 bytes take two buffers each
    assert log.ranges("tx-desc") == [(txq.region.bus, ndesc * DESC_SIZE)]
    # the frames bob gets are the bytes the observer saw written as RX data
    got = rxq.rx_burst()
    assert list(got) == frames
    rx_data = [
        rig.memory.data[p : p + n].tobytes()
        for b in log.of("rx-data")
        for p, n in zip(b.phys.tolist(), b.lengths.tolist(), strict=True)
    ]
    assert b"".join(rx_data) == b"".join(frames)


def test_observer_sees_every_ring_slot_over_wrap(rig: Rig) -> None:
    txq, rxq = rig.tx_queue(size=8), rig.rx_queue(size=8)
    log = watch(rig.nic0, rig.nic1)
    tx_ring = txq.region.bus
    rx_ring = rxq.region.bus
    seq = 0
    for k in (3, 5, 7, 2, 6, 4):
        before = rig.memory.data.copy()
        tail = txq.tail
        mark = len(log.batches)
        assert txq.tx_burst(batch([seq_frame(seq + i) for i in range(k)])) == k
        seq += k
        new = log.batches[mark:]
        # the TX descriptor fetch covers exactly the k slots from the old tail, wrapping into two runs
        fetched = [
            (p, n)
            for b in new
            if b.purpose == "tx-desc"
            for p, n in zip(b.phys.tolist(), b.lengths.tolist(), strict=True)
        ]
        expected = indices.slots(tail, k, 8)
        covered = sorted((p - tx_ring) // DESC_SIZE + j for p, n in fetched for j in range(n // DESC_SIZE))
        assert covered == sorted(expected.tolist())
        # only observed writes, the tenant's own ring and its buffers changed
        changed = rig.memory.data != before
        tenant = np.zeros(rig.memory.size, dtype=bool)
        for region in (txq.region, txq.pool.region):
            tenant[region.bus : region.bus + region.size] = True
        assert not (changed & ~tenant & ~written_mask(DmaLog(rig.memory, new), rig.memory.size)).any()
        assert len(rxq.rx_burst()) == k
    rx_written = {(p - rx_ring) // DESC_SIZE for p, _ in log.ranges("rx-wb")}
    assert rx_written <= set(range(8)) and len(rx_written) >= 2
    log.assert_bounded()


def test_blocked_accesses_are_observed_and_move_nothing(rig: Rig) -> None:
    txq = rig.tx_queue(size=8)
    log = watch(rig.nic0, rig.nic1)
    rig.nic0.write32(regs.TCTL, regs.TCTL_PSP)
    txq.tx_burst(batch([seq_frame(1)]))
    txq.ring["addr"][0] = rig.memory.size + 64  # the tenant repoints the posted descriptor outside memory
    before = rig.memory.data.copy()
    mark = len(log.batches)
    rig.nic0.write32(regs.TCTL, regs.TCTL_EN | regs.TCTL_PSP)
    data = [b for b in log.batches[mark:] if b.purpose == "tx-data"]
    assert len(data) == 1 and data[0].allowed.tolist() == [False]
    assert int(data[0].addrs[0]) == rig.memory.size + 64
    assert rig.nic0.dma.blocked == 1
    assert rig.wire == []
    changed = rig.memory.data != before
    assert not (changed & ~written_mask(log, rig.memory.size)).any()
