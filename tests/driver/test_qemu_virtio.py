"""QEMU's virtio-net-pci over qtest: the capability walk, initialization, and frames both ways on raw queues."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from driver import pci
from driver.qemu.args import VIRTIO_NET, QemuNicSpec, device_option
from driver.qemu.loopback import cable_socket
from driver.qemu.machine import BAR0_BASE, BAR_WINDOW
from driver.qemu.virtio_mmio import QemuVirtioMmio
from driver.qemu.virtio_net import WANTED_FEATURES
from driver.qemu.virtio_pci import find_regions
from ring import virtio
from ring import virtio_pci as vp
from tests.driver.qemu_rig import MACS, Rig, qemu_rig
from tests.driver.virtio_rig import RawQueue, VirtioPort, virtio_ports

pytestmark = pytest.mark.privileged


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with qemu_rig(nics=2, model=VIRTIO_NET) as rig:
        yield rig


@pytest.fixture
def ports(rig: Rig) -> dict[str, VirtioPort]:
    """Both NICs restarted on fresh rings (a reset clears whatever a test left)."""
    return virtio_ports(rig)


def test_the_device_is_asked_for_modern_only() -> None:
    sock = cable_socket()
    try:
        option = device_option(QemuNicSpec("nic0", MACS[0], sock, model=VIRTIO_NET), "n0", 2)
    finally:
        sock.close()
    assert option.startswith("virtio-net-pci,") and "disable-legacy=on" in option and "addr=0x2" in option


def test_the_capability_walk_finds_every_structure(rig: Rig) -> None:
    config = pci.PciConfig(rig.machine.connection)
    fn = rig.virtio("nic0").pci
    assert (fn.vendor, fn.device_id) == (vp.VENDOR_VIRTIO, vp.DEVICE_VIRTIO_NET)
    assert config.read8(fn, pci.REVISION_ID) >= vp.MODERN_MIN_REVISION
    regions, multiplier = find_regions(config, fn)
    assert set(regions) >= {vp.VIRTIO_PCI_CAP_COMMON_CFG, vp.VIRTIO_PCI_CAP_NOTIFY_CFG, vp.VIRTIO_PCI_CAP_ISR_CFG,
                            vp.VIRTIO_PCI_CAP_DEVICE_CFG}  # fmt: skip
    assert multiplier == 4  # measured on QEMU 7.2: one 32-bit slot per queue
    transport = rig.virtio("nic0").transport
    for region in transport.regions.values():  # every structure lies in a BAR placed inside the NIC's window
        assert BAR0_BASE <= region.address < BAR0_BASE + BAR_WINDOW
        assert region.offset + region.length <= BAR_WINDOW
    assert not any(pci.COMMAND_IO & config.read32(fn, pci.COMMAND) for _ in [0])  # no I/O decoding asked for


def test_initialization_negotiates_version_1_and_reads_the_mac(rig: Rig, ports: dict[str, VirtioPort]) -> None:
    for i, name in enumerate(("nic0", "nic1")):
        nic = rig.virtio(name)
        status = nic.status
        wanted = (virtio.STATUS_ACKNOWLEDGE | virtio.STATUS_DRIVER | virtio.STATUS_FEATURES_OK
                  | virtio.STATUS_DRIVER_OK)  # fmt: skip
        assert status == wanted, vp.status_text(status)
        assert nic.transport.features == WANTED_FEATURES  # QEMU offers all three
        assert nic.config_mac() == MACS[i]
        assert nic.transport.queues[virtio.TRANSMITQ].size == ports[name].tx.size


def test_frames_go_out_on_the_wire_and_come_in_from_it(rig: Rig, ports: dict[str, VirtioPort]) -> None:
    """nic0 sends (the cable carries the bare frames), the test carries them to nic1, which stores each
    behind a zeroed 12-byte header.  Unlike its e1000, QEMU 7.2's virtio-net does not pad short frames."""
    frames = [MACS[1] + MACS[0] + b"\x88\xb5" + bytes([k]) * (40 + 20 * k) for k in range(3)]
    ports["nic0"].send(frames)
    assert rig.wire("nic0", 3) == frames
    assert ports["nic0"].tx.used_entries(3) == [(0, 0), (2, 0), (4, 0)]  # QEMU's TX completes with len 0
    ports["nic1"].post_rx(4)
    rig.inject(frames, "nic1")
    got = ports["nic1"].rx.used_entries(3)
    assert len(frames[0]) < 60
    assert got == [(k, virtio.VIRTIO_NET_HDR_SIZE + len(f)) for k, f in enumerate(frames)]
    for entry, frame in zip(got, frames, strict=True):
        header, body = ports["nic1"].received(entry)
        assert body == frame
        assert header == bytes(virtio.VIRTIO_NET_HDR_SIZE)  # no offloads: flags 0, GSO_NONE; num_buffers 0
    assert rig.virtio("nic1").read_isr() & vp.ISR_QUEUE
    assert rig.virtio("nic1").read_isr() == 0  # reading cleared it


