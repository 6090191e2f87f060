"""Descriptor formats, declared once as numpy dtypes with named bit constants.

Intel 8254x (e1000) legacy descriptors, 16 bytes, little endian
(PCI/PCI-X Family of Gigabit Ethernet Controllers Software Developer's
Manual, 317453-006, section 3.2.3 "Receive Descriptor Format" and 3.3.3
"Legacy Transmit Descriptor Format"), and Linux AF_XDP's ``struct xdp_desc``
and its ``struct xsk_tx_metadata`` (include/uapi/linux/if_xdp.h).  Every other module reads and writes
descriptors through these dtypes; no module computes a field offset itself.
"""

from __future__ import annotations

import numpy as np

DESC_SIZE = 16  # bytes, both legacy formats

#: 3.3.3 Legacy transmit descriptor: buffer address, length, CSO, CMD, STA, CSS, special.
TX_DESC = np.dtype(
    [
        ("addr", "<u8"),  # 63:0   buffer address
        ("length", "<u2"),  # 79:64  bytes in this buffer
        ("cso", "u1"),  # 87:80  checksum offset (where to insert)
        ("cmd", "u1"),  # 95:88  command
        ("status", "u1"),  # 99:96  status (DD) + reserved
        ("css", "u1"),  # 111:104 checksum start
        ("special", "<u2"),  # 127:112 VLAN tag
    ]
)

#: 3.2.3 Receive descriptor: buffer address, length, packet checksum, status, errors, special.
RX_DESC = np.dtype(
    [
        ("addr", "<u8"),
        ("length", "<u2"),
        ("csum", "<u2"),
        ("status", "u1"),
        ("errors", "u1"),
        ("special", "<u2"),
    ]
)

#: include/uapi/linux/if_xdp.h: struct xdp_desc { __u64 addr; __u32 len; __u32 options; }
XDP_DESC = np.dtype([("addr", "<u8"), ("len", "<u4"), ("options", "<u4")])

# -- AF_XDP xdp_desc.options bits (include/uapi/linux/if_xdp.h) ---------------
XDP_PKT_CONTD = 1 << 0  # more fragments of this packet follow (multi-buffer)
XDP_TX_METADATA = 1 << 1  # a struct xsk_tx_metadata lies tx_metadata_len bytes before addr

#: include/uapi/linux/if_xdp.h (Linux 6.15 and later, "xsk: Add launch time hardware offload support
#: to XDP Tx metadata"): the metadata a descriptor with XDP_TX_METADATA carries in the
#: ``tx_metadata_len`` bytes in front of its buffer, 24 bytes (16 before 6.15, without launch_time):
#:
#:     struct xsk_tx_metadata {
#:         __u64 flags;
#:         union {
#:             struct { __u16 csum_start; __u16 csum_offset; __u64 launch_time; } request;
#:             struct { __u64 tx_timestamp; } completion;
#:         };
#:     };
#:
#: Only ``request`` is declared here: ``completion.tx_timestamp`` overlays bytes 8..15, which
#: the kernel writes when the frame completes (XDP_TXMD_FLAGS_TIMESTAMP).  Layout checked against
#: the BTF of Linux 6.18.44 (/sys/kernel/btf/vmlinux): size 24, offsets 0, 8, 10, 16.
XSK_TX_METADATA = np.dtype(
    {
        "names": ["flags", "csum_start", "csum_offset", "launch_time"],
        "formats": ["<u8", "<u2", "<u2", "<u8"],
        "offsets": [0, 8, 10, 16],
        "itemsize": 24,
    }
)

# -- AF_XDP xsk_tx_metadata.flags (include/uapi/linux/if_xdp.h) ----------------
XDP_TXMD_FLAGS_TIMESTAMP = 1 << 0  # write a completion timestamp into completion.tx_timestamp
XDP_TXMD_FLAGS_CHECKSUM = 1 << 1  # offload an L4 checksum: request.csum_start, request.csum_offset
XDP_TXMD_FLAGS_LAUNCH_TIME = 1 << 2  # send at request.launch_time (Linux 6.15 and later)

# -- AF_XDP xdp_umem_reg.flags (include/uapi/linux/if_xdp.h) --------------------
XDP_UMEM_UNALIGNED_CHUNK_FLAG = 1 << 0  # buffers may start anywhere, not only inside one chunk
XDP_UMEM_TX_SW_CSUM = 1 << 1  # checksum offload requests done in software
XDP_UMEM_TX_METADATA_LEN = 1 << 2  # honour xdp_umem_reg.tx_metadata_len (ignored without it)
#: net/xdp/xdp_umem.c xdp_umem_reg: chunk_size may not be smaller than this (nor larger than a page).
XDP_UMEM_MIN_CHUNK_SIZE = 2048

