"""Sequence-numbered UDP traffic, built by scapy once and stamped by numpy per burst.

scapy builds and checks the template (Ether/IPv4/UDP, IP header checksum);
each frame then differs only in its payload: an 8-byte big-endian sequence
number followed by a pattern derived from the seed and the sequence number.
The UDP checksum (RFC 768, over the pseudo-header) is computed for the whole
burst at once, so `tcpdump -vv` can confirm every frame independently.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from ring.descriptors import ETH_FCS_LEN, ETH_MAX_FRAME
from ring.frames import FrameBatch

ETH_HLEN, IP_HLEN, UDP_HLEN = 14, 20, 8
HEADERS = ETH_HLEN + IP_HLEN + UDP_HLEN
SEQ_LEN = 8
MIN_SIZE = 64  # bytes on the wire with FCS, the 802.3 minimum
MAX_SIZE = ETH_MAX_FRAME + ETH_FCS_LEN
# byte offsets inside a frame
MAC_DST, MAC_SRC = slice(0, 6), slice(6, 12)
IP_SRC, IP_DST = slice(ETH_HLEN + 12, ETH_HLEN + 16), slice(ETH_HLEN + 16, ETH_HLEN + 20)
UDP_SPORT, UDP_DPORT = slice(ETH_HLEN + 20, ETH_HLEN + 22), slice(ETH_HLEN + 22, ETH_HLEN + 24)
UDP_CSUM = slice(ETH_HLEN + 26, ETH_HLEN + 28)
PAYLOAD = HEADERS


def fold(total: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Fold a ones'-complement sum to 16 bits."""
    for _ in range(4):
        total = (total & np.uint64(0xFFFF)) + (total >> np.uint64(16))
    return total


@dataclass(frozen=True)
class UdpFlow:
    """One direction of the demo's traffic: fixed headers, numbered payloads."""

    src_mac: bytes
    dst_mac: bytes
    src_ip: str
    dst_ip: str
    size: int  # bytes on the wire, FCS included (DPDK's convention: "64-byte frames")
    seed: int = 1
    sport: int = 9000
    dport: int = 9001

    def __post_init__(self) -> None:
        if not MIN_SIZE <= self.size <= MAX_SIZE:
            raise ValueError(f"frame size must be between {MIN_SIZE} and {MAX_SIZE} bytes (FCS included)")

    @property
    def frame_len(self) -> int:
        """Bytes the tenant hands to the NIC (the NIC appends the FCS)."""
        return self.size - ETH_FCS_LEN

    @cached_property
    def template(self) -> npt.NDArray[np.uint8]:
        """The frame with sequence number 0's headers, built (and checksummed) by scapy."""
        pkt = (
            Ether(src=_mac(self.src_mac), dst=_mac(self.dst_mac))
            / IP(src=self.src_ip, dst=self.dst_ip, ttl=64, id=0, flags="DF")
            / UDP(sport=self.sport, dport=self.dport)
            / Raw(bytes(self.frame_len - HEADERS))
        )
        raw = bytes(pkt)
        if len(raw) != self.frame_len:
            raise AssertionError("scapy template has the wrong length")
        return np.frombuffer(raw, dtype=np.uint8).copy()

    @cached_property
    def _pattern(self) -> npt.NDArray[np.uint8]:
        rng = np.random.default_rng(self.seed)
        return rng.integers(0, 256, self.frame_len - HEADERS - SEQ_LEN, dtype=np.uint8)

    def frames(self, first_seq: int, count: int) -> FrameBatch:
        """Frames with sequence numbers ``first_seq .. first_seq + count - 1``."""
        seqs = np.arange(first_seq, first_seq + count, dtype=np.uint64)
        return FrameBatch.from_matrix(self.expected(seqs))

    def expected(self, seqs: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
        """The exact bytes of the frames with these sequence numbers, as an (n, len) matrix."""
        rows = np.tile(self.template, (seqs.size, 1))
        rows[:, PAYLOAD : PAYLOAD + SEQ_LEN] = seqs.astype(">u8").view(np.uint8).reshape(-1, SEQ_LEN)
        rows[:, PAYLOAD + SEQ_LEN :] = self._pattern[None, :] + (seqs & np.uint64(0xFF)).astype(np.uint8)[:, None]
        rows[:, UDP_CSUM] = udp_checksums(rows)
        return rows


def udp_checksums(rows: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """RFC 768 checksums of IPv4/UDP frames (an (n, len) matrix), as (n, 2) big-endian bytes."""
    n, length = rows.shape
    udp_len = length - ETH_HLEN - IP_HLEN
    body = rows[:, ETH_HLEN + IP_HLEN :].copy()
    body[:, 6:8] = 0  # the checksum field counts as zero
    if udp_len % 2:
        body = np.concatenate([body, np.zeros((n, 1), dtype=np.uint8)], axis=1)
    words = body.view(">u2").astype(np.uint64).sum(axis=1)
    addrs = rows[:, ETH_HLEN + 12 : ETH_HLEN + 20].copy().view(">u2").astype(np.uint64).sum(axis=1)
    total = fold(words + addrs + np.uint64(17) + np.uint64(udp_len))
    csum = (~total) & np.uint64(0xFFFF)
    csum[csum == 0] = 0xFFFF  # RFC 768: a computed zero is sent as all ones
    return csum.astype(">u2").view(np.uint8).reshape(n, 2)


def sequence_numbers(rows: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """The sequence number of each frame of an (n, len) matrix."""
    return rows[:, PAYLOAD : PAYLOAD + SEQ_LEN].copy().view(">u8").ravel().astype(np.uint64)


def swap_endpoints(rows: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Echo: swap MACs, IPs and ports.  Both checksums stay valid (ones'-complement sums commute)."""
    out = rows.copy()
    out[:, MAC_DST], out[:, MAC_SRC] = rows[:, MAC_SRC], rows[:, MAC_DST]
    out[:, IP_SRC], out[:, IP_DST] = rows[:, IP_DST], rows[:, IP_SRC]
    out[:, UDP_SPORT], out[:, UDP_DPORT] = rows[:, UDP_DPORT], rows[:, UDP_SPORT]
    return out


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)
