"""The virtio PCI transport's layouts match virtio 1.2 §4.1.4 byte for byte."""

from __future__ import annotations

from ring import virtio
from ring import virtio_pci as vp


def test_capability_layouts_are_the_specs() -> None:
    assert vp.VIRTIO_PCI_CAP.itemsize == 16  # §4.1.4 struct virtio_pci_cap
    assert vp.VIRTIO_PCI_NOTIFY_CAP.itemsize == 20  # + le32 notify_off_multiplier
    fields = vp.VIRTIO_PCI_CAP.fields
    assert fields is not None
    assert {name: fields[name][1] for name in ("cfg_type", "bar", "offset", "length")} == {
        "cfg_type": 3, "bar": 4, "offset": 8, "length": 12}  # fmt: skip


def test_common_configuration_offsets_are_the_specs() -> None:
    expected = {  # §4.1.4.3, "struct virtio_pci_common_cfg"
        "device_feature_select": (0x00, 4), "device_feature": (0x04, 4), "driver_feature_select": (0x08, 4),
        "driver_feature": (0x0C, 4), "config_msix_vector": (0x10, 2), "num_queues": (0x12, 2),
        "device_status": (0x14, 1), "config_generation": (0x15, 1), "queue_select": (0x16, 2),
        "queue_size": (0x18, 2), "queue_msix_vector": (0x1A, 2), "queue_enable": (0x1C, 2),
        "queue_notify_off": (0x1E, 2), "queue_desc": (0x20, 8), "queue_driver": (0x28, 8),
        "queue_device": (0x30, 8), "queue_notify_data": (0x38, 2), "queue_reset": (0x3A, 2),
    }  # fmt: skip
    assert {name: vp.common_field(name) for name in expected} == expected
    assert vp.VIRTIO_PCI_COMMON_CFG.itemsize == 0x3C
    assert vp.DEVICE_VIRTIO_NET == 0x1041


def test_status_reads_by_name() -> None:
    assert vp.status_text(0) == "RESET"
    status = virtio.STATUS_ACKNOWLEDGE | virtio.STATUS_DRIVER | virtio.STATUS_DEVICE_NEEDS_RESET | 0x10
    assert vp.status_text(status) == "ACKNOWLEDGE|DRIVER|DEVICE_NEEDS_RESET|0x10"