# -- AF_XDP unaligned-mode addresses (include/uapi/linux/if_xdp.h) --------------
#: In unaligned chunk mode ``addr`` carries an offset in its top 16 bits; the buffer
#: starts at ``(addr & XSK_UNALIGNED_BUF_ADDR_MASK) + (addr >> XSK_UNALIGNED_BUF_OFFSET_SHIFT)``.
XSK_UNALIGNED_BUF_OFFSET_SHIFT = 48
XSK_UNALIGNED_BUF_ADDR_MASK = (1 << XSK_UNALIGNED_BUF_OFFSET_SHIFT) - 1

# -- TX CMD bits (3.3.3.1) --------------------------------------------------
TXD_CMD_EOP = 0x01  # end of packet
TXD_CMD_IFCS = 0x02  # insert FCS
TXD_CMD_IC = 0x04  # insert checksum (at CSO, summed from CSS)
TXD_CMD_RS = 0x08  # report status: write DD back when done
TXD_CMD_RPS = 0x10  # report packet sent (82544 only; reserved elsewhere)
TXD_CMD_DEXT = 0x20  # descriptor extension: context/data format, not legacy
TXD_CMD_VLE = 0x40  # VLAN packet enable
TXD_CMD_IDE = 0x80  # interrupt delay enable

# -- TX STATUS bits (3.3.3.2) -----------------------------------------------
TXD_STAT_DD = 0x01  # descriptor done
TXD_STAT_EC = 0x02  # excess collisions
TXD_STAT_LC = 0x04  # late collision
TXD_STAT_TU = 0x08  # transmit underrun (82544)
#: Sandbox-defined: the kernel refused this descriptor and completed it with an
#: error, as RDMA completes a bad SGE with IBV_WC_LOC_PROT_ERR.  Bits 7:4 of
#: the legacy STA byte are reserved in the datasheet, so no real status clashes.
TXD_STAT_REFUSED = 0x80

# -- RX STATUS bits (3.2.3.1) -----------------------------------------------
RXD_STAT_DD = 0x01  # descriptor done
RXD_STAT_EOP = 0x02  # end of packet
RXD_STAT_IXSM = 0x04  # ignore checksum indication
RXD_STAT_VP = 0x08  # 802.1Q
RXD_STAT_TCPCS = 0x20  # TCP checksum calculated
RXD_STAT_IPCS = 0x40  # IP checksum calculated
RXD_STAT_PIF = 0x80  # passed in-exact filter

# -- RX ERRORS bits (3.2.3.2) -----------------------------------------------
RXD_ERR_CE = 0x01  # CRC or alignment error
RXD_ERR_SE = 0x02  # symbol error
RXD_ERR_SEQ = 0x04  # sequence error
RXD_ERR_CXE = 0x10  # carrier extension error
RXD_ERR_TCPE = 0x20  # TCP/UDP checksum error
RXD_ERR_IPE = 0x40  # IP checksum error
RXD_ERR_RXE = 0x80  # RX data error
#: Sandbox-defined: the kernel refused this RX descriptor (see TXD_STAT_REFUSED).
#: The device never sets RXE together with DD on a good frame, so RXE|DD with
#: length 0 marks a descriptor completed back without any DMA.
RXD_ERR_REFUSED = RXD_ERR_RXE

#: Legacy TX CMD bits this sandbox's device implements; anything else is refused
#: by the verifier and ignored by the device.
TXD_CMD_SUPPORTED = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_IC | TXD_CMD_RS | TXD_CMD_IDE

# Frame limits (802.3 and 8254x section 3.3.1)
ETH_FCS_LEN = 4
ETH_MIN_FRAME = 60  # without FCS; TCTL.PSP pads shorter frames to this
ETH_MAX_FRAME = 1514  # without FCS, standard MTU 1500
#: 8254x: "the maximum size of a transmit packet is 16288 bytes" (jumbo, 3.3.1)
MAX_TX_PACKET = 16288


def word_shift(dtype: np.dtype[np.void], name: str) -> int:
    """Bit position of field ``name`` inside the descriptor's second little-endian 64-bit word.

    A legacy descriptor is two words: the buffer address, then length and
    the command/status bytes.  Drivers that fill or read a burst of
    descriptors as whole words (ixy writes ``cmd_type_len`` as one 32-bit
    store) take the shifts from here, so the layout stays the dtype's.
    """
    fields = dtype.fields
    if fields is None or name not in fields:
        raise ValueError(f"the descriptor has no field {name!r}")
    offset = int(fields[name][1])
    if not 8 <= offset < 16:
        raise ValueError(f"{name} is not in the second word of the descriptor")
    return (offset - 8) * 8
