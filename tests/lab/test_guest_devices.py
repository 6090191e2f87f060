"""Inside the lab VM: the devices and kernel facilities the back ends rely on are there.

These run only in the guest (marker ``lab``); tests/lab/test_lab_vm.py boots
the VM and runs them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from driver.pci import VENDOR_INTEL
from driver.vfio.e1000e_regs import PCI_DEVICE_82574L
from lab.guest.env import kernel_log, rxe_device
from lab.qemu import E1000E_BDF

pytestmark = pytest.mark.lab

PCI = Path("/sys/bus/pci/devices")


def test_the_e1000e_is_an_82574l_in_its_own_iommu_group() -> None:
    dev = PCI / E1000E_BDF
    assert int((dev / "vendor").read_text(), 16) == VENDOR_INTEL
    assert int((dev / "device").read_text(), 16) == PCI_DEVICE_82574L
    group = os.readlink(dev / "iommu_group").rsplit("/", 1)[1]
    members = os.listdir(f"/sys/kernel/iommu_groups/{group}/devices")
    assert members == [E1000E_BDF]


def test_vfio_and_the_iommu_are_up() -> None:
    assert Path("/dev/vfio/vfio").exists()
    log = kernel_log()
    assert "DMAR: IOMMU enabled" in log
    assert "Enabled IRQ remapping" in log


def test_soft_roce_device_exists() -> None:
    assert rxe_device() == "rxe0"
    assert Path("/sys/class/infiniband/rxe0").exists()
    assert any(Path("/dev/infiniband").glob("uverbs*"))
