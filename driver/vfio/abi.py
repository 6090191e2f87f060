"""The VFIO user-space ABI: ioctl numbers and structures of include/uapi/linux/vfio.h (Linux 6.1).

Every VFIO ioctl is ``_IO(VFIO_TYPE, VFIO_BASE + n)`` with no size encoded
(the structures carry their own ``argsz``), so the request number is just
``(';' << 8) | (100 + n)``.  The structures are ctypes ``Structure``s:
``fcntl.ioctl`` given one (a writable buffer) passes its address, lets the
kernel fill it in, and returns the ioctl's own return value, which is how
VFIO_GROUP_GET_DEVICE_FD hands back the new file descriptor.
"""

from __future__ import annotations

import ctypes
from typing import TypeVar

VFIO_API_VERSION = 0
VFIO_TYPE = ord(";")
VFIO_BASE = 100

# -- extensions (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU) -------------------------------------
VFIO_TYPE1_IOMMU = 1
VFIO_TYPE1v2_IOMMU = 3  # type1 v2: unmaps may not bisect a mapping; what QEMU and DPDK use
#: No IOMMU at all (CONFIG_VFIO_NOIOMMU, enable_unsafe_noiommu_mode): no MAP_DMA, the device reaches all of RAM.
VFIO_NOIOMMU_IOMMU = 8


def _io(nr: int) -> int:
    """_IO(VFIO_TYPE, VFIO_BASE + nr): direction none, size 0 (include/uapi/asm-generic/ioctl.h)."""
    return (VFIO_TYPE << 8) | (VFIO_BASE + nr)


# -- /dev/vfio/vfio (the container) ----------------------------------------------------------
VFIO_GET_API_VERSION = _io(0)
VFIO_CHECK_EXTENSION = _io(1)
VFIO_SET_IOMMU = _io(2)
# -- /dev/vfio/<group> -------------------------------------------------------------------------
VFIO_GROUP_GET_STATUS = _io(3)
VFIO_GROUP_SET_CONTAINER = _io(4)
VFIO_GROUP_UNSET_CONTAINER = _io(5)
VFIO_GROUP_GET_DEVICE_FD = _io(6)
# -- the device fd -----------------------------------------------------------------------------
VFIO_DEVICE_GET_INFO = _io(7)
VFIO_DEVICE_GET_REGION_INFO = _io(8)
VFIO_DEVICE_GET_IRQ_INFO = _io(9)
VFIO_DEVICE_SET_IRQS = _io(10)
VFIO_DEVICE_RESET = _io(11)
# -- type1 IOMMU, on the container --------------------------------------------------------------
VFIO_IOMMU_GET_INFO = _io(12)
VFIO_IOMMU_MAP_DMA = _io(13)
VFIO_IOMMU_UNMAP_DMA = _io(14)

VFIO_GROUP_FLAGS_VIABLE = 1 << 0  # every device of the group is bound to vfio (or to no driver)
VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1

VFIO_DEVICE_FLAGS_RESET = 1 << 0
VFIO_DEVICE_FLAGS_PCI = 1 << 1

VFIO_REGION_INFO_FLAG_READ = 1 << 0
VFIO_REGION_INFO_FLAG_WRITE = 1 << 1
VFIO_REGION_INFO_FLAG_MMAP = 1 << 2

VFIO_DMA_MAP_FLAG_READ = 1 << 0  # the device may read the mapping (IOMMU_READ)
VFIO_DMA_MAP_FLAG_WRITE = 1 << 1  # the device may write it (IOMMU_WRITE)

S = TypeVar("S", bound=ctypes.Structure)

# -- vfio-pci region indexes (enum VFIO_PCI_*_REGION_INDEX) ---------------------------------------
VFIO_PCI_BAR0_REGION_INDEX = 0
VFIO_PCI_CONFIG_REGION_INDEX = 7


class GroupStatus(ctypes.Structure):
    """struct vfio_group_status."""

    argsz: int
    flags: int
    _fields_ = [("argsz", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class DeviceInfo(ctypes.Structure):
    """struct vfio_device_info (without the 6.1 cap_offset tail, which argsz leaves out)."""

    argsz: int
    flags: int
    num_regions: int
    num_irqs: int
    _fields_ = [
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("num_regions", ctypes.c_uint32),
        ("num_irqs", ctypes.c_uint32),
    ]


class RegionInfo(ctypes.Structure):
    """struct vfio_region_info: where a region lives in the device fd (``offset``) and how big it is."""

    argsz: int
    flags: int
    index: int
    cap_offset: int
    size: int
    offset: int
    _fields_ = [
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("index", ctypes.c_uint32),
        ("cap_offset", ctypes.c_uint32),
        ("size", ctypes.c_uint64),
        ("offset", ctypes.c_uint64),
    ]


class DmaMap(ctypes.Structure):
    """struct vfio_iommu_type1_dma_map: map ``size`` bytes at process ``vaddr`` to device ``iova``."""

    argsz: int
    flags: int
    vaddr: int
    iova: int
    size: int
    _fields_ = [
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("vaddr", ctypes.c_uint64),
        ("iova", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
    ]


class DmaUnmap(ctypes.Structure):
    """struct vfio_iommu_type1_dma_unmap (the kernel writes back the size it unmapped)."""

    argsz: int
    flags: int
    iova: int
    size: int
    _fields_ = [
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("iova", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
    ]


def sized(struct_type: type[S], **fields: int) -> S:
    """A structure with ``argsz`` set to its own size (the caller's duty, per vfio.h)."""
    return struct_type(argsz=ctypes.sizeof(struct_type), **fields)
