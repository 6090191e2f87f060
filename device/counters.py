"""Counters for hostile or undefined input, so the device never crashes or loops on it.

The datasheet's statistics registers (MPC, GPTC, ...) count normal traffic;
these count what a real NIC would answer with a hang, a master abort or
silence.  Each one is documented in docs/device.md and tested.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class DeviceCounters:
    bad_register_access: int = 0  # unaligned or out-of-BAR register access (reads return all ones)
    ring_len_misaligned: int = 0  # TDLEN/RDLEN written with bits 6:0 set (ignored, as in hardware)
    bad_ring_index: int = 0  # head or tail beyond the ring: the queue stalls, nothing is fetched
    desc_fetch_errors: int = 0  # a descriptor could not be fetched (ring outside memory): the queue stalls
    dma_errors: int = 0  # a buffer access was blocked: the packet is dropped (TX) or flagged RXE (RX)
    oversize_packets: int = 0  # TX packet longer than MAX_TX_PACKET, or still open past it: dropped
    empty_packets: int = 0  # TX packet with zero bytes: dropped
    unsupported_desc: int = 0  # DEXT (context/data) descriptors: consumed, their packet dropped
    csum_offset_errors: int = 0  # IC with CSO/CSS outside the packet: sent without insertion
    rx_filtered: int = 0  # frames the address filter refused
    rx_disabled: int = 0  # frames that arrived with RCTL.EN clear or the link down
    rx_oversize: int = 0  # frames over 1522 bytes with FCS without RCTL.LPE (also in ROC)
    tx_no_carrier: int = 0  # frames sent with no wire attached

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
