"""The virtio split virtqueue, the virtio-net header and the virtio-mmio register map, declared once.

Facts from the Virtual I/O Device (VIRTIO) Version 1.2 specification ("the
spec"): §2.7 split virtqueues (the descriptor table, the available ring and
the used ring, their alignment and sizes), §2.7.5 indirect descriptors,
§2.7.7/§2.7.8 the used ring, §4.2.2 the virtio-mmio register layout,
§5.1 the network device (its feature bits, its config space and the
``struct virtio_net_hdr`` that precedes every frame, §5.1.6).  All little
endian (§1.4: virtio 1.x fields are ``le``).  Every other module builds and
reads virtqueues through these dtypes and constants; no module computes a
field offset itself.

A split virtqueue is three areas the driver allocates (§2.7):

* the descriptor table: ``size`` ``struct virtq_desc`` of 16 bytes (a
  buffer's address and length, flags, and the index of the next descriptor
  of its chain);
* the available ring (driver -> device): ``flags``, a free-running 16-bit
  ``idx``, ``ring[size]`` of chain heads and ``used_event``;
* the used ring (device -> driver): ``flags``, a free-running ``idx``,
  ``ring[size]`` of ``{id, len}`` (the chain's head and the bytes the device
  wrote into it) and ``avail_event``.

The indices are free-running: they count to 65535 and wrap, and a slot is
``idx % size`` (``size`` a power of two, so ``idx & (size - 1)``); the
arithmetic is ring/indices.py's ``distance16`` and ``slot16``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# -- §2.7.5 The virtqueue descriptor table --------------------------------------------------------------------
#: struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; }: 16 bytes.
VIRTQ_DESC = np.dtype([("addr", "<u8"), ("len", "<u4"), ("flags", "<u2"), ("next", "<u2")])
VIRTQ_DESC_SIZE = 16
VIRTQ_DESC_F_NEXT = 1  # the buffer continues via the next field
VIRTQ_DESC_F_WRITE = 2  # the buffer is device write-only (otherwise device read-only)
VIRTQ_DESC_F_INDIRECT = 4  # the buffer holds a table of descriptors (§2.7.5.3)
#: The flag bits this sandbox's device and kernel know; others are refused by the verifier.
VIRTQ_DESC_F_KNOWN = VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_INDIRECT

# -- §2.7.6 The available ring ------------------------------------------------------------------------------
VIRTQ_AVAIL_F_NO_INTERRUPT = 1  # the driver asks not to be interrupted (a hint)
#: flags, idx, then ring[size] of u16 heads, then used_event (only with VIRTIO_F_EVENT_IDX).
AVAIL_HEADER = 4  # bytes before ring[0]
AVAIL_FLAGS, AVAIL_IDX = 0, 2  # byte offsets of the two header fields

# -- §2.7.8 The used ring -----------------------------------------------------------------------------------
VIRTQ_USED_F_NO_NOTIFY = 1  # the device asks not to be notified (a hint)
#: struct virtq_used_elem { le32 id; le32 len; }: the chain's head and the bytes written into its buffers.
VIRTQ_USED_ELEM = np.dtype([("id", "<u4"), ("len", "<u4")])
USED_HEADER = 4
USED_FLAGS, USED_IDX = 0, 2
#: Sandbox-defined: the kernel refused this chain and completed it without any DMA.  A device writes at most
#: the chain's writable bytes into ``len`` and the kernel caps a chain's sum at 2**32 - 1 bytes, of which a
#: real chain in this machine's memory has a tiny fraction, so no real completion says this (as e1000's
#: TXD_STAT_REFUSED uses a reserved status bit).
VIRTQ_USED_LEN_REFUSED = 0xFFFF_FFFF

# -- §2.7 Alignment and size (table "Virtqueue Part / Alignment / Size") --------------------------------------
DESC_ALIGN = 16
AVAIL_ALIGN = 2
USED_ALIGN = 4
#: "Queue Size ... The maximum Queue Size value is 32768" and "must be a power of 2" for split virtqueues.
MAX_QUEUE_SIZE = 32768
#: Indices are le16 and free-running (§2.7.6, §2.7.8).
INDEX_MODULUS = 1 << 16


def check_queue_size(size: int) -> None:
    """A split virtqueue's size is a power of two from 1 to 32768 (§2.7)."""
    if not 1 <= size <= MAX_QUEUE_SIZE or size & (size - 1):
        raise ValueError(f"a split virtqueue's size must be a power of 2 from 1 to {MAX_QUEUE_SIZE}, got {size}")


