"""The kernel's driver for a virtio device's control path: probe, feature negotiation, queue setup.

The sequence is the spec's device initialisation (virtio 1.2 §3.1.1) over
the virtio-mmio transport (§4.2.3): reset (status 0), ACKNOWLEDGE, DRIVER,
read the device's features, write the ones the kernel accepts
(VIRTIO_F_VERSION_1, VIRTIO_NET_F_MAC, VIRTIO_F_INDIRECT_DESC), set
FEATURES_OK and read it back (the device clears it if it refuses the set),
then DRIVER_OK.  Each queue is set up as §4.2.3.2 says: select it, check
QueueNumMax, write QueueNum and the three areas' addresses, then QueueReady.
Only the kernel does this; a tenant gets a doorbell (or, in protection
``none``, the whole window).

This sandbox's kernel sets DRIVER_OK at attach time and sets queues up when
tenants open them, later; the spec orders queue setup before DRIVER_OK, and
the emulated device accepts both orders (docs/device.md says so).
"""

from __future__ import annotations

from ring import virtio as V
from ring.syscalls import RegisterBus

#: The features the kernel accepts when the device offers them.
WANTED_FEATURES = (1 << V.VIRTIO_F_VERSION_1) | (1 << V.VIRTIO_NET_F_MAC) | (1 << V.VIRTIO_F_INDIRECT_DESC)


class VirtioInitError(Exception):
    """The device is not a virtio-net device this kernel can drive."""


def is_virtio(bus: RegisterBus) -> bool:
    """The virtio-mmio probe (§4.2.3.1.1): MagicValue reads "virt" (an e1000's CTRL never does)."""
    return bus.read32(V.MAGIC_VALUE) == V.MMIO_MAGIC


def bring_up(bus: RegisterBus) -> int:
    """Initialise the device (§3.1.1); returns the negotiated features."""
    if bus.read32(V.VERSION) != V.MMIO_VERSION:
        raise VirtioInitError("virtio-mmio version is not 2 (a legacy device)")
    if bus.read32(V.DEVICE_ID) != V.VIRTIO_ID_NET:
        raise VirtioInitError("not a network device (device ID is not 1)")
    bus.write32(V.STATUS, 0)
    bus.write32(V.STATUS, V.STATUS_ACKNOWLEDGE)
    bus.write32(V.STATUS, V.STATUS_ACKNOWLEDGE | V.STATUS_DRIVER)
    offered = 0
    for sel in (0, 1):
        bus.write32(V.DEVICE_FEATURES_SEL, sel)
        offered |= bus.read32(V.DEVICE_FEATURES_REG) << (32 * sel)
    if not offered >> V.VIRTIO_F_VERSION_1 & 1:
        raise VirtioInitError("the device does not offer VIRTIO_F_VERSION_1")
    accepted = offered & WANTED_FEATURES
    for sel in (0, 1):
        bus.write32(V.DRIVER_FEATURES_SEL, sel)
        bus.write32(V.DRIVER_FEATURES_REG, (accepted >> (32 * sel)) & 0xFFFF_FFFF)
    status = V.STATUS_ACKNOWLEDGE | V.STATUS_DRIVER | V.STATUS_FEATURES_OK
    bus.write32(V.STATUS, status)
    if not bus.read32(V.STATUS) & V.STATUS_FEATURES_OK:
        bus.write32(V.STATUS, status | V.STATUS_FAILED)
        raise VirtioInitError("the device refused the features (FEATURES_OK stayed clear)")
    bus.write32(V.STATUS, status | V.STATUS_DRIVER_OK)
    return accepted


def program_queue(bus: RegisterBus, index: int, size: int, desc: int, avail: int, used: int) -> None:
    """Set up virtqueue ``index`` (§4.2.3.2): its size and the physical addresses of its three areas."""
    bus.write32(V.QUEUE_SEL, index)
    if bus.read32(V.QUEUE_READY):
        raise VirtioInitError(f"queue {index} is in use already")
    most = bus.read32(V.QUEUE_NUM_MAX)
    if size > most:
        raise VirtioInitError(f"queue {index} holds at most {most} descriptors, asked for {size}")
    bus.write32(V.QUEUE_NUM, size)
    for low, addr in ((V.QUEUE_DESC_LOW, desc), (V.QUEUE_DRIVER_LOW, avail), (V.QUEUE_DEVICE_LOW, used)):
        bus.write32(low, addr & 0xFFFF_FFFF)
        bus.write32(low + 4, addr >> 32)
    bus.write32(V.QUEUE_READY, 1)
