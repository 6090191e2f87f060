"""The demo's frames: scapy's template, numpy's stamping, RFC 768 checksums."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from world.traffic import MAX_SIZE, MIN_SIZE, UdpFlow, sequence_numbers, swap_endpoints

A = bytes.fromhex("020000000001")
B = bytes.fromhex("020000000002")


def scapy_udp_checksum(raw: bytes) -> int:
    pkt = Ether(raw)
    del pkt[UDP].chksum
    return int(Ether(bytes(pkt))[UDP].chksum)


@given(size=st.integers(MIN_SIZE, MAX_SIZE), first=st.integers(0, 2**40), seed=st.integers(0, 100))
def test_every_frame_has_scapy_checked_headers_and_checksum(size: int, first: int, seed: int) -> None:
    flow = UdpFlow(A, B, "198.18.0.1", "198.18.0.2", size, seed)
    batch = flow.frames(first, 3)
    assert list(batch.lengths) == [size - 4] * 3
    for i, raw in enumerate(batch):
        pkt = Ether(raw)
        assert pkt[IP].src == "198.18.0.1" and pkt[IP].dst == "198.18.0.2"
        assert pkt[UDP].len == size - 4 - 14 - 20
        assert pkt[UDP].chksum == scapy_udp_checksum(raw)
        assert int.from_bytes(raw[42:50], "big") == first + i


def test_sequence_numbers_and_echo_keep_checksums_valid() -> None:
    flow = UdpFlow(A, B, "198.18.0.1", "198.18.0.2", 100)
    rows = flow.expected(np.array([5, 9, 2**33], dtype=np.uint64))
    assert list(sequence_numbers(rows)) == [5, 9, 2**33]
    echoed = swap_endpoints(rows)
    for raw in echoed:
        pkt = Ether(bytes(raw))
        assert pkt.src == "02:00:00:00:00:02" and pkt[IP].src == "198.18.0.2" and pkt[UDP].sport == 9001
        assert pkt[UDP].chksum == scapy_udp_checksum(bytes(raw))
        assert pkt[IP].chksum == IP(bytes(pkt[IP])).chksum


def test_payload_differs_by_seed_and_sequence() -> None:
    one = UdpFlow(A, B, "198.18.0.1", "198.18.0.2", 128, seed=1).expected(np.arange(2, dtype=np.uint64))
    two = UdpFlow(A, B, "198.18.0.1", "198.18.0.2", 128, seed=2).expected(np.arange(2, dtype=np.uint64))
    assert bytes(one[0]) != bytes(one[1])
    assert bytes(one[0]) != bytes(two[0])


@pytest.mark.parametrize("size", [MIN_SIZE - 1, MAX_SIZE + 1])
def test_sizes_outside_ethernet_are_refused(size: int) -> None:
    with pytest.raises(ValueError, match="frame size"):
        UdpFlow(A, B, "198.18.0.1", "198.18.0.2", size)
