"""On the host: the pieces of the no-IOMMU variant that need no VM (lab/noiommu.py, lab/qemu.py, parsers).

The module build itself and everything that needs the guest kernel run in
tests/lab/test_lab_vm.py (a second boot) and tests/lab/test_noiommu_lab.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from driver.vfio.device import group_path
from driver.vfio.guest_memory import GuestMemoryError, ram_end
from lab import noiommu, qemu
from lab.guest.noiommu import kernel_symbol_phys
from lab.image import LabImage
from lab.spec import LabSpec

PROJECT = Path(__file__).resolve().parents[2]

#: As the lab's no-IOMMU guest printed them (1 GiB q35, PVH boot, no KASLR offset).
IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
000f0000-000fffff : Reserved
00100000-3ffdffff : System RAM
  01000000-01e01d31 : Kernel code
  02000000-028eafff : Kernel rodata
  02a00000-02c4897f : Kernel data
3ffe0000-3fffffff : Reserved
fe000000-fe003fff : 0000:00:02.0
"""
KALLSYMS = """\
ffffffff81000000 T startup_64
ffffffff81000000 T _text
ffffffff82161900 D linux_banner
ffffffffc0a01000 t vfio_noiommu_open\t[vfio]
"""


def test_noiommu_image_boots_without_the_vt_d_and_with_vfio_in_no_iommu_mode(tmp_path: Path) -> None:
    image = LabImage("k", "6.1.0", tmp_path / "vmlinux", tmp_path / "initrd", tmp_path / "rootfs", tmp_path / "m",
                     noiommu=True)  # fmt: skip
    argv = qemu.command(image, PROJECT, tmp_path / "run", qemu.VmConfig())
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert not any(d.startswith("intel-iommu") for d in devices)
    assert devices[0].startswith("e1000e,")
    cmdline = argv[argv.index("-append") + 1].split()
    assert "vfio.enable_unsafe_noiommu_mode=1" in cmdline and "intel_iommu=on" not in cmdline


def test_the_build_uses_debians_packages_at_the_kernels_version() -> None:
    spec = LabSpec("linux-image-6.1.0-56-amd64", "6.1.192-2")
    assert noiommu.packages(spec) == ["linux-headers-6.1.0-56-amd64", "linux-headers-6.1.0-56-common",
                                      "linux-kbuild-6.1", "linux-source-6.1"]  # fmt: skip
    assert "CONFIG_VFIO_NOIOMMU" in noiommu.KBUILD
    other = LabSpec("linux-image-6.1.0-57-amd64", "6.1.200-1")
    assert noiommu.noiommu_key(spec) != noiommu.noiommu_key(other)


def test_compiler_and_symvers_are_read_as_kbuild_writes_them(tmp_path: Path) -> None:
    (tmp_path / ".kernelvariables").write_text(
        "override ARCH = x86\nCCACHE = ccache\n"
        "CC = $(if $(DEBIAN_KERNEL_USE_CCACHE),$(CCACHE)) $(CROSS_COMPILE)gcc-12\n"
    )
    assert noiommu._compiler(tmp_path) == "gcc-12"
    symvers = tmp_path / "Module.symvers"
    symvers.write_text("0x1\tvfio_register_group_dev\tdrivers/vfio/vfio\tEXPORT_SYMBOL_GPL\t\n"
                       "0x2\tpci_enable_device\tvmlinux\tEXPORT_SYMBOL\t\n")  # fmt: skip
    assert noiommu._symvers(symvers, "drivers/vfio/vfio") == {"vfio_register_group_dev": "0x1"}
    assert len(noiommu._symvers(symvers, None)) == 2


def test_a_kernel_symbols_physical_address_is_kernel_code_plus_its_offset() -> None:
    assert kernel_symbol_phys("linux_banner", KALLSYMS, IOMEM) == 0x01000000 + 0x1161900
    with pytest.raises(LookupError):
        kernel_symbol_phys("no_such_symbol", KALLSYMS, IOMEM)
    with pytest.raises(LookupError):  # what a non-root reader sees
        kernel_symbol_phys("linux_banner", re.sub(r"^[0-9a-f]{16}", "0" * 16, KALLSYMS, flags=re.M), IOMEM)


def test_ram_ends_after_the_last_system_ram_range() -> None:
    assert ram_end(IOMEM) == 0x3FFE0000
    with pytest.raises(GuestMemoryError):
        ram_end("00000000-00000000 : System RAM\n")  # addresses hidden from non-root readers


def test_no_iommu_groups_have_their_own_device_nodes() -> None:
    assert group_path(0, noiommu=True) == Path("/dev/vfio/noiommu-0")
    assert group_path(7) == Path("/dev/vfio/7")