def test_the_virtio_mmio_register_map_drives_qemus_pci_device(rig: Rig) -> None:
    """§4.2.3.1's initialization through virtio-mmio offsets (the emulated device's map), then a frame out."""
    bus = QemuVirtioMmio(rig.virtio("nic0"))
    assert (bus.read32(virtio.MAGIC_VALUE), bus.read32(virtio.VERSION), bus.read32(virtio.DEVICE_ID)) == (
        virtio.MMIO_MAGIC, virtio.MMIO_VERSION, virtio.VIRTIO_ID_NET)  # fmt: skip
    bus.write32(virtio.STATUS, 0)
    assert bus.read32(virtio.STATUS) == 0
    bus.write32(virtio.STATUS, virtio.STATUS_ACKNOWLEDGE | virtio.STATUS_DRIVER)
    offered = 0
    for select in range(2):
        bus.write32(virtio.DEVICE_FEATURES_SEL, select)
        offered |= bus.read32(virtio.DEVICE_FEATURES_REG) << (32 * select)
    accepted = offered & virtio.DEVICE_FEATURES
    assert accepted == virtio.DEVICE_FEATURES
    for select in range(2):
        bus.write32(virtio.DRIVER_FEATURES_SEL, select)
        bus.write32(virtio.DRIVER_FEATURES_REG, accepted >> (32 * select) & 0xFFFF_FFFF)
    bus.write32(virtio.STATUS, bus.read32(virtio.STATUS) | virtio.STATUS_FEATURES_OK)
    assert bus.read32(virtio.STATUS) & virtio.STATUS_FEATURES_OK
    tx = RawQueue(rig.memory)
    bus.write32(virtio.QUEUE_SEL, virtio.TRANSMITQ)
    assert bus.read32(virtio.QUEUE_NUM_MAX) == 256  # QEMU's tx_queue_size default
    bus.write32(virtio.QUEUE_NUM, tx.size)
    assert bus.read32(virtio.QUEUE_NUM_MAX) == 256  # still the maximum, though PCI's queue_size now reads 8
    for low, address in ((virtio.QUEUE_DESC_LOW, tx.rings.desc), (virtio.QUEUE_DRIVER_LOW, tx.rings.driver),
                         (virtio.QUEUE_DEVICE_LOW, tx.rings.device)):  # fmt: skip
        bus.write32(low, address & 0xFFFF_FFFF)
        bus.write32(low + 4, address >> 32)
        assert bus.read32(low) == address
    bus.write32(virtio.QUEUE_READY, 1)
    bus.write32(virtio.STATUS, bus.read32(virtio.STATUS) | virtio.STATUS_DRIVER_OK)
    assert bus.read32(virtio.CONFIG_MAC) | bus.read32(virtio.CONFIG_MAC + 4) << 32 & 0xFFFF_FFFF_FFFF == (
        int.from_bytes(MACS[0], "little"))  # fmt: skip
    frame = MACS[1] + MACS[0] + b"\x88\xb5" + bytes(50)
    tx.write(tx.buffer(0), bytes(virtio.VIRTIO_NET_HDR_SIZE) + frame)
    tx.set_desc(0, tx.buffer(0), virtio.VIRTIO_NET_HDR_SIZE + len(frame))
    tx.publish([0])
    bus.write32(virtio.QUEUE_NOTIFY, virtio.TRANSMITQ)
    assert rig.wire("nic0") == [frame]
    assert tx.used_entries(1) == [(0, 0)]
    assert bus.read32(virtio.INTERRUPT_STATUS) & virtio.VIRTIO_MMIO_INT_VRING
    assert bus.read32(virtio.INTERRUPT_STATUS) & virtio.VIRTIO_MMIO_INT_VRING  # kept until acknowledged
    bus.write32(virtio.INTERRUPT_ACK, virtio.VIRTIO_MMIO_INT_VRING)
    assert bus.read32(virtio.INTERRUPT_STATUS) == 0
    assert bus.read32(virtio.MMIO_SIZE) == 0xFFFF_FFFF  # outside the map