def avail_bytes(size: int) -> int:
    """Bytes of the available ring: flags, idx, ring[size], used_event (§2.7: 6 + 2 * Queue Size)."""
    return 6 + 2 * size


def used_bytes(size: int) -> int:
    """Bytes of the used ring: flags, idx, ring[size] of 8-byte elements, avail_event (§2.7: 6 + 8 * Queue Size)."""
    return 6 + 8 * size


def avail_dtype(size: int) -> np.dtype[np.void]:
    """The available ring of a queue of ``size`` as one record (§2.7.6)."""
    return np.dtype([("flags", "<u2"), ("idx", "<u2"), ("ring", "<u2", (size,)), ("used_event", "<u2")])


def used_dtype(size: int) -> np.dtype[np.void]:
    """The used ring of a queue of ``size`` as one record (§2.7.8)."""
    return np.dtype([("flags", "<u2"), ("idx", "<u2"), ("ring", VIRTQ_USED_ELEM, (size,)), ("avail_event", "<u2")])


def _align(offset: int, alignment: int) -> int:
    return -(-offset // alignment) * alignment


@dataclass(frozen=True)
class VirtqLayout:
    """Where the three parts of one virtqueue lie inside one driver-allocated region (byte offsets).

    The modern transports take the three addresses separately (virtio-mmio's
    QueueDesc, QueueDriver, QueueDevice), so any placement that keeps each
    part's alignment is valid; this one packs them in order, as the legacy
    layout did without its page padding.
    """

    size: int
    desc: int
    avail: int
    used: int
    nbytes: int

    @classmethod
    def of(cls, size: int) -> VirtqLayout:
        check_queue_size(size)
        avail = _align(size * VIRTQ_DESC_SIZE, AVAIL_ALIGN)
        used = _align(avail + avail_bytes(size), USED_ALIGN)
        return cls(size, 0, avail, used, used + used_bytes(size))


# -- §5.1.6 struct virtio_net_hdr ---------------------------------------------------------------------------------
#: With VIRTIO_F_VERSION_1 the header is always 12 bytes, num_buffers included (§5.1.6: "The legacy driver only
#: presented num_buffers in the struct virtio_net_hdr when VIRTIO_NET_F_MRG_RXBUF was negotiated; without that
#: feature the structure was 2 bytes shorter").
VIRTIO_NET_HDR = np.dtype(
    [
        ("flags", "u1"),
        ("gso_type", "u1"),
        ("hdr_len", "<u2"),
        ("gso_size", "<u2"),
        ("csum_start", "<u2"),
        ("csum_offset", "<u2"),
        ("num_buffers", "<u2"),
    ]
)
VIRTIO_NET_HDR_SIZE = 12
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2
VIRTIO_NET_HDR_GSO_NONE = 0

# -- §5.1.2 virtqueues of a network device ------------------------------------------------------------------------
RECEIVEQ = 0  # receiveq1
TRANSMITQ = 1  # transmitq1

# -- §5.1.3 feature bits, and §6 reserved (device-independent) ones --------------------------------------------
VIRTIO_NET_F_CSUM = 0
VIRTIO_NET_F_MAC = 5  # the device has a MAC address in its config space
VIRTIO_NET_F_MRG_RXBUF = 15  # the driver can merge receive buffers (not offered by this device)
VIRTIO_NET_F_STATUS = 16
VIRTIO_F_INDIRECT_DESC = 28  # §2.7.5.3: the driver may use indirect descriptor tables
VIRTIO_F_EVENT_IDX = 29
VIRTIO_F_VERSION_1 = 32  # compliance with the 1.x spec: little endian, the 12-byte header
#: What this sandbox's virtio-net device offers, and so what a driver may accept.
DEVICE_FEATURES = (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_F_INDIRECT_DESC)

# -- §2.1 device status field -----------------------------------------------------------------------------------
STATUS_ACKNOWLEDGE = 1
STATUS_DRIVER = 2
STATUS_DRIVER_OK = 4
STATUS_FEATURES_OK = 8
STATUS_DEVICE_NEEDS_RESET = 64  # the device met an error it cannot recover from (QEMU's virtio_error)
STATUS_FAILED = 128

# -- §4.2.2 MMIO device register layout (version 2, "non-legacy") -----------------------------------------------
MMIO_MAGIC = 0x74726976  # "virt", little endian
MMIO_VERSION = 2
VIRTIO_ID_NET = 1  # §5: device ID of a network card
MAGIC_VALUE = 0x000
VERSION = 0x004
DEVICE_ID = 0x008
VENDOR_ID = 0x00C
DEVICE_FEATURES_REG = 0x010
DEVICE_FEATURES_SEL = 0x014
DRIVER_FEATURES_REG = 0x020
DRIVER_FEATURES_SEL = 0x024
QUEUE_SEL = 0x030
QUEUE_NUM_MAX = 0x034
QUEUE_NUM = 0x038
QUEUE_READY = 0x044
QUEUE_NOTIFY = 0x050  # the doorbell: the driver writes a queue's index (the kernel traps it)
INTERRUPT_STATUS = 0x060
INTERRUPT_ACK = 0x064
STATUS = 0x070
QUEUE_DESC_LOW = 0x080
QUEUE_DESC_HIGH = 0x084
QUEUE_DRIVER_LOW = 0x090  # the available ring ("driver area")
QUEUE_DRIVER_HIGH = 0x094
QUEUE_DEVICE_LOW = 0x0A0  # the used ring ("device area")
QUEUE_DEVICE_HIGH = 0x0A4
CONFIG_GENERATION = 0x0FC
CONFIG = 0x100  # device-specific configuration space
#: §5.1.4 struct virtio_net_config: mac[6] first, then le16 status.
CONFIG_MAC = CONFIG + 0
CONFIG_NET_STATUS = CONFIG + 6
MMIO_SIZE = 0x200
VIRTIO_MMIO_INT_VRING = 1  # InterruptStatus bit 0: the used ring was updated
VIRTIO_MMIO_INT_CONFIG = 2
#: The largest queue this sandbox's device offers (QueueNumMax); QEMU's VIRTQUEUE_MAX_SIZE is 1024.
DEVICE_QUEUE_NUM_MAX = 1024

_NAMED = (
    "MAGIC_VALUE", "VERSION", "DEVICE_ID", "VENDOR_ID", "DEVICE_FEATURES_REG", "DEVICE_FEATURES_SEL",
    "DRIVER_FEATURES_REG", "DRIVER_FEATURES_SEL", "QUEUE_SEL", "QUEUE_NUM_MAX", "QUEUE_NUM", "QUEUE_READY",
    "QUEUE_NOTIFY", "INTERRUPT_STATUS", "INTERRUPT_ACK", "STATUS", "QUEUE_DESC_LOW", "QUEUE_DESC_HIGH",
    "QUEUE_DRIVER_LOW", "QUEUE_DRIVER_HIGH", "QUEUE_DEVICE_LOW", "QUEUE_DEVICE_HIGH", "CONFIG_GENERATION",
)  # fmt: skip
NAMES: dict[int, str] = {globals()[name]: name for name in _NAMED}


def reg_name(offset: int) -> str:
    """The spec's name of a virtio-mmio register offset (config space by its byte)."""
    if offset in NAMES:
        return NAMES[offset].removesuffix("_REG")
    if offset >= CONFIG:
        return f"config[{offset - CONFIG:#x}]"
    return f"reg[{offset:#05x}]"
