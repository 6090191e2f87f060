"""The virtio PCI transport (virtio 1.2, §4.1), declared once: capabilities, common configuration, status.

A modern (non-transitional) virtio device on PCI is found by vendor 0x1AF4
and device ID 0x1040 + its virtio device ID (§4.1.2.1), and says where its
register blocks are through vendor-specific PCI capabilities (cap ID 0x09,
§4.1.4): one per structure (common configuration, notifications, ISR,
device-specific configuration), each naming a BAR, an offset into it and a
length.  The driver walks the PCI capability list to find them; it must not
assume a layout (§4.1.4.1 "The driver MUST ignore any vendor-specific
capability structure which has a reserved cfg_type value").

Register offsets here are offsets into the structure the capability points
at, not into the BAR.  Everything is little endian (§4.1.3).  The device
status bits (§2.1) and the feature bits (§5.1.3, §6) are declared with the
virtqueue format in ring/virtio.py; the driver writes them here, through
the common configuration.
"""

from __future__ import annotations

import numpy as np

from ring import virtio

# -- identity (§4.1.2.1; §5 device IDs) ----------------------------------------
VENDOR_VIRTIO = 0x1AF4
#: modern device IDs are 0x1040 + the virtio device ID (§4.1.2.1)
MODERN_DEVICE_BASE = 0x1040
DEVICE_VIRTIO_NET = MODERN_DEVICE_BASE + virtio.VIRTIO_ID_NET  # 0x1041
#: PCI Revision ID of a non-transitional device is 1 or more (§4.1.2.1)
MODERN_MIN_REVISION = 1

# -- the vendor-specific capability (§4.1.4) -----------------------------------
PCI_CAP_ID_VNDR = 0x09  # PCI Local Bus Specification 3.0, appendix H: vendor specific

#: §4.1.4: struct virtio_pci_cap, 16 bytes, in configuration space.
VIRTIO_PCI_CAP = np.dtype(
    [
        ("cap_vndr", "u1"),  # PCI_CAP_ID_VNDR
        ("cap_next", "u1"),  # configuration-space offset of the next capability (0: the last)
        ("cap_len", "u1"),  # length of this capability, including anything after these 16 bytes
        ("cfg_type", "u1"),  # which structure: VIRTIO_PCI_CAP_*
        ("bar", "u1"),  # 0..5: which BAR holds the structure
        ("id", "u1"),  # tells apart several capabilities of one type (shared memory)
        ("padding", "u1", (2,)),
        ("offset", "<u4"),  # where the structure starts inside the BAR
        ("length", "<u4"),  # its length in bytes
    ]
)
#: §4.1.4.4: struct virtio_pci_notify_cap = virtio_pci_cap + le32 notify_off_multiplier.
VIRTIO_PCI_NOTIFY_CAP = np.dtype([("cap", VIRTIO_PCI_CAP), ("notify_off_multiplier", "<u4")])

# cfg_type values (§4.1.4)
VIRTIO_PCI_CAP_COMMON_CFG = 1
VIRTIO_PCI_CAP_NOTIFY_CFG = 2
VIRTIO_PCI_CAP_ISR_CFG = 3
VIRTIO_PCI_CAP_DEVICE_CFG = 4
VIRTIO_PCI_CAP_PCI_CFG = 5  # the alternative access window through configuration space (§4.1.4.9)
VIRTIO_PCI_CAP_SHARED_MEMORY_CFG = 8
VIRTIO_PCI_CAP_VENDOR_CFG = 9
#: the structures a driver needs before it can touch the device (§4.1.4.1: common, notify, ISR, device)
REQUIRED_CAPS = (VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_CAP_ISR_CFG)
CAP_NAMES = {
    VIRTIO_PCI_CAP_COMMON_CFG: "common",
    VIRTIO_PCI_CAP_NOTIFY_CFG: "notify",
    VIRTIO_PCI_CAP_ISR_CFG: "isr",
    VIRTIO_PCI_CAP_DEVICE_CFG: "device",
    VIRTIO_PCI_CAP_PCI_CFG: "pci",
    VIRTIO_PCI_CAP_SHARED_MEMORY_CFG: "shared-memory",
    VIRTIO_PCI_CAP_VENDOR_CFG: "vendor",
}

