"""The modern virtio PCI transport of one QEMU device, over qtest: capabilities, status, features, queues, notify.

What a guest's virtio-pci driver does at probe time (virtio 1.2 §3.1.1
"Driver Requirements: Device Initialization" and §4.1.5.1 for PCI), done
by the project because no guest runs:

1. walk the PCI capability list for the vendor-specific capabilities
   (§4.1.4) and note where COMMON, NOTIFY, ISR and DEVICE live (which BAR,
   which offset);
2. place every memory BAR the function has (a 64-bit BAR takes two
   registers) and turn on memory decoding and bus mastering;
3. reset (write 0 to device_status, read until it reads 0: §4.1.4.3.2),
   then ACKNOWLEDGE, then DRIVER;
4. read the 64 device feature bits 32 at a time, write the subset the
   driver wants, set FEATURES_OK and read it back: a device that clears it
   refused the subset (§3.1.1 steps 5-6);
5. per queue: select it, read its maximum size (0: no such queue), write
   the size wanted and the three ring addresses, read its notify offset,
   enable it (§4.1.5.1.3);
6. DRIVER_OK.

Each common-configuration field is accessed with its own width (§4.1.3.1:
"the driver MUST access each field using the 'natural' access method"),
64-bit addresses as two 32-bit writes, low half first.  A notification
is a 16-bit write of the queue's index at ``notify.offset +
queue_notify_off * notify_off_multiplier`` (§4.1.4.4, §4.1.5.2).

Measured on Debian's QEMU 7.2 (``virtio-net-pci,disable-legacy=on``):
revision 1, no I/O BAR; BAR4 is a 16 KiB 64-bit prefetchable BAR holding
COMMON at 0x0, ISR at 0x1000, DEVICE at 0x2000 and NOTIFY at 0x3000
(multiplier 4, each 0x1000 long); BAR1 is the 4 KiB MSI-X table; a
PCI_CFG capability comes too.  The code reads all of this from the
capabilities and assumes none of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from driver.pci import BAR_COUNT, PciConfig, PciFunction
from driver.qemu.qtest import Qtest
from ring import virtio
from ring import virtio_pci as vp

#: The structures that live in a BAR and are reached by MMIO (§4.1.4.3-§4.1.4.6).
MAPPED_CAPS = (vp.VIRTIO_PCI_CAP_COMMON_CFG, vp.VIRTIO_PCI_CAP_NOTIFY_CFG, vp.VIRTIO_PCI_CAP_ISR_CFG,
               vp.VIRTIO_PCI_CAP_DEVICE_CFG)  # fmt: skip
#: How many status reads a reset may take before the device counts as stuck.
RESET_POLLS = 100


class VirtioTransportError(Exception):
    """The device is not a modern virtio PCI device, or refused a step of initialization."""


@dataclass(frozen=True)
class Region:
    """One structure a virtio capability points at: where it is in MMIO space and how long."""

    cfg_type: int
    bar: int
    offset: int  # inside the BAR
    length: int
    address: int  # guest-physical MMIO address, once the BAR is placed

    @property
    def name(self) -> str:
        return vp.CAP_NAMES.get(self.cfg_type, f"type {self.cfg_type}")


@dataclass(frozen=True)
class QueueSetup:
    """What the driver told the device about one virtqueue, and where its doorbell is."""

    index: int
    size: int
    desc: int
    driver: int  # the available ring
    device: int  # the used ring
    notify_address: int


def find_regions(pci: PciConfig, fn: PciFunction) -> tuple[dict[int, tuple[int, int, int]], int]:
    """The first capability of each cfg_type as (bar, offset, length), and NOTIFY's multiplier (§4.1.4).

    §4.1.4.1: "The device MAY offer more than one structure of any type";
    the driver should use the first one it can, and ignore reserved types.
    """
    found: dict[int, tuple[int, int, int]] = {}
    multiplier = 0
    for cap in pci.capabilities(fn):
        if cap.cap_id != vp.PCI_CAP_ID_VNDR or len(cap.raw) < vp.VIRTIO_PCI_CAP.itemsize:
            continue
        head = np.frombuffer(cap.raw[: vp.VIRTIO_PCI_CAP.itemsize], dtype=vp.VIRTIO_PCI_CAP)[0]
        cfg_type, bar = int(head["cfg_type"]), int(head["bar"])
        if cfg_type not in vp.CAP_NAMES or bar >= BAR_COUNT or cfg_type in found:
            continue
        found[cfg_type] = (bar, int(head["offset"]), int(head["length"]))
        if cfg_type == vp.VIRTIO_PCI_CAP_NOTIFY_CFG and len(cap.raw) >= vp.VIRTIO_PCI_NOTIFY_CAP.itemsize:
            notify = np.frombuffer(cap.raw[: vp.VIRTIO_PCI_NOTIFY_CAP.itemsize], dtype=vp.VIRTIO_PCI_NOTIFY_CAP)[0]
            multiplier = int(notify["notify_off_multiplier"])
    missing = [vp.CAP_NAMES[t] for t in vp.REQUIRED_CAPS if t not in found]
    if missing:
        raise VirtioTransportError(f"{fn.bdf}: no virtio {', '.join(missing)} capability")
    return found, multiplier


class VirtioPciTransport:
    """The modern PCI transport of one virtio function: MMIO through qtest, BARs placed from ``bar_base``.

    ``bar_base`` is the start of an MMIO window of ``window`` bytes reserved
    for this function; each memory BAR goes at the next address aligned to
    its size (a BAR's address must be a multiple of its size, PCI 3.0 6.2.5.1).
    """

    def __init__(self, qtest: Qtest, pci: PciConfig, fn: PciFunction, bar_base: int, window: int) -> None:
        self.qtest = qtest
        self.fn = fn
        self.bars = self._place_bars(pci, fn, bar_base, window)
        caps, self.notify_multiplier = find_regions(pci, fn)
        self.regions: dict[int, Region] = {}
        for cfg_type, (bar, offset, length) in caps.items():
            if cfg_type not in MAPPED_CAPS:  # PCI_CFG is a window in configuration space, not in a BAR
                continue
            if bar not in self.bars:
                raise VirtioTransportError(f"{fn.bdf}: {vp.CAP_NAMES[cfg_type]} lies in BAR{bar}, not a memory BAR")
            self.regions[cfg_type] = Region(cfg_type, bar, offset, length, self.bars[bar] + offset)
        pci.enable_decoding(fn)
        self.common = self.regions[vp.VIRTIO_PCI_CAP_COMMON_CFG].address
        self.isr_address = self.regions[vp.VIRTIO_PCI_CAP_ISR_CFG].address
        self.notify_base = self.regions[vp.VIRTIO_PCI_CAP_NOTIFY_CFG].address
        device = self.regions.get(vp.VIRTIO_PCI_CAP_DEVICE_CFG)
        self.device_cfg = None if device is None else device.address
        self.features = 0  # negotiated
        self.queues: dict[int, QueueSetup] = {}

    @staticmethod
    def _place_bars(pci: PciConfig, fn: PciFunction, base: int, window: int) -> dict[int, int]:
        """Place every memory BAR of ``fn`` inside [base, base + window); returns BAR index -> address."""
        placed: dict[int, int] = {}
        cursor = base
        index = 0
        while index < BAR_COUNT:
            raw = pci.read32(fn, 0x10 + 4 * index)
            if raw & 1:  # an I/O BAR: a modern-only device has none to use
                index += 1
                continue
            size, wide = pci.memory_bar_size(fn, index)
            if size:
                cursor = (cursor + size - 1) // size * size
                if cursor + size > base + window:
                    raise VirtioTransportError(f"{fn.bdf}: BARs do not fit in {window:#x} bytes at {base:#x}")
                pci.place_memory_bar(fn, index, cursor)
                placed[index] = cursor
                cursor += size
            index += 2 if wide else 1
        return placed

    # -- the common configuration, each field at its own width (§4.1.3.1) -------------
    def read_common(self, field: str) -> int:
        offset, width = vp.common_field(field)
        address = self.common + offset
        if width == 1:
            return self.qtest.readb(address)
        if width == 2:
            return self.qtest.readw(address)
        if width == 4:
            return self.qtest.readl(address)
        low, high = self.qtest.readl_many([address, address + 4])
        return high << 32 | low

    def write_common(self, field: str, value: int) -> None:
        offset, width = vp.common_field(field)
        address = self.common + offset
        if width == 1:
            self.qtest.writeb(address, value)
        elif width == 2:
            self.qtest.writew(address, value)
        elif width == 4:
            self.qtest.writel(address, value)
        else:  # §4.1.3.1: a 64-bit field as two 32-bit writes, low half first
            self.qtest.writel(address, value & 0xFFFF_FFFF)
            self.qtest.writel(address + 4, value >> 32)

    # -- status (§2.1) ---------------------------------------------------------------
    @property
    def status(self) -> int:
        return self.read_common("device_status")

    def add_status(self, bits: int) -> None:
        self.write_common("device_status", self.status | bits)

    def reset(self) -> None:
        """Write 0 and wait until the device reads back 0 (§4.1.4.3.2); forgets the queues and features."""
        self.write_common("device_status", vp.STATUS_RESET)
        for _ in range(RESET_POLLS):
            if self.status == vp.STATUS_RESET:
                break
        else:
            raise VirtioTransportError(f"{self.fn.bdf}: device status did not read 0 after a reset")
        self.features = 0
        self.queues.clear()

    # -- features (§2.2, §3.1.1 steps 4-6) ------------------------------------------
    def device_features(self) -> int:
        words = []
        for select in range(2):
            self.write_common("device_feature_select", select)
            words.append(self.read_common("device_feature"))
        return words[1] << vp.FEATURE_WORD_BITS | words[0]

    def negotiate(self, wanted: int, required: int) -> int:
        """ACKNOWLEDGE, DRIVER, the offered subset of ``wanted`` written, FEATURES_OK checked; returns it."""
        self.add_status(virtio.STATUS_ACKNOWLEDGE)
        self.add_status(virtio.STATUS_DRIVER)
        offered = self.device_features()
        missing = required & ~offered
        if missing:
            self.add_status(virtio.STATUS_FAILED)
            raise VirtioTransportError(f"{self.fn.bdf}: the device does not offer features {missing:#x}")
        accepted = offered & wanted
        for select in range(2):
            self.write_common("driver_feature_select", select)
            self.write_common("driver_feature", accepted >> (vp.FEATURE_WORD_BITS * select) & 0xFFFF_FFFF)
        self.add_status(virtio.STATUS_FEATURES_OK)
        if not self.status & virtio.STATUS_FEATURES_OK:
            self.add_status(virtio.STATUS_FAILED)
            raise VirtioTransportError(f"{self.fn.bdf}: the device refused features {accepted:#x}")
        self.features = accepted
        return accepted

    # -- queues (§4.1.5.1.3) ------------------------------------------------------------
    def max_queue_size(self, index: int) -> int:
        self.write_common("queue_select", index)
        return self.read_common("queue_size")

    def setup_queue(self, index: int, size: int, desc: int, driver: int, device: int) -> QueueSetup:
        """Tell the device where queue ``index``'s rings are and enable it; returns its doorbell address."""
        limit = self.max_queue_size(index)
        if limit == 0:
            raise VirtioTransportError(f"{self.fn.bdf}: queue {index} does not exist")
        if not 0 < size <= limit:
            raise VirtioTransportError(f"{self.fn.bdf}: queue {index} holds at most {limit}, not {size}")
        self.write_common("queue_size", size)
        self.write_common("queue_desc", desc)
        self.write_common("queue_driver", driver)
        self.write_common("queue_device", device)
        notify_off = self.read_common("queue_notify_off")
        self.write_common("queue_enable", 1)
        setup = QueueSetup(index, size, desc, driver, device, self.notify_base + notify_off * self.notify_multiplier)
        self.queues[index] = setup
        return setup

    def driver_ok(self) -> None:
        self.add_status(virtio.STATUS_DRIVER_OK)
        self.qtest.flush()

    def notify(self, index: int) -> None:
        """The doorbell: the queue's 16-bit index written at its notify address (§4.1.5.2), posted."""
        self.qtest.writew(self.queues[index].notify_address, index)

    def read_isr(self) -> int:
        """The ISR status byte; reading clears it (§4.1.4.5)."""
        return self.qtest.readb(self.isr_address)

    def device_config(self, length: int) -> bytes:
        """The first ``length`` bytes of the device-specific configuration (byte reads: any width is allowed)."""
        if self.device_cfg is None:
            raise VirtioTransportError(f"{self.fn.bdf}: no device configuration capability")
        answers = self.qtest.execute([f"readb {self.device_cfg + i:#x}" for i in range(length)])
        return bytes(int(a, 16) & 0xFF for a in answers)
