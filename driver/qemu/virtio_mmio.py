"""QEMU's virtio-net-pci seen through the virtio-mmio register map: the same ``RegisterBus`` as the emulated device.

The sandbox's own virtio-net device speaks the virtio-mmio transport
(virtio 1.2 §4.2.2, ring/virtio.py), so its kernel and tenant program a
device by 32-bit reads and writes at those offsets.  QEMU's device is on
PCI, where the same fields sit in the common configuration structure found
through the capability list (§4.1.4.3, driver/qemu/virtio_pci.py).  The
two layouts carry the same facts (§4.2.2 and §4.1.4.3 list the same
fields), so this class translates one register access into the other:

- feature, queue and status registers map one to one onto common
  configuration fields, each accessed at the PCI field's own width;
- QueueNumMax is the PCI ``queue_size`` read before the driver writes it
  (on PCI one field holds both: the maximum until written, §4.1.4.3);
- QueueNotify (the doorbell) becomes a write at the queue's PCI notify
  address;
- InterruptStatus reads the PCI ISR, which a read clears (§4.1.4.5); the
  bits are kept until the driver writes them to InterruptACK, as the
  virtio-mmio device keeps them (§4.2.2);
- the device configuration (``CONFIG`` and up) is read a byte at a time.

A register virtio-mmio has and PCI lacks reads as 0; a write to one is
dropped, as for an unimplemented register.

The adapter also remembers where the driver put each queue's rings (the
addresses it translated), so a poller can tell from the shared guest RAM
whether QEMU still has transmit work: QEMU transmits in a bottom half after
the notify, not inside it (``tx_busy``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from driver.qemu.virtio_net import QemuVirtioNet
from driver.qemu.virtio_pci import VirtioPciTransport
from ring import virtio
from ring import virtio_pci as vp

U32 = 0xFFFF_FFFF

#: virtio-mmio register -> the common configuration field holding the same fact (§4.2.2 vs §4.1.4.3)
FIELDS = {
    virtio.DEVICE_FEATURES_REG: "device_feature",
    virtio.DEVICE_FEATURES_SEL: "device_feature_select",
    virtio.DRIVER_FEATURES_REG: "driver_feature",
    virtio.DRIVER_FEATURES_SEL: "driver_feature_select",
    virtio.QUEUE_SEL: "queue_select",
    virtio.QUEUE_NUM: "queue_size",
    virtio.QUEUE_READY: "queue_enable",
    virtio.STATUS: "device_status",
    virtio.CONFIG_GENERATION: "config_generation",
}
#: the 64-bit ring addresses: (low register, high register) -> the field, written as two 32-bit halves
ADDRESS_HALVES = {
    virtio.QUEUE_DESC_LOW: ("queue_desc", 0),
    virtio.QUEUE_DESC_HIGH: ("queue_desc", 4),
    virtio.QUEUE_DRIVER_LOW: ("queue_driver", 0),
    virtio.QUEUE_DRIVER_HIGH: ("queue_driver", 4),
    virtio.QUEUE_DEVICE_LOW: ("queue_device", 0),
    virtio.QUEUE_DEVICE_HIGH: ("queue_device", 4),
}
IDENTITY = {
    virtio.MAGIC_VALUE: virtio.MMIO_MAGIC,
    virtio.VERSION: virtio.MMIO_VERSION,
    virtio.DEVICE_ID: virtio.VIRTIO_ID_NET,
    virtio.VENDOR_ID: vp.VENDOR_VIRTIO,
}


class QemuVirtioMmio:
    """A ``RegisterBus`` with virtio-mmio offsets in front of one of QEMU's virtio-net-pci devices."""

    def __init__(self, nic: QemuVirtioNet, ram: npt.NDArray[np.uint8] | None = None) -> None:
        self.nic = nic
        self.ram = ram  # the guest RAM (shared), for ``tx_busy``
        self.transport: VirtioPciTransport = nic.transport
        self.name = nic.name
        self.mac = nic.mac
        self._selected = 0
        self._max: dict[int, int] = {}  # queue -> size read before the driver wrote one
        self._notify: dict[int, int] = {}  # queue -> notify address
        self._pending_isr = 0  # InterruptStatus bits not yet acknowledged
        self._rings: dict[tuple[int, str], int] = {}  # (queue, common field) -> address the driver wrote
        #: called after every notify (a poller sleeping until a doorbell wakes up)
        self.kick: Callable[[], None] | None = None
        #: QEMU's virtio-net never drops a frame for want of a buffer: it stops reading its cable until one is
        #: posted (a frame lost there is the socket's, driver/qemu/loopback.py ``udp_drops``)
        self.missed = 0

    @property
    def irq(self) -> Callable[[], None] | None:
        return self.nic.irq

    @irq.setter
    def irq(self, line: Callable[[], None] | None) -> None:
        self.nic.irq = line

    def _common_address(self, field: str, extra: int = 0) -> int:
        return self.transport.common + vp.common_field(field)[0] + extra

    def read32(self, offset: int) -> int:
        if offset % 4 or not 0 <= offset < virtio.MMIO_SIZE:
            return U32
        if offset in IDENTITY:
            return IDENTITY[offset]
        if offset == virtio.QUEUE_NUM_MAX:
            return self._queue_max(self._selected)
        if offset == virtio.INTERRUPT_STATUS:
            self.latch_isr(self.transport.read_isr())
            return self._pending_isr
        if offset in FIELDS:
            return self.transport.read_common(FIELDS[offset]) & U32
        if offset in ADDRESS_HALVES:
            field, half = ADDRESS_HALVES[offset]
            return self.transport.qtest.readl(self._common_address(field, half))
        if offset >= virtio.CONFIG:
            raw = self.transport.device_config(offset - virtio.CONFIG + 4)
            return int.from_bytes(raw[offset - virtio.CONFIG :], "little")
        return 0

    def write32(self, offset: int, value: int) -> None:
        if offset % 4 or not 0 <= offset < virtio.MMIO_SIZE:
            return
        value &= U32
        if offset == virtio.QUEUE_NOTIFY:
            self._doorbell(value & 0xFFFF)
        elif offset == virtio.INTERRUPT_ACK:
            self._pending_isr &= ~value
        elif offset == virtio.QUEUE_SEL:
            self._selected = value & 0xFFFF
            self.transport.write_common("queue_select", self._selected)
        elif offset == virtio.QUEUE_NUM:
            self._queue_max(self._selected)  # the maximum, before the write replaces it
            self.transport.write_common("queue_size", value)
        elif offset == virtio.STATUS:
            if value == vp.STATUS_RESET:
                self.transport.reset()
                self._max.clear()
                self._notify.clear()
                self._rings.clear()
                self._pending_isr = 0
            else:
                self.transport.write_common("device_status", value)
        elif offset in FIELDS:
            self.transport.write_common(FIELDS[offset], value)
        elif offset in ADDRESS_HALVES:
            field, half = ADDRESS_HALVES[offset]
            self.transport.qtest.writel(self._common_address(field, half), value)
            key = (self._selected, field)
            self._rings[key] = self._rings.get(key, 0) & ~(U32 << (8 * half)) | value << (8 * half)

    def _queue_max(self, index: int) -> int:
        if index not in self._max:
            self.transport.write_common("queue_select", index)
            self._max[index] = self.transport.read_common("queue_size")
            off = self.transport.read_common("queue_notify_off")
            self._notify[index] = self.transport.notify_base + off * self.transport.notify_multiplier
        return self._max[index]

    def _doorbell(self, index: int) -> None:
        if index not in self._notify:
            self._queue_max(index)
            self.transport.write_common("queue_select", self._selected)
        self.transport.qtest.writew(self._notify[index], index)
        if self.kick is not None:
            self.kick()

    def latch_isr(self, bits: int) -> None:
        """ISR bits read (and so cleared) by anyone: kept for InterruptStatus until InterruptACK."""
        self._pending_isr |= bits

    def tx_busy(self) -> bool:
        """transmitq1 holds chains QEMU has not returned yet (its avail idx ahead of its used idx, in guest RAM).

        False when the queue's rings are unknown (not set up through this adapter) or there is no RAM to look at.
        """
        driver = self._rings.get((virtio.TRANSMITQ, "queue_driver"))
        device = self._rings.get((virtio.TRANSMITQ, "queue_device"))
        ram = self.ram
        if ram is None or driver is None or device is None:
            return False
        avail_idx = ram[driver + 2 : driver + 4].view(np.uint16)[0]  # §2.7.6: flags, then idx
        used_idx = ram[device + 2 : device + 4].view(np.uint16)[0]  # §2.7.8: flags, then idx
        return bool(avail_idx != used_idx)
