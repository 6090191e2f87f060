"""The split virtqueue and virtio-net formats against the virtio 1.2 spec: sizes, offsets, alignment, registers."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from ring import indices
from ring import virtio as v


def test_desc_is_16_bytes_le() -> None:
    assert v.VIRTQ_DESC.itemsize == v.VIRTQ_DESC_SIZE == 16
    assert v.VIRTQ_DESC.fields is not None
    assert {k: f[1] for k, f in v.VIRTQ_DESC.fields.items()} == {"addr": 0, "len": 8, "flags": 12, "next": 14}
    d = np.zeros(1, dtype=v.VIRTQ_DESC)
    d["addr"], d["len"], d["flags"], d["next"] = 0x1122334455667788, 0xAABBCCDD, 0x0102, 0x0304
    assert d.tobytes() == struct.pack("<QIHH", 0x1122334455667788, 0xAABBCCDD, 0x0102, 0x0304)


def test_flag_values() -> None:  # §2.7.5
    assert (v.VIRTQ_DESC_F_NEXT, v.VIRTQ_DESC_F_WRITE, v.VIRTQ_DESC_F_INDIRECT) == (1, 2, 4)


@pytest.mark.parametrize("size", [1, 2, 256, 32768])
def test_ring_sizes(size: int) -> None:  # §2.7 table: 16 * n, 6 + 2 * n, 6 + 8 * n
    assert v.avail_dtype(size).itemsize == v.avail_bytes(size) == 6 + 2 * size
    assert v.used_dtype(size).itemsize == v.used_bytes(size) == 6 + 8 * size
    used = v.used_dtype(size)
    assert used.fields is not None and used.fields["ring"][1] == 4 and used.fields["avail_event"][1] == 4 + 8 * size
    assert v.VIRTQ_USED_ELEM.itemsize == 8


@pytest.mark.parametrize("size", [1, 2, 4, 8, 256, 1024])
def test_layout_alignment(size: int) -> None:
    lay = v.VirtqLayout.of(size)
    assert lay.desc % v.DESC_ALIGN == 0 and lay.avail % v.AVAIL_ALIGN == 0 and lay.used % v.USED_ALIGN == 0
    assert lay.avail >= size * 16 and lay.used >= lay.avail + v.avail_bytes(size)
    assert lay.nbytes == lay.used + v.used_bytes(size)


@pytest.mark.parametrize("size", [0, 3, 6, 65536, 32769, -1])
def test_queue_size_must_be_power_of_two_up_to_32768(size: int) -> None:
    with pytest.raises(ValueError, match="power of 2"):
        v.check_queue_size(size)


def test_net_header_is_12_bytes() -> None:  # §5.1.6 with VERSION_1
    assert v.VIRTIO_NET_HDR.itemsize == v.VIRTIO_NET_HDR_SIZE == 12
    assert v.VIRTIO_NET_HDR.fields is not None
    offsets = {k: f[1] for k, f in v.VIRTIO_NET_HDR.fields.items()}
    assert offsets == {"flags": 0, "gso_type": 1, "hdr_len": 2, "gso_size": 4, "csum_start": 6, "csum_offset": 8,
                       "num_buffers": 10}  # fmt: skip


def test_mmio_register_offsets() -> None:  # §4.2.2
    assert v.MAGIC_VALUE == 0 and v.VERSION == 4 and v.DEVICE_ID == 8
    assert v.QUEUE_NOTIFY == 0x050 and v.INTERRUPT_STATUS == 0x060 and v.STATUS == 0x070
    assert (v.QUEUE_DESC_LOW, v.QUEUE_DRIVER_LOW, v.QUEUE_DEVICE_LOW) == (0x080, 0x090, 0x0A0)
    assert v.CONFIG == 0x100 and struct.pack("<I", v.MMIO_MAGIC) == b"virt"
    assert v.reg_name(0x050) == "QUEUE_NOTIFY" and v.reg_name(0x010) == "DEVICE_FEATURES"
    assert v.reg_name(0x101) == "config[0x1]"


def test_features() -> None:
    assert v.DEVICE_FEATURES >> v.VIRTIO_F_VERSION_1 & 1 and v.DEVICE_FEATURES >> v.VIRTIO_NET_F_MAC & 1
    assert not v.DEVICE_FEATURES >> v.VIRTIO_NET_F_MRG_RXBUF & 1


def test_free_running_indices() -> None:
    assert indices.distance16(65535, 1) == 2
    assert indices.distance16(10, 10) == 0
    assert indices.slot16(65535, 256) == 255 and indices.slot16(65536 + 3, 8) == 3
