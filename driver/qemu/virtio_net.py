"""QEMU's virtio-net-pci as a peer: brought up through the modern PCI transport, two queues, no offloads.

Features asked for (virtio 1.2 §5.1.3, §6) and why:

- ``VIRTIO_F_VERSION_1`` (required: a modern device, little-endian rings,
  and the 12-byte ``virtio_net_hdr`` with ``num_buffers`` always present,
  §5.1.6);
- ``VIRTIO_NET_F_MAC``: the MAC is read from the device configuration and
  checked against the one QEMU was given;
- ``VIRTIO_F_INDIRECT_DESC``: indirect tables are part of the format the
  verifier judges (§2.7.5), so the peer must accept them.

Left out: ``VIRTIO_NET_F_MRG_RXBUF`` (each received frame fills one chain,
as in the emulated device), ``VIRTIO_F_EVENT_IDX`` (notifications are
governed by the rings' flags only), ``VIRTIO_NET_F_CTRL_VQ``/``MQ`` (one
queue pair: receiveq1 is queue 0, transmitq1 queue 1, §5.1.2) and every
checksum/segmentation offload (the header's flags and gso_type stay 0).

QEMU has no interrupt a qtest client sees cheaply here either (INTx is
routed nowhere, MSI-X is left disabled): completions are in the used rings,
which live in the shared guest RAM, and in the ISR byte, which reading
clears (§4.1.4.5).  A device that met an error it cannot survive sets
``DEVICE_NEEDS_RESET`` in its status (§2.1.2; QEMU hw/virtio/virtio.c
``virtio_error`` for VERSION_1 devices) and ignores its queues until reset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from driver.pci import PciFunction
from driver.qemu.virtio_pci import QueueSetup, VirtioPciTransport, VirtioTransportError
from ring import virtio
from ring import virtio_pci as vp

#: Descriptors per virtqueue QEMU's virtio-net takes at most: its tx_queue_size is capped at 256 unless the peer
#: is vhost-user or vDPA (hw/net/virtio-net.c ``virtio_net_max_tx_queue_size``), and the rx_queue_size default
#: is 256 too (measured: QueueNumMax reads 256 for both queues of QEMU 7.2)
QEMU_QUEUE_MAX = 256
#: what the sandbox's own device offers (ring/virtio.py DEVICE_FEATURES), so both peers run the same protocol
WANTED_FEATURES = virtio.DEVICE_FEATURES
REQUIRED_FEATURES = vp.feature_bit(virtio.VIRTIO_F_VERSION_1)


@dataclass(frozen=True)
class RingAddresses:
    """Where one virtqueue's three parts are in guest-physical memory, and how many entries it has."""

    size: int
    desc: int
    driver: int  # the available ring
    device: int  # the used ring


class QemuVirtioNet:
    """One of QEMU's virtio-net-pci devices, modern transport only.

    ``irq`` is called by a poller when the ISR shows a used-buffer
    notification; ``kick`` after every notify (a poller may sleep until then).
    """

    def __init__(self, name: str, transport: VirtioPciTransport, mac: bytes, pci: PciFunction) -> None:
        self.name = name
        self.transport = transport
        self.mac = bytes(mac)
        self.pci = pci
        self.irq: Callable[[], None] | None = None
        self.kick: Callable[[], None] | None = None

    def start(self, queues: Mapping[int, RingAddresses]) -> int:
        """Reset, negotiate, set up ``queues`` (index -> rings), DRIVER_OK; returns the features agreed."""
        transport = self.transport
        transport.reset()
        features = transport.negotiate(WANTED_FEATURES, REQUIRED_FEATURES)
        if features & vp.feature_bit(virtio.VIRTIO_NET_F_MAC):
            found = self.config_mac()
            if found != self.mac:
                raise VirtioTransportError(f"{self.name}: device MAC {found.hex(':')} is not {self.mac.hex(':')}")
        for index, rings in sorted(queues.items()):
            transport.setup_queue(index, rings.size, rings.desc, rings.driver, rings.device)
        transport.driver_ok()
        return features

    def config_mac(self) -> bytes:
        raw = self.transport.device_config(vp.NET_CONFIG_MAC + vp.MAC_LEN)
        return raw[vp.NET_CONFIG_MAC : vp.NET_CONFIG_MAC + vp.MAC_LEN]

    def queue(self, index: int) -> QueueSetup:
        return self.transport.queues[index]

    def notify(self, index: int) -> None:
        """Ring queue ``index``'s doorbell (posted; the next read or flush carries it to QEMU)."""
        self.transport.notify(index)
        if self.kick is not None:
            self.kick()

    @property
    def status(self) -> int:
        return self.transport.status

    def needs_reset(self) -> bool:
        """True once the device gave up on its queues (DEVICE_NEEDS_RESET, §2.1.2)."""
        return bool(self.status & virtio.STATUS_DEVICE_NEEDS_RESET)

    def read_isr(self) -> int:
        return self.transport.read_isr()
