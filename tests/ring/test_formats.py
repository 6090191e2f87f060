"""Descriptor formats: sizes, byte order and field offsets of the 8254x legacy layouts and xdp_desc."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from ring import descriptors as d


def test_sizes() -> None:
    assert d.DESC_SIZE == 16
    assert d.TX_DESC.itemsize == 16
    assert d.RX_DESC.itemsize == 16
    assert d.XDP_DESC.itemsize == 16


@pytest.mark.parametrize(
    ("dtype", "layout"),
    [
        (
            d.TX_DESC,
            {
                "addr": (0, 8),
                "length": (8, 2),
                "cso": (10, 1),
                "cmd": (11, 1),
                "status": (12, 1),
                "css": (13, 1),
                "special": (14, 2),
            },
        ),
        (
            d.RX_DESC,
            {
                "addr": (0, 8),
                "length": (8, 2),
                "csum": (10, 2),
                "status": (12, 1),
                "errors": (13, 1),
                "special": (14, 2),
            },
        ),
        (d.XDP_DESC, {"addr": (0, 8), "len": (8, 4), "options": (12, 4)}),
    ],
)
def test_field_offsets_and_little_endian(dtype: np.dtype[np.void], layout: dict[str, tuple[int, int]]) -> None:
    assert dtype.names == tuple(layout)
    assert dtype.fields is not None
    for name, (offset, size) in layout.items():
        field_dtype, field_offset = dtype.fields[name][:2]
        assert field_offset == offset, name
        assert field_dtype.itemsize == size, name
        assert field_dtype.kind == "u", name
        assert field_dtype.byteorder in ("<", "|") or (field_dtype.byteorder == "=" and np.little_endian), name


def test_tx_desc_bytes_match_struct() -> None:
    desc = np.zeros(1, dtype=d.TX_DESC)
    desc["addr"] = 0x0123_4567_89AB_CDEF
    desc["length"] = 0x0ABC
    desc["cso"] = 0x11
    desc["cmd"] = d.TXD_CMD_EOP | d.TXD_CMD_IFCS | d.TXD_CMD_RS
    desc["status"] = d.TXD_STAT_DD
    desc["css"] = 0x22
    desc["special"] = 0xBEEF
    expected = struct.pack("<QHBBBBH", 0x0123_4567_89AB_CDEF, 0x0ABC, 0x11, 0x0B, 0x01, 0x22, 0xBEEF)
    assert desc.tobytes() == expected
    back = np.frombuffer(expected, dtype=d.TX_DESC)[0]
    assert int(back["addr"]) == 0x0123_4567_89AB_CDEF
    assert int(back["special"]) == 0xBEEF


def test_rx_desc_bytes_match_struct() -> None:
    desc = np.zeros(1, dtype=d.RX_DESC)
    desc["addr"] = 0xFEDC_BA98_7654_3210
    desc["length"] = 1514
    desc["csum"] = 0x1234
    desc["status"] = d.RXD_STAT_DD | d.RXD_STAT_EOP
    desc["errors"] = d.RXD_ERR_RXE
    desc["special"] = 0x0042
    expected = struct.pack("<QHHBBH", 0xFEDC_BA98_7654_3210, 1514, 0x1234, 0x03, 0x80, 0x0042)
    assert desc.tobytes() == expected


def test_xdp_desc_bytes_match_struct() -> None:
    desc = np.zeros(1, dtype=d.XDP_DESC)
    desc["addr"] = 0x1000
    desc["len"] = 0x0102_0304
    desc["options"] = 7
    assert desc.tobytes() == struct.pack("<QII", 0x1000, 0x0102_0304, 7)


def test_bit_constants() -> None:
    assert d.TXD_CMD_EOP == 0x01
    assert d.TXD_CMD_IFCS == 0x02
    assert d.TXD_CMD_IC == 0x04
    assert d.TXD_CMD_RS == 0x08
    assert d.TXD_CMD_DEXT == 0x20
    assert d.TXD_STAT_DD == 0x01
    assert d.RXD_STAT_DD == 0x01
    assert d.RXD_STAT_EOP == 0x02
    # the sandbox-defined refusal marks use bits the datasheet reserves
    assert d.TXD_STAT_REFUSED == 0x80
    assert d.RXD_ERR_REFUSED == d.RXD_ERR_RXE
    assert d.TXD_CMD_DEXT & d.TXD_CMD_SUPPORTED == 0


def test_frame_limits() -> None:
    assert d.ETH_FCS_LEN == 4
    assert d.ETH_MIN_FRAME == 60
    assert d.ETH_MAX_FRAME == 1514
    assert d.MAX_TX_PACKET == 16288