# -- struct virtio_pci_common_cfg (§4.1.4.3), byte offsets ---------------------
#: §4.1.4.3 as a dtype (virtio 1.2 layout, 0x3C bytes), for reading the block at once.
VIRTIO_PCI_COMMON_CFG = np.dtype(
    [
        ("device_feature_select", "<u4"),  # 0x00 RW: which 32 bits of device_feature to show
        ("device_feature", "<u4"),  # 0x04 RO
        ("driver_feature_select", "<u4"),  # 0x08 RW
        ("driver_feature", "<u4"),  # 0x0C RW
        ("config_msix_vector", "<u2"),  # 0x10 RW
        ("num_queues", "<u2"),  # 0x12 RO
        ("device_status", "u1"),  # 0x14 RW: §2.1; writing 0 resets the device
        ("config_generation", "u1"),  # 0x15 RO
        ("queue_select", "<u2"),  # 0x16 RW: the queue the fields below speak of
        ("queue_size", "<u2"),  # 0x18 RW: the device's maximum on reset; the driver may lower it
        ("queue_msix_vector", "<u2"),  # 0x1A RW
        ("queue_enable", "<u2"),  # 0x1C RW: write 1 after the addresses
        ("queue_notify_off", "<u2"),  # 0x1E RO: this queue's slot in the notify structure
        ("queue_desc", "<u8"),  # 0x20 RW: descriptor table
        ("queue_driver", "<u8"),  # 0x28 RW: available ring ("driver area")
        ("queue_device", "<u8"),  # 0x30 RW: used ring ("device area")
        ("queue_notify_data", "<u2"),  # 0x38 RO (VIRTIO_F_NOTIF_CONFIG_DATA)
        ("queue_reset", "<u2"),  # 0x3A RW (VIRTIO_F_RING_RESET)
    ]
)


def common_field(field: str) -> tuple[int, int]:
    """(offset, width) of a field of struct virtio_pci_common_cfg: each is accessed at its own width (§4.1.3.1)."""
    fields = VIRTIO_PCI_COMMON_CFG.fields
    assert fields is not None
    dtype, offset = fields[field][:2]
    return int(offset), int(dtype.itemsize)


def _offset(field: str) -> int:
    return common_field(field)[0]


COMMON_DEVICE_FEATURE_SELECT = _offset("device_feature_select")
COMMON_DEVICE_FEATURE = _offset("device_feature")
COMMON_DRIVER_FEATURE_SELECT = _offset("driver_feature_select")
COMMON_DRIVER_FEATURE = _offset("driver_feature")
COMMON_CONFIG_MSIX_VECTOR = _offset("config_msix_vector")
COMMON_NUM_QUEUES = _offset("num_queues")
COMMON_DEVICE_STATUS = _offset("device_status")
COMMON_CONFIG_GENERATION = _offset("config_generation")
COMMON_QUEUE_SELECT = _offset("queue_select")
COMMON_QUEUE_SIZE = _offset("queue_size")
COMMON_QUEUE_MSIX_VECTOR = _offset("queue_msix_vector")
COMMON_QUEUE_ENABLE = _offset("queue_enable")
COMMON_QUEUE_NOTIFY_OFF = _offset("queue_notify_off")
COMMON_QUEUE_DESC = _offset("queue_desc")
COMMON_QUEUE_DRIVER = _offset("queue_driver")
COMMON_QUEUE_DEVICE = _offset("queue_device")
#: §4.1.5.1.2: "no vector" for config_msix_vector / queue_msix_vector (interrupts by INTx and the ISR)
VIRTIO_MSI_NO_VECTOR = 0xFFFF

# -- ISR status (§4.1.4.5): reading it returns and clears it ---------------------
ISR_QUEUE = 1 << 0  # a used buffer notification
ISR_CONFIG = 1 << 1  # a configuration change (also set with DEVICE_NEEDS_RESET, §2.1.2)

#: §2.2: 64 feature bits, shown and written 32 at a time through the *_feature_select registers
FEATURE_WORD_BITS = 32
#: §2.1 device status bits by name (the bits themselves: ring/virtio.py)
STATUS_NAMES = {
    virtio.STATUS_ACKNOWLEDGE: "ACKNOWLEDGE",
    virtio.STATUS_DRIVER: "DRIVER",
    virtio.STATUS_DRIVER_OK: "DRIVER_OK",
    virtio.STATUS_FEATURES_OK: "FEATURES_OK",
    virtio.STATUS_DEVICE_NEEDS_RESET: "DEVICE_NEEDS_RESET",
    virtio.STATUS_FAILED: "FAILED",
}
STATUS_RESET = 0  # written: reset the device (§4.1.4.3.1); reads back 0 once the reset is done
#: §5.1.4 struct virtio_net_config: the MAC's offset inside the device configuration structure, its length
NET_CONFIG_MAC = virtio.CONFIG_MAC - virtio.CONFIG
MAC_LEN = 6


def feature_bit(bit: int) -> int:
    """The 64-bit feature mask of one feature bit."""
    return 1 << bit


def status_text(status: int) -> str:
    """Device status bits by name, e.g. ``ACKNOWLEDGE|DRIVER|DEVICE_NEEDS_RESET`` ("RESET" for 0)."""
    if status == STATUS_RESET:
        return "RESET"
    names = [name for bit, name in STATUS_NAMES.items() if status & bit]
    rest = status & ~sum(STATUS_NAMES)
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names)
