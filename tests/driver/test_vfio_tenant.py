"""The VFIO tenant's mapping rules, on the host: pins become page mappings, rings are mapped, unpins undo them.

The real VFIO runs only in the lab VM (tests/lab/test_vfio_*.py); here the
kernel and the device are the project's own (an emulated E1000 is a
RegisterBus like the real BAR0), and the mapper records what VFIO would be
asked to map.  What is checked is the bookkeeping: which pages, which
access, when mapped and when unmapped, deferred unpins included.
"""

from __future__ import annotations

import pytest

from device.e1000 import EngineMode
from driver.tenant.rxq import RxQueue
from driver.tenant.txq import TxQueue
from driver.vfio.dma import IommuMap
from driver.vfio.tenant import VfioTenant
from lab.guest.world import ETHERTYPE_LOCAL
from ring.frames import FrameBatch
from ring.memory import OWNER_KERNEL, PAGE_SIZE
from ring.syscalls import DEVICE_READ
from verifier.kernel import Kernel
from verifier.modes.protection import Protection
from verifier.pins import RELEASED
from world.build import World
from world.scenario import CableSpec, NicSpec, Scenario, TenantSpec

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
BASE = 0x7F12_3400_0000  # where the lab's memory buffer would live in the process


class Recorder:
    """Stands where driver.vfio.device.Container stands: records VFIO_IOMMU_MAP_DMA / UNMAP_DMA."""

    def __init__(self) -> None:
        self.mapped: dict[int, tuple[int, bool, bool]] = {}  # iova -> (vaddr, read, write)
        self.log: list[tuple[str, int]] = []

    def map_dma(self, vaddr: int, iova: int, size: int, read: bool, write: bool) -> None:
        assert size == PAGE_SIZE and iova not in self.mapped  # VFIO would say EEXIST
        self.mapped[iova] = (vaddr, read, write)
        self.log.append(("map", iova))

    def unmap_dma(self, iova: int, size: int) -> int:
        del self.mapped[iova]
        self.log.append(("unmap", iova))
        return size


def rig(protection: Protection) -> tuple[Kernel, Recorder, VfioTenant]:
    scen = Scenario(
        name="vfio-rig",
        source=__file__,
        seed=3,
        engine=EngineMode.INLINE,
        protection=protection,
        memory_size=8 << 20,
        kernel_size=1 << 20,
        nics=(NicSpec("mine", MAC_A), NicSpec("peer", MAC_B)),
        tenants=(TenantSpec("owner", "mine", "198.18.0.1"),),
        cables=(CableSpec("peer", "mine"),),
    )
    world = World.build(scen, pcap=False)
    memory, kernel, mine, proc = world.memory, world.kernel, world.nics["mine"], world.tenants["owner"]
    recorder = Recorder()

    def pin_gone(handle: int) -> bool:
        pin = proc.pins.pins.get(handle)
        return pin is None or pin.state == RELEASED

    tenant = VfioTenant(proc, IommuMap(recorder, BASE, memory.size), mine, pin_gone)
    return kernel, recorder, tenant


def test_a_pin_maps_its_pages_at_iova_equal_physical_address_and_an_unpin_unmaps_them() -> None:
    _, recorder, tenant = rig(Protection.VERIFIER)
    region = tenant.alloc_dma(3 * PAGE_SIZE)
    phys = tenant.virt_to_phys(region.vaddr)
    handle = tenant.pin(region.vaddr + 100, 2 * PAGE_SIZE, DEVICE_READ)  # touches all three pages
    assert sorted(recorder.mapped) == [phys, phys + PAGE_SIZE, phys + 2 * PAGE_SIZE]
    assert recorder.mapped[phys] == (BASE + phys, True, False)  # read only: a TX buffer
    assert tenant.unpin(handle) == "released"
    assert recorder.mapped == {}


def test_a_queue_maps_the_ring_the_device_was_given_read_write() -> None:
    kernel, recorder, tenant = rig(Protection.VERIFIER)
    txq = TxQueue(tenant, "mine", size=64, pool_size=64)
    ring_base = tenant.rings[0][0]
    assert kernel.memory.owner_of(ring_base) == OWNER_KERNEL  # the verifier's shadow ring, not the user's
    assert recorder.mapped[ring_base][1:] == (True, True)
    pool = tenant.virt_to_phys(txq.pool.region.vaddr)
    assert recorder.mapped[pool][1:] == (True, False)
    user_ring = tenant.virt_to_phys(txq.region.vaddr)
    assert user_ring not in recorder.mapped  # the device never reads the tenant's own ring in this mode


def test_in_mode_none_the_user_ring_itself_is_mapped() -> None:
    _, recorder, tenant = rig(Protection.NONE)
    txq = TxQueue(tenant, "mine", size=64)
    assert tenant.rings[0][0] == tenant.virt_to_phys(txq.region.vaddr)
    assert recorder.mapped[tenant.rings[0][0]][1:] == (True, True)


def test_a_page_shared_by_two_uses_keeps_the_union_of_their_access() -> None:
    recorder = Recorder()
    iommu = IommuMap(recorder, BASE, 1 << 20)
    iommu.map(0x3000, 100, read=True, write=False)
    iommu.map(0x3800, 100, read=False, write=True)
    assert recorder.mapped[0x3000][1:] == (True, True)
    iommu.unmap(0x3000, 100, read=True, write=False)
    assert recorder.mapped[0x3000][1:] == (False, True)
    with pytest.raises(ValueError, match="not mapped for that access"):
        iommu.unmap(0x3000, 100, read=True, write=False)
    iommu.unmap(0x3800, 100, read=False, write=True)
    assert recorder.mapped == {} and iommu.refs == {}


def test_a_deferred_unpin_is_unmapped_only_when_the_device_has_let_go() -> None:
    kernel, recorder, tenant = rig(Protection.VERIFIER)
    rxq = RxQueue(tenant, "mine", size=8)  # 7 buffers posted: the device owns them
    pool = tenant.virt_to_phys(rxq.pool.region.vaddr)
    assert recorder.mapped[pool][1:] == (False, True)  # RX buffers: the device writes them
    assert tenant.unpin(rxq.pool.pin) == "deferred"
    tenant.settle()
    assert pool in recorder.mapped  # still mapped: a posted buffer may be written any moment
    sender = kernel.spawn("sender")
    frames = [MAC_A + MAC_B + ETHERTYPE_LOCAL + bytes(50)] * 7
    TxQueue(sender, "peer", size=8).tx_burst(FrameBatch.from_frames(frames))  # fills every posted buffer
    tenant.settle()
    assert pool not in recorder.mapped  # the kernel released the pin, so VFIO unmaps it
    assert rxq.pool.region.size // PAGE_SIZE == sum(1 for op, iova in recorder.log if op == "unmap" and iova >= pool)
