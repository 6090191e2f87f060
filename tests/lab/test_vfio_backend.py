"""Inside the lab VM: the project's rings, kernel and verifier drive a real 82574L through VFIO.

Traffic goes out of the e1000e and back in through its PHY loopback; the
IOMMU mappings follow the tenant's pins.  Marker ``lab``: deselected on the
host, run by tests/lab/test_lab_vm.py inside the VM.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from lab.guest.world import ETHERTYPE_LOCAL, MAC, NIC, LabWorld
from lab.qemu import E1000E_BDF
from ring import regs
from ring.frames import FrameBatch
from ring.memory import PAGE_SIZE
from ring.syscalls import DEVICE_READ, DEVICE_WRITE
from verifier.modes.protection import Protection

pytestmark = pytest.mark.lab


def frames(count: int, size: int = 128) -> list[bytes]:
    """``count`` numbered frames of ``size`` bytes: the header, a 4-byte number, a pattern of that number."""
    header = MAC + MAC + ETHERTYPE_LOCAL
    pad = size - len(header) - 4
    return [header + i.to_bytes(4, "big") + bytes((i + k) & 0xFF for k in range(pad)) for i in range(count)]


@pytest.fixture(params=[Protection.VERIFIER, Protection.NONE], ids=lambda p: p.value)
def world(request: pytest.FixtureRequest) -> Iterator[LabWorld]:
    with LabWorld.build(E1000E_BDF, request.param) as w:
        yield w


def test_frames_go_out_and_come_back_intact_through_phy_loopback(world: LabWorld) -> None:
    owner = world.spawn_owner("alice")
    txq, rxq = TxQueue(owner, NIC, size=64), RxQueue(owner, NIC, size=64)
    sent = frames(100)
    for counter in (regs.GPTC, regs.GPRC):  # clear on read (13.7), and a CTRL.RST leaves them alone in QEMU
        world.nic.bar.read32(counter)
    got: list[bytes] = []
    for start in range(0, len(sent), 20):  # bursts of 20, with completions polled between them
        assert txq.tx_burst(FrameBatch.from_frames(sent[start : start + 20])) == 20
        world.nic.poll()
        batch = rxq.rx_burst()
        offsets = np.concatenate(([0], np.cumsum(batch.lengths)))
        got += [bytes(batch.data[offsets[i] : offsets[i + 1]]) for i in range(len(batch))]
    assert got == sent  # every frame, in order, byte for byte (RCTL.SECRC strips the FCS)
    assert world.nic.bar.read32(regs.GPTC) == len(sent)  # the device's own counters agree
    assert world.nic.bar.read32(regs.GPRC) == len(sent)
    assert rxq.stats.errors == rxq.stats.refused == 0


def test_pins_are_iommu_mappings_and_nothing_else_is_mapped(world: LabWorld) -> None:
    owner = world.spawn_owner("alice")
    rings = world.iommu.mapped_bytes()
    assert rings == 0
    txq = TxQueue(owner, NIC, size=64, pool_size=64)  # ring + a 64 x 2 KiB pool = 32 pages, pinned for reads
    pool_phys = owner.virt_to_phys(txq.pool.region.vaddr)
    assert world.iommu.perms(pool_phys) == (True, False)
    assert world.iommu.perms(pool_phys + txq.pool.region.size - 1) == (True, False)
    ring_base = world.nic.bar.read32(regs.TDBAL) | world.nic.bar.read32(regs.TDBAH) << 32
    assert world.iommu.perms(ring_base) == (True, True)  # the device fetches and writes back descriptors
    assert world.iommu.mapped_bytes() == txq.pool.region.size + PAGE_SIZE
    assert world.iommu.perms(world.memory.kernel_frames.phys) == (False, False)

    extra = owner.alloc_dma(2 * PAGE_SIZE)
    handle = owner.pin(extra.vaddr, 2 * PAGE_SIZE, DEVICE_WRITE)
    phys = owner.virt_to_phys(extra.vaddr)
    assert world.iommu.perms(phys + PAGE_SIZE) == (False, True)
    assert owner.unpin(handle) == "released"
    assert world.iommu.perms(phys) == (False, False)  # the unpin is the VFIO_IOMMU_UNMAP_DMA


def test_other_tenants_pins_are_not_in_the_devices_domain(world: LabWorld) -> None:
    world.spawn_owner("mallory")
    alice = world.spawn("alice")
    region = alice.alloc_dma(PAGE_SIZE)
    alice.pin(region.vaddr, PAGE_SIZE, DEVICE_READ)
    assert world.iommu.perms(alice.virt_to_phys(region.vaddr)) == (False, False)
