"""The pin system calls: what a tenant may pin, and the errors it gets otherwise."""

from __future__ import annotations

import dataclasses

import pytest

from driver.tenant.txq import TxQueue
from ring import regs
from ring.descriptors import DESC_SIZE
from ring.memory import OWNER_FREE, PAGE_SIZE, PhysicalMemory
from ring.syscalls import DEVICE_READ, DEVICE_WRITE, DmaRegion
from verifier.kernel import Kernel, KernelError
from verifier.modes.protection import Protection
from verifier.pins import Access
from world import scenario
from world.build import World


@pytest.fixture
def kernel() -> Kernel:
    return Kernel(PhysicalMemory(8 << 20, 1 << 20, seed=1), Protection.VERIFIER)


def test_pin_covers_exactly_the_frames_behind_the_range(kernel: Kernel) -> None:
    alice = kernel.spawn("alice")
    region = alice.alloc_dma(3 * PAGE_SIZE)
    handle = alice.pin(region.vaddr + 100, PAGE_SIZE, DEVICE_READ)  # touches the first two pages
    frames = [alice.virt_to_phys(region.vaddr + i * PAGE_SIZE) >> 12 for i in range(3)]
    assert handle.ranges == ((frames[0] << 12, 2 * PAGE_SIZE),)  # one physically contiguous run
    assert list(alice.pins.access[frames]) == [Access.READ, Access.READ, 0]
    assert alice.unpin(handle) == "released"
    assert not alice.pins.access[frames].any()
    assert alice.pins.released[frames[:2]].all()


def test_a_tenant_can_only_name_its_own_memory(kernel: Kernel) -> None:
    alice, mallory = kernel.spawn("alice"), kernel.spawn("mallory")
    region = alice.alloc_dma(PAGE_SIZE)
    # mallory's pin goes through mallory's page table: alice's address means nothing there
    with pytest.raises(KernelError, match="not mapped"):
        mallory.pin(region.vaddr, PAGE_SIZE, DEVICE_READ)
    with pytest.raises(KernelError, match="not mapped"):
        mallory.pin(0x1000, PAGE_SIZE, DEVICE_READ)  # a low address: never a mapping, never kernel memory
    assert not mallory.pins.access.any()


@pytest.mark.parametrize(
    ("length", "access", "message"),
    [(0, DEVICE_READ, "at least one byte"), (PAGE_SIZE, 0, "must grant"), (PAGE_SIZE, 8, "unknown access")],
)
def test_bad_pin_requests_are_refused(kernel: Kernel, length: int, access: int, message: str) -> None:
    alice = kernel.spawn("alice")
    region = alice.alloc_dma(PAGE_SIZE)
    with pytest.raises(KernelError, match=message):
        alice.pin(region.vaddr, length, access)


def test_overlapping_pins_and_unknown_handles_are_refused(kernel: Kernel) -> None:
    alice = kernel.spawn("alice")
    region = alice.alloc_dma(2 * PAGE_SIZE)
    alice.pin(region.vaddr, PAGE_SIZE, DEVICE_READ)
    with pytest.raises(KernelError, match="pinned already"):
        alice.pin(region.vaddr + PAGE_SIZE - 1, 2, DEVICE_WRITE)
    with pytest.raises(KernelError, match="no active pin"):
        alice.unpin(999)


def test_free_is_refused_while_pinned_and_works_after(kernel: Kernel) -> None:
    alice = kernel.spawn("alice")
    region = alice.alloc_dma(PAGE_SIZE)
    handle = alice.pin(region.vaddr, PAGE_SIZE, DEVICE_WRITE)
    with pytest.raises(KernelError, match="still pinned"):
        alice.free_dma(region)
    alice.unpin(handle)
    alice.free_dma(region)
    with pytest.raises(KernelError, match="not mapped"):
        alice.virt_to_phys(region.vaddr)  # the pagemap no longer knows it
    with pytest.raises(KernelError, match="no mapping"):
        alice.free_dma(region)


@pytest.mark.parametrize("mode", list(Protection))
def test_free_is_refused_for_the_region_that_holds_an_open_queues_ring(mode: Protection) -> None:
    """The device keeps fetching from a ring it was given: its memory cannot go back to the allocator."""
    with World.build(dataclasses.replace(scenario.load(), protection=mode), pcap=False) as world:
        alice = world.tenants["alice"]
        tx = TxQueue(alice, world.scenario.tenants[0].nic, size=64)
        with pytest.raises(KernelError, match="holds the ring of tx queue 0"):
            alice.free_dma(tx.region)
        spare = alice.alloc_dma(PAGE_SIZE)
        alice.free_dma(spare)  # a region without a ring is freed as ever


def test_the_longest_ring_is_what_tdlen_bits_19_7_can_say() -> None:
    """8254x 13.4.27: TDLEN's length lives in bits 19:7, so 65528 descriptors is the most; 65536 (1 MiB) would
    read back as 0 and leave the kernel's account of the ring apart from the device's."""
    with World.build(scenario.load(), pcap=False) as world:
        alice = world.tenants["alice"]
        nic = world.scenario.tenants[0].nic
        big = alice.alloc_dma(65536 * 16)
        with pytest.raises(KernelError, match="from 8 to 65528"):
            world.kernel.open_queue(alice, "tx", nic, 0, big, 65536)
        with pytest.raises(ValueError, match="between 8 and 65528"):
            TxQueue(alice, nic, size=65536)
        world.kernel.open_queue(alice, "tx", nic, 0, big, 65528)
        assert world.nics[nic].reg(regs.TDLEN) == 65528 * 16 == regs.RING_LEN_MASK


@pytest.mark.parametrize("slots", [8, 256, 512])
def test_a_ring_running_past_the_end_of_memory_is_refused(slots: int) -> None:
    """The ring's frames must lie in memory and be the caller's: a ring at the last frame of memory that is
    longer than that frame runs past the end (the fuzzer's arena maps nothing there: its tenants allocate from
    the bottom, and filling 60 MB to reach the top would cost it half a second per machine)."""
    base = dataclasses.replace(scenario.load(), memory_size=8 << 20)
    with World.build(base, pcap=False) as world:
        alice, memory = world.tenants["alice"], world.memory
        filler = alice.alloc_dma((int((memory.owner == OWNER_FREE).sum()) - 1) * PAGE_SIZE)
        top = alice.alloc_dma(PAGE_SIZE)  # the last frame of memory
        alice.free_dma(filler)  # room again for the kernel's shadow ring
        assert alice.virt_to_phys(top.vaddr) == memory.size - PAGE_SIZE
        ring = DmaRegion(top.vaddr, top.bus, slots * DESC_SIZE, top.view)  # the region as she names it
        nic = world.scenario.tenants[0].nic
        if slots * DESC_SIZE <= PAGE_SIZE:  # ends on or before the last byte of memory: hers, accepted
            alice.open_tx_queue(nic, 0, ring, slots)
            return
        with pytest.raises(KernelError, match="not memory of this tenant"):
            alice.open_tx_queue(nic, 0, ring, slots)
