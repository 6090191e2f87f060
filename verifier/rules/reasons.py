"""Stable reason codes for every rejection, each tied to the real-world rule it mirrors.

A reason code is part of the audit log's schema: once published, a code is
never renamed or reused.  Codes are small integers inside the vectorised
checks (so a batch's verdicts are one uint8 array) and strings everywhere a
person or a file sees them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    code: int
    name: str
    rule: str  # what is checked
    mirrors: str  # the real-world rule it models


_ALL = [
    Reason(0, "OK", "accepted", ""),
    # -- ring ---------------------------------------------------------------------
    Reason(1, "RING_TAIL_BEYOND", "the new tail is not a slot of the ring (tail >= ring size)",
           "e1000 TDT/RDT index a ring of TDLEN/16 slots; vhost: a head index >= vq->num is -EINVAL"),
    Reason(2, "RING_TAIL_BACKWARDS", "the new tail lies behind the old one, inside descriptors still in flight",
           "AF_XDP and virtio producers only move forward (free-running u32 indices)"),
    Reason(3, "RING_OVERRUN", "more new descriptors than free slots: the tenant overwrote descriptors the device owns",
           "vhost_get_vq_desc: 'moved used index from ... to ...' more than the ring size"),
    # -- length -------------------------------------------------------------------
    Reason(10, "LEN_ZERO", "a TX buffer of zero bytes",
           "AF_XDP xp_aligned_validate_desc rejects len == 0 (net/xdp/xsk_queue.h)"),
    Reason(11, "LEN_TOO_LONG", "a buffer longer than the per-descriptor limit",
           "AF_XDP: a descriptor may not exceed its chunk; ibv_post_send: SGE beyond MR"),
    Reason(12, "PKT_TOO_LONG", "a packet (all fragments to EOP) longer than the maximum frame",
           "8254x: a packet is at most 16288 bytes; the kernel's MTU policy is smaller"),
    Reason(13, "PKT_TOO_MANY_FRAGS", "a packet made of more descriptors than the fragment limit",
           "AF_XDP multi-buffer: more than MAX_SKB_FRAGS + 1 descriptors drops the packet"),
    Reason(15, "PKT_BAD_FRAGMENT", "another descriptor of the packet was rejected: the packet goes whole or not at all",
           "AF_XDP: an invalid fragment drops its whole partial packet (net/xdp/xsk.c)"),
    Reason(14, "PKT_UNTERMINATED", "a packet still open (no EOP) when the tail stopped, held past the bound",
           "AF_XDP: an invalid or unterminated fragment drops the whole partial packet"),
    # -- address ------------------------------------------------------------------
    Reason(20, "ADDR_WRAP", "addr + len wraps past 2**64",
           "VFIO_IOMMU_MAP_DMA and ibv_reg_mr reject ranges whose end overflows"),
    Reason(21, "ADDR_BEYOND_MEMORY", "the range ends beyond physical memory",
           "a DMA beyond the end of DRAM is a master abort, or worse, MMIO of another device"),
    Reason(22, "ADDR_NOT_PINNED", "a byte of the range lies in a frame not pinned by the queue's owner",
           "VFIO: only mapped IOVAs reach memory; RDMA: an SGE must lie inside a registered MR"),
    # -- access -------------------------------------------------------------------
    Reason(30, "ACCESS_NO_READ", "a TX buffer pinned without device-read access",
           "IOMMU_READ in VFIO_IOMMU_MAP_DMA (RDMA MRs always allow local read: no analogue there)"),
    Reason(31, "ACCESS_NO_WRITE", "an RX buffer pinned without device-write access",
           "IBV_ACCESS_LOCAL_WRITE; IOMMU_WRITE in VFIO_IOMMU_MAP_DMA"),
    # -- command bits ---------------------------------------------------------------
    Reason(40, "CMD_UNSUPPORTED", "command bits this device does not implement (e.g. DEXT, RPS, VLE)",
           "AF_XDP xp_unused_options_set: unknown option bits are rejected"),
    Reason(41, "CSUM_OFFSET", "checksum offload offsets (CSO/CSS) outside the packet",
           "8254x 3.3.3: CSO and CSS must lie inside the packet"),
    # -- lifetime -------------------------------------------------------------------
    Reason(50, "PIN_RELEASED", "the buffer's pin has been released",
           "RDMA: a WR naming a deregistered MR completes with IBV_WC_LOC_PROT_ERR"),
    Reason(51, "PIN_IN_FLIGHT", "unpin of a pin that in-flight descriptors still reference (deferred)",
           "ibv_dereg_mr waits for the hardware to let go; VFIO's unmap does not (that is the IOMMU's job)"),
    # -- registers and the IOMMU ------------------------------------------------------
    Reason(60, "REG_NOT_DOORBELL", "a tenant wrote a register other than its own queue's tail",
           "vfio-pci traps config space and MSI-X; a kernel-mediated doorbell page exposes only the tail"),
    Reason(61, "REG_NOT_OWNER", "a tenant wrote the tail of a queue it does not own", "per-queue doorbell pages"),
    Reason(70, "IOMMU_NOT_MAPPED", "the device used an IO virtual address that is not mapped",
           "Intel VT-d fault reason 0x06 (DMAR: [DMA Read] ... PTE Read access is not set)"),
    Reason(71, "IOMMU_PERMISSION", "the device wrote through a read-only mapping or read a write-only one",
           "Intel VT-d fault reason 0x05 (PTE Write access is not set)"),
    # -- AF_XDP descriptors (the `xdp` format, verifier/rules/xdp.py) -------------------------
    Reason(80, "XDP_ADDR_OUT_OF_UMEM", "the buffer, or the tx metadata before it, starts outside the UMEM",
           "AF_XDP xp_aligned/unaligned_validate_desc: addr - tx_metadata_len underflows or is >= the UMEM size"),
    Reason(81, "XDP_CHUNK_CROSSED", "aligned mode: metadata and buffer do not fit in the chunk the buffer starts in",
           "AF_XDP xp_aligned_validate_desc: (addr & (chunk_size - 1)) + len + tx_metadata_len > chunk_size"),
    Reason(82, "XDP_END_OUT_OF_UMEM", "unaligned mode: the buffer ends beyond the UMEM",
           "AF_XDP xp_unaligned_validate_desc: addr + len > the UMEM size (net/xdp/xsk_queue.h)"),
    Reason(83, "XDP_OPTIONS_UNKNOWN", "option bits other than XDP_PKT_CONTD and XDP_TX_METADATA",
           "AF_XDP xp_unused_options_set (net/xdp/xsk_queue.h)"),
    Reason(84, "XDP_METADATA_WITHOUT_LEN", "XDP_TX_METADATA on a packet's first descriptor, UMEM without tx metadata",
           "AF_XDP xsk_build_skb: tx_metadata_len == 0 is -EINVAL and the descriptor stays on the ring"),
    Reason(85, "XDP_METADATA_FLAGS_UNKNOWN", "the packet's xsk_tx_metadata.flags hold bits other than the known three",
           "AF_XDP xsk_skb_metadata: !xsk_buff_valid_tx_metadata is -EINVAL, the descriptor stays on the ring"),
    Reason(86, "XDP_METADATA_CSUM_BEYOND_LEN", "a checksum request whose csum_start + csum_offset + 2 exceeds len",
           "AF_XDP xsk_skb_metadata: XDP_TXMD_FLAGS_CHECKSUM and csum_start + csum_offset + sizeof(__sum16) > len"),
    Reason(87, "XDP_METADATA_LAUNCH_TIME_OUTSIDE", "XDP_TXMD_FLAGS_LAUNCH_TIME while launch_time lies beyond the area",
           "Linux 6.18.44 as measured: LAUNCH_TIME with tx_metadata_len < 24 is -EINVAL (not in the 6.18 source)"),
    # -- RDMA work requests (the `verbs` format, verifier/rules/verbs.py) ----------------------
    Reason(90, "VERBS_TOO_MANY_SGE", "a work request names more SGEs than its queue pair's max_send_sge/max_recv_sge",
           "rdma-core providers/rxe/rxe.c: ibv_post_send/ibv_post_recv fail with EINVAL, nothing is queued"),
    Reason(91, "VERBS_LKEY_UNKNOWN", "an SGE's lkey names no registered memory region",
           "rxe_mr.c lookup_mr() finds no MR: IBV_WC_LOC_QP_OP_ERR (rxe), IBA: local protection error"),
    Reason(92, "VERBS_LKEY_OTHER_PD", "an SGE's lkey names a memory region of another protection domain",
           "rxe_mr.c lookup_mr(): mr_pd(mr) != pd; IBA: a key is valid only inside its own PD"),
    Reason(93, "VERBS_SGE_OUTSIDE_MR", "a byte of an SGE's [addr, addr + length) lies outside the MR its lkey names",
           "rxe_mr.c mr_check_range() is -EFAULT: IBV_WC_LOC_PROT_ERR"),
    Reason(94, "VERBS_NO_LOCAL_WRITE", "the device would write (receive, RDMA READ) into an MR without LOCAL_WRITE",
           "IBV_ACCESS_LOCAL_WRITE; rxe_mr.c lookup_mr(): access & mr->access == 0"),
    Reason(95, "VERBS_RKEY_UNKNOWN", "an RDMA work request's rkey names no MR open to remote access",
           "rxe_resp.c check_rkey(): no MR matches the rkey, NAK: IBV_WC_REM_ACCESS_ERR"),
    Reason(96, "VERBS_RKEY_OTHER_PD", "an RDMA work request's rkey names an MR outside the responder QP's PD",
           "rxe_resp.c check_rkey() -> lookup_mr(qp->pd, ...): IBV_WC_REM_ACCESS_ERR"),
    Reason(97, "VERBS_RKEY_NO_ACCESS", "the remote MR lacks REMOTE_WRITE (RDMA WRITE) or REMOTE_READ (RDMA READ)",
           "IBV_ACCESS_REMOTE_WRITE/REMOTE_READ; rxe_resp.c check_rkey(): IBV_WC_REM_ACCESS_ERR"),
    Reason(98, "VERBS_REMOTE_OUTSIDE_MR", "[remote_addr, remote_addr + message length) is not inside the remote MR",
           "rxe_resp.c check_rkey() -> mr_check_range(): RESPST_ERR_RKEY_VIOLATION, IBV_WC_REM_ACCESS_ERR"),
    Reason(99, "VERBS_OPCODE_UNSUPPORTED", "a work request opcode this sandbox does not model (atomics, MW binds)",
           "rdma-core providers/rxe/rxe.c: an opcode the QP type does not support is EINVAL"),
    # -- virtio split virtqueues (the `virtq` format, verifier/rules/virtq.py) -----------------------------------
    Reason(100, "VIRTQ_AVAIL_JUMP", "the available index moved past the queue size, less the chains still outstanding",
           "vhost_get_vq_desc: 'Guest moved avail index from %u to %u' (-EFAULT); QEMU: 'Guest moved used index'"),
    Reason(101, "VIRTQ_HEAD_BEYOND", "an available-ring entry names a chain head >= the queue size",
           "virtio 1.2 §2.7.13; vhost_get_vq_desc: 'Guest says index %u > %u is available'"),
    Reason(102, "VIRTQ_NEXT_BEYOND", "a descriptor's next is outside its table (>= queue size, or the indirect count)",
           "QEMU virtqueue_split_read_next_desc: 'Desc next is %u'; vhost next_desc: 'Desc index is %u > %u'"),
    Reason(103, "VIRTQ_CHAIN_LOOP", "following next revisits a descriptor: more steps than the table has entries",
           "vhost_get_vq_desc: 'Loop detected: last one at %u vq size %u head %u'; QEMU: 'Looped descriptor'"),
    Reason(104, "VIRTQ_CHAIN_TOO_LONG", "a chain, its indirect table's descriptors included, is longer than the queue",
           "virtio 1.2 §2.7.5.3.1: a driver MUST NOT create a descriptor chain longer than the Queue Size"),
    Reason(105, "VIRTQ_INDIRECT_LEN", "an indirect table's length is zero or not a multiple of 16 bytes",
           "virtio 1.2 §2.7.5.3; vhost get_indirect: 'Invalid length'; QEMU: 'Invalid size for indirect buffer table'"),
    Reason(106, "VIRTQ_INDIRECT_TOO_BIG", "an indirect table holds more entries than the queue size",
           "DPDK vhost fill_vec_buf_split: nr_descs > vq->size fails (Linux vhost: > 65536, 'too big')"),
    Reason(107, "VIRTQ_INDIRECT_NESTED", "a descriptor inside an indirect table has VIRTQ_DESC_F_INDIRECT",
           "virtio 1.2 §2.7.5.3.1: no INDIRECT inside an indirect table; vhost: 'Nested indirect descriptor'"),
    Reason(108, "VIRTQ_INDIRECT_WITH_NEXT", "a descriptor has both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT",
           "virtio 1.2 §2.7.5.3.1: a driver MUST NOT set both INDIRECT and NEXT in flags"),
    Reason(109, "VIRTQ_WRITE_BEFORE_READ", "a device-readable descriptor follows a device-writable one in the chain",
           "virtio 1.2 §2.7.4.2 (device-writable after device-readable); vhost: 'Descriptor has out after in'"),
    Reason(110, "VIRTQ_LEN_OVERFLOW", "the chain's buffer lengths, summed, do not fit in 32 bits",
           "the used ring's len is le32 (§2.7.8); QEMU virtqueue_map_desc checks its total, rust-vmm counts in u32"),
    Reason(111, "VIRTQ_NET_HDR_SHORT", "TX: under 12 device-readable bytes, RX: under 12 writable (no whole header)",
           "virtio 1.2 §5.1.6: every buffer starts with a struct virtio_net_hdr; QEMU: 'virtio-net header incorrect'"),
    Reason(112, "VIRTQ_FLAGS_UNKNOWN", "a descriptor flag bit other than NEXT, WRITE and INDIRECT",
           "virtio 1.2 §2.7.5: flags are NEXT, WRITE and INDIRECT; the rest are reserved"),
]  # fmt: skip

BY_CODE: dict[int, Reason] = {r.code: r for r in _ALL}
BY_NAME: dict[str, Reason] = {r.name: r for r in _ALL}

OK = 0
RING_TAIL_BEYOND, RING_TAIL_BACKWARDS, RING_OVERRUN = 1, 2, 3
LEN_ZERO, LEN_TOO_LONG, PKT_TOO_LONG, PKT_TOO_MANY_FRAGS, PKT_UNTERMINATED, PKT_BAD_FRAGMENT = 10, 11, 12, 13, 14, 15
ADDR_WRAP, ADDR_BEYOND_MEMORY, ADDR_NOT_PINNED = 20, 21, 22
ACCESS_NO_READ, ACCESS_NO_WRITE = 30, 31
CMD_UNSUPPORTED, CSUM_OFFSET = 40, 41
PIN_RELEASED, PIN_IN_FLIGHT = 50, 51
REG_NOT_DOORBELL, REG_NOT_OWNER = 60, 61
IOMMU_NOT_MAPPED, IOMMU_PERMISSION = 70, 71
XDP_ADDR_OUT_OF_UMEM, XDP_CHUNK_CROSSED, XDP_END_OUT_OF_UMEM, XDP_OPTIONS_UNKNOWN = 80, 81, 82, 83
XDP_METADATA_WITHOUT_LEN, XDP_METADATA_FLAGS_UNKNOWN, XDP_METADATA_CSUM_BEYOND_LEN = 84, 85, 86
XDP_METADATA_LAUNCH_TIME_OUTSIDE = 87
VERBS_TOO_MANY_SGE, VERBS_LKEY_UNKNOWN, VERBS_LKEY_OTHER_PD, VERBS_SGE_OUTSIDE_MR = 90, 91, 92, 93
VERBS_NO_LOCAL_WRITE, VERBS_RKEY_UNKNOWN, VERBS_RKEY_OTHER_PD, VERBS_RKEY_NO_ACCESS = 94, 95, 96, 97
VERBS_REMOTE_OUTSIDE_MR, VERBS_OPCODE_UNSUPPORTED = 98, 99
VIRTQ_AVAIL_JUMP, VIRTQ_HEAD_BEYOND, VIRTQ_NEXT_BEYOND, VIRTQ_CHAIN_LOOP, VIRTQ_CHAIN_TOO_LONG = 100, 101, 102, 103, 104
VIRTQ_INDIRECT_LEN, VIRTQ_INDIRECT_TOO_BIG, VIRTQ_INDIRECT_NESTED, VIRTQ_INDIRECT_WITH_NEXT = 105, 106, 107, 108
VIRTQ_WRITE_BEFORE_READ, VIRTQ_LEN_OVERFLOW, VIRTQ_NET_HDR_SHORT, VIRTQ_FLAGS_UNKNOWN = 109, 110, 111, 112


def name(code: int) -> str:
    return BY_CODE[code].name


def all_reasons() -> list[Reason]:
    return list(_ALL)
