"""The VFIO back end: a real PCI device driven from user space through /dev/vfio.

The sequence is the one Documentation/driver-api/vfio.rst gives, and what
DPDK and ixy do:

1. bind the device to vfio-pci: ``driver_override`` then ``drivers_probe``
   in sysfs (after unbinding whatever driver holds it);
2. open the container /dev/vfio/vfio, check the API version and the type1
   v2 IOMMU extension; open the device's group /dev/vfio/<group>, check it
   is viable and attach it to the container; VFIO_SET_IOMMU type1 v2;
3. VFIO_GROUP_GET_DEVICE_FD with the device's PCI address (the ioctl's
   return value is the new fd);
4. region info; set memory decoding and bus mastering in the PCI COMMAND
   register through the config region (without Bus Master Enable the
   device may not start a DMA: PCI Local Bus Specification 3.0, 6.2.2);
   mmap BAR0;
5. VFIO_IOMMU_MAP_DMA / VFIO_IOMMU_UNMAP_DMA: what the device may reach.
   This module maps exactly what it is told, at the IOVA it is told; which
   ranges that is (the tenant's pins) is ``driver/vfio/dma.py``'s business.

No-IOMMU mode (``noiommu=True``; vfio.ko built with CONFIG_VFIO_NOIOMMU
and loaded with ``enable_unsafe_noiommu_mode=1``, lab/noiommu.py): the
group is ``/dev/vfio/noiommu-N`` and the container's IOMMU is
``VFIO_NOIOMMU_IOMMU``, which maps nothing: the device reaches every
physical address, and the descriptors carry physical addresses (DPDK's
``RTE_IOVA_PA``, read from /proc/self/pagemap).  Step 5 does not exist.

Everything is released in ``close()`` (and on garbage collection of the
fds): the mappings go with the container.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import time
from pathlib import Path

from driver.pci import COMMAND, COMMAND_BUS_MASTER, COMMAND_MEMORY
from driver.vfio import abi
from ring.regs import BAR0_SIZE, REG_WIDTH

SYSFS_PCI = Path("/sys/bus/pci")
VFIO_DIR = Path("/dev/vfio")
VFIO_DRIVER = "vfio-pci"


class VfioError(Exception):
    """A VFIO step failed; the message names the step and the errno."""


#: What a VFIO ioctl takes: an int, or a writable buffer whose address the kernel gets (and may fill in).
IoctlArg = int | ctypes.Array[ctypes.c_char] | ctypes.Structure | ctypes.c_int32


def _ioctl(fd: int, request: int, arg: IoctlArg, what: str) -> int:
    try:
        return fcntl.ioctl(fd, request, arg)
    except OSError as err:
        raise VfioError(f"{what}: {os.strerror(err.errno or 0)} (errno {err.errno})") from None


# -- 1. binding ------------------------------------------------------------------------------


def group_path(group: int, noiommu: bool = False) -> Path:
    """/dev/vfio/<group>, or /dev/vfio/noiommu-<group> (drivers/vfio/vfio_main.c, vfio_group_alloc)."""
    return VFIO_DIR / f"{'noiommu-' if noiommu else ''}{group}"


def bind_to_vfio(bdf: str, timeout_s: float = 5.0, noiommu: bool = False) -> int:
    """Bind the PCI device ``bdf`` (e.g. 0000:00:02.0) to vfio-pci; return its IOMMU group number.

    ``noiommu``: there is no IOMMU; vfio-pci makes the device a fake group of its own (no-IOMMU mode)."""
    dev = SYSFS_PCI / "devices" / bdf
    if not dev.exists():
        raise VfioError(f"no PCI device {bdf}")
    driver = dev / "driver"
    if driver.exists() and os.path.basename(os.readlink(driver)) != VFIO_DRIVER:
        (driver / "unbind").write_text(bdf)
    if not driver.exists():
        (dev / "driver_override").write_text(VFIO_DRIVER)
        (SYSFS_PCI / "drivers_probe").write_text(bdf)
    if not (dev / "iommu_group").exists():
        hint = "is vfio loaded with enable_unsafe_noiommu_mode=1?" if noiommu else "boot with intel_iommu=on"
        raise VfioError(f"{bdf} has no IOMMU group ({hint})")
    group = int(os.path.basename(os.readlink(dev / "iommu_group")))
    deadline = time.monotonic() + timeout_s
    while not group_path(group, noiommu).exists():  # the group node appears once vfio-pci has probed
        if time.monotonic() > deadline:
            raise VfioError(f"{group_path(group, noiommu)} did not appear after binding {bdf} to {VFIO_DRIVER}")
        time.sleep(0.01)
    return group


# -- 2. container and group -------------------------------------------------------------------


class Container:
    """/dev/vfio/vfio with one group attached and the type1 v2 IOMMU set (or, ``noiommu``, none)."""

    def __init__(self, group: int, noiommu: bool = False) -> None:
        iommu = abi.VFIO_NOIOMMU_IOMMU if noiommu else abi.VFIO_TYPE1v2_IOMMU
        self.noiommu = noiommu
        self.fd = os.open(VFIO_DIR / "vfio", os.O_RDWR)
        self.group_fd = -1
        try:
            version = _ioctl(self.fd, abi.VFIO_GET_API_VERSION, 0, "VFIO_GET_API_VERSION")
            if version != abi.VFIO_API_VERSION:
                raise VfioError(f"VFIO API version {version}, expected {abi.VFIO_API_VERSION}")
            if not _ioctl(self.fd, abi.VFIO_CHECK_EXTENSION, iommu, "VFIO_CHECK_EXTENSION"):
                raise VfioError("the kernel's VFIO has no no-IOMMU mode (vfio.ko without CONFIG_VFIO_NOIOMMU, "
                                "or enable_unsafe_noiommu_mode=0)" if noiommu else
                                "the kernel's VFIO has no type1 v2 IOMMU (is vfio_iommu_type1 loaded?)")  # fmt: skip
            self.group_fd = os.open(group_path(group, noiommu), os.O_RDWR)
            status = abi.sized(abi.GroupStatus)
            _ioctl(self.group_fd, abi.VFIO_GROUP_GET_STATUS, status, "VFIO_GROUP_GET_STATUS")
            if not status.flags & abi.VFIO_GROUP_FLAGS_VIABLE:
                raise VfioError(f"IOMMU group {group} is not viable: bind all its devices to vfio-pci")
            _ioctl(self.group_fd, abi.VFIO_GROUP_SET_CONTAINER, ctypes.c_int32(self.fd), "VFIO_GROUP_SET_CONTAINER")
            _ioctl(self.fd, abi.VFIO_SET_IOMMU, iommu, "VFIO_SET_IOMMU")
        except BaseException:
            self.close()
            raise

    def map_dma(self, vaddr: int, iova: int, size: int, read: bool, write: bool) -> None:
        """VFIO_IOMMU_MAP_DMA: the device may now reach ``[iova, iova + size)``; the pages are pinned."""
        flags = (abi.VFIO_DMA_MAP_FLAG_READ if read else 0) | (abi.VFIO_DMA_MAP_FLAG_WRITE if write else 0)
        request = abi.sized(abi.DmaMap, flags=flags, vaddr=vaddr, iova=iova, size=size)
        _ioctl(self.fd, abi.VFIO_IOMMU_MAP_DMA, request, f"VFIO_IOMMU_MAP_DMA iova {iova:#x}+{size:#x}")

    def unmap_dma(self, iova: int, size: int) -> int:
        """VFIO_IOMMU_UNMAP_DMA; returns the bytes the kernel unmapped."""
        request = abi.sized(abi.DmaUnmap, iova=iova, size=size)
        _ioctl(self.fd, abi.VFIO_IOMMU_UNMAP_DMA, request, f"VFIO_IOMMU_UNMAP_DMA iova {iova:#x}+{size:#x}")
        return int(request.size)

    def close(self) -> None:
        for fd in (self.group_fd, self.fd):
            if fd >= 0:
                os.close(fd)
        self.group_fd = self.fd = -1


# -- 3-4. the device ---------------------------------------------------------------------------


class Bar:
    """An mmap'd memory BAR as a RegisterBus: 32-bit loads and stores through ctypes.

    Each access is one aligned 32-bit load or store instruction on the
    mapping (a ``c_uint32`` at that address), as the 8254x requires of
    register accesses ("all registers should be accessed as 32-bit words",
    manual 13.1); QEMU's e1000e acts on each store when it happens.
    """

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self.size = size
        self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
        self._words = (ctypes.c_uint32 * (size // REG_WIDTH)).from_buffer(self._map)

    def read32(self, offset: int) -> int:
        return int(self._words[offset // REG_WIDTH])

    def write32(self, offset: int, value: int) -> None:
        self._words[offset // REG_WIDTH] = value & 0xFFFF_FFFF

    def close(self) -> None:
        del self._words
        self._map.close()


class Device:
    """A vfio-pci device: its fd, its regions, its config space and BAR0."""

    def __init__(self, container: Container, bdf: str) -> None:
        self.bdf = bdf
        name = ctypes.create_string_buffer(bdf.encode())
        self.fd = _ioctl(container.group_fd, abi.VFIO_GROUP_GET_DEVICE_FD, name, f"VFIO_GROUP_GET_DEVICE_FD {bdf}")
        self.bar0: Bar | None = None
        try:
            info = abi.sized(abi.DeviceInfo)
            _ioctl(self.fd, abi.VFIO_DEVICE_GET_INFO, info, "VFIO_DEVICE_GET_INFO")
            if not info.flags & abi.VFIO_DEVICE_FLAGS_PCI:
                raise VfioError(f"{bdf} is not a PCI device")
            self.config = self.region(abi.VFIO_PCI_CONFIG_REGION_INDEX)
        except BaseException:
            os.close(self.fd)
            raise

    def region(self, index: int) -> abi.RegionInfo:
        info = abi.sized(abi.RegionInfo, index=index)
        _ioctl(self.fd, abi.VFIO_DEVICE_GET_REGION_INFO, info, f"VFIO_DEVICE_GET_REGION_INFO {index}")
        return info

    def config_read16(self, offset: int) -> int:
        return int.from_bytes(os.pread(self.fd, 2, self.config.offset + offset), "little")

    def config_write16(self, offset: int, value: int) -> None:
        os.pwrite(self.fd, value.to_bytes(2, "little"), self.config.offset + offset)

    def enable_bus_master(self) -> None:
        """COMMAND |= memory space | bus master, through the config region (vfio-pci virtualises it)."""
        command = self.config_read16(COMMAND)
        self.config_write16(COMMAND, command | COMMAND_MEMORY | COMMAND_BUS_MASTER)
        if not self.config_read16(COMMAND) & COMMAND_BUS_MASTER:
            raise VfioError(f"{self.bdf}: bus mastering did not stick in PCI COMMAND")

    def map_bar0(self) -> Bar:
        info = self.region(abi.VFIO_PCI_BAR0_REGION_INDEX)
        if not info.flags & abi.VFIO_REGION_INFO_FLAG_MMAP:
            raise VfioError(f"{self.bdf}: BAR0 cannot be mmap'd")
        if int(info.size) < BAR0_SIZE:
            raise VfioError(f"{self.bdf}: BAR0 is {int(info.size)} bytes, expected {BAR0_SIZE}")
        self.bar0 = Bar(self.fd, int(info.offset), BAR0_SIZE)
        return self.bar0

    def close(self) -> None:
        if self.bar0 is not None:
            self.bar0.close()
            self.bar0 = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
