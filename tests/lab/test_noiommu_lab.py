"""Inside the lab VM's no-IOMMU variant: a descriptor naming the guest kernel's memory, without and with the verifier.

No VT-d, vfio.ko rebuilt with CONFIG_VFIO_NOIOMMU (lab/noiommu.py), the
82574L in VFIO's no-IOMMU mode: the device reaches every physical address
and nothing but the project's kernel stands in front of it.  The target is
the kernel's ``linux_banner`` at its real physical address
(lab/guest/noiommu.py).  Marker ``lab(variant="noiommu")``: run by
tests/lab/test_lab_vm.py in a second boot, deselected everywhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from driver.vfio.guest_memory import HUGE_PAGE_SIZE, phys_of
from lab.guest.env import VARIANT_NOIOMMU, variant
from lab.guest.noiommu import BANNER_SYMBOL, NoIommuWorld, kernel_symbol_phys, leak_kernel_banner
from lab.qemu import E1000E_BDF
from ring.memory import OWNER_FREE, OWNER_KERNEL
from verifier.modes.protection import Protection

pytestmark = pytest.mark.lab(variant=VARIANT_NOIOMMU)


@pytest.fixture
def world(request: pytest.FixtureRequest) -> Iterator[NoIommuWorld]:
    with NoIommuWorld.build(E1000E_BDF, request.param) as w:
        yield w


def test_this_boot_is_the_no_iommu_variant() -> None:
    assert variant() == VARIANT_NOIOMMU
    assert list(Path("/sys/class/iommu").glob("*")) == []  # no VT-d unit: nothing translates the device's DMA


@pytest.mark.parametrize("world", [Protection.VERIFIER], indirect=True)
def test_the_sandbox_addresses_are_the_guests_physical_addresses(world: NoIommuWorld) -> None:
    memory = world.memory
    assert memory.backed, "no hugepages"
    for frames in memory.backed:
        assert frames.nbytes == HUGE_PAGE_SIZE and frames.phys % HUGE_PAGE_SIZE == 0
        # byte p of the sandbox's memory is the machine's physical byte p: pagemap of the view agrees
        assert phys_of(memory.view(frames.phys, 1).ctypes.data) == frames.phys
    assert memory.owner_of(kernel_symbol_phys(BANNER_SYMBOL)) == OWNER_KERNEL
    alice = world.spawn("alice")
    region = alice.alloc_dma(4096)
    phys = alice.virt_to_phys(region.vaddr)
    assert any(f.phys <= phys < f.phys + f.nbytes for f in memory.backed)
    assert phys_of(region.view.ctypes.data) == phys
    assert memory.owner_of(phys) not in (OWNER_FREE, OWNER_KERNEL)


@pytest.mark.parametrize("world", [Protection.NONE], indirect=True)
def test_without_the_verifier_the_kernels_bytes_go_out_and_come_back(world: NoIommuWorld) -> None:
    result = leak_kernel_banner(world)
    assert result.expected.startswith(b"Linux version ")
    assert result.tdh_moved
    assert result.audit_reasons == []
    assert len(result.received) == 1
    assert result.received[0].startswith(result.expected), result.received[0][:80]  # the guest kernel's memory


@pytest.mark.parametrize("world", [Protection.VERIFIER], indirect=True)
def test_with_the_verifier_the_descriptor_is_refused_and_audited(world: NoIommuWorld) -> None:
    result = leak_kernel_banner(world)
    assert result.audit_reasons == ["ADDR_NOT_PINNED"]
    assert not result.tdh_moved  # the device never saw the descriptor
    assert result.received == []
    assert not result.leaked
