"""The Linux kernel's AF_XDP TX descriptor rules: the verifier's ``xdp`` format, vectorised.

An AF_XDP socket's TX ring holds ``struct xdp_desc`` (``ring.descriptors.XDP_DESC``):
a UMEM-relative ``addr``, a ``len`` and ``options``.  Before the kernel copies a
buffer out of the UMEM it checks the descriptor, and this module applies the
same checks, in the same order, to a whole array of descriptors at once, so its
verdicts can be compared one for one with a real socket's (``nic-sandbox verify
--format xdp --against kernel``).  Sources, Linux 6.18:

- registration, ``net/xdp/xdp_umem.c`` ``xdp_umem_reg``: the UMEM geometry a
  socket can have at all (:func:`registration_error`).  The ``tx_metadata_len``
  rule is not the same on every kernel (:class:`TxMetadataRules`): the caller
  says which one applies, and ``nic-sandbox verify`` asks the running kernel;
- each descriptor, ``net/xdp/xsk_queue.h`` ``xp_validate_desc`` ->
  ``xp_aligned_validate_desc`` / ``xp_unaligned_validate_desc`` and
  ``xp_unused_options_set`` (:func:`descriptor_reasons`).  The page rule
  ``xp_desc_crosses_non_contig_pg`` (``include/net/xsk_buff_pool.h``) only
  applies when the pool is DMA-mapped for zero-copy (``pool->dma_pages``); the
  copy mode modelled here has none, so it never fires;
- packets, ``net/xdp/xsk.c`` ``__xsk_generic_xmit`` and ``xsk_build_skb``
  (:func:`check_xdp_tx`): ``XDP_PKT_CONTD`` chains descriptors into one packet
  of at most ``MAX_SKB_FRAGS + 1`` descriptors, sent whole or not at all.  Where
  the source of older kernels and this machine's 6.18 kernel differ (what
  follows a bad fragment), the kernel's measured behaviour is the rule.

- the metadata, ``net/xdp/xsk.c`` ``xsk_skb_metadata`` (:func:`metadata_reasons`):
  a packet's first descriptor with ``XDP_TX_METADATA`` makes the kernel read the
  ``struct xsk_tx_metadata`` (``ring.descriptors.XSK_TX_METADATA``) that lies
  ``tx_metadata_len`` bytes before the buffer, in the tenant's UMEM, and refuse
  unknown flags and a checksum request beyond the descriptor.  The caller hands
  in the struct each descriptor would find there (:func:`metadata_from_image`
  reads it out of a UMEM image); without it, the metadata is taken as all zero.

What stays out: ring-index and budget mechanics (a kick stops at the first
invalid descriptor and handles at most 32 descriptors by default), which change
when a descriptor is judged, not its verdict; ``XDP_UMEM_TX_SW_CSUM``, which
this model's UMEM never sets (``skb_checksum_help`` could then fail on its
own); and zero-copy drivers, which skip bad metadata silently.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ring.descriptors import (
    XDP_DESC,
    XDP_PKT_CONTD,
    XDP_TX_METADATA,
    XDP_TXMD_FLAGS_CHECKSUM,
    XDP_TXMD_FLAGS_LAUNCH_TIME,
    XDP_TXMD_FLAGS_TIMESTAMP,
    XDP_UMEM_MIN_CHUNK_SIZE,
    XSK_TX_METADATA,
    XSK_UNALIGNED_BUF_ADDR_MASK,
    XSK_UNALIGNED_BUF_OFFSET_SHIFT,
)
from verifier.rules import reasons as R

U8 = npt.NDArray[np.uint8]

#: The host's page size: ``xdp_umem_reg`` refuses chunks larger than a page.
HOST_PAGE_SIZE = mmap.PAGESIZE
#: include/linux/skbuff.h, CONFIG_MAX_SKB_FRAGS (17 unless the kernel was configured otherwise).
MAX_SKB_FRAGS = 17
#: Copy mode: one linear part plus MAX_SKB_FRAGS page fragments (``xsk_build_skb``: the descriptor
#: that would add fragment MAX_SKB_FRAGS while still carrying XDP_PKT_CONTD is -EOVERFLOW).
XSK_MAX_DESCS_PER_PACKET = MAX_SKB_FRAGS + 1
#: ``xdp_umem_reg``, with ``XDP_UMEM_TX_METADATA_LEN``: ``tx_metadata_len >= 256 || tx_metadata_len % 8``
#: is -EINVAL on every kernel that has the field (6.8 and later); the lower bound differs (:class:`TxMetadataRules`).
TX_METADATA_LEN_LIMIT = 256
TX_METADATA_LEN_ALIGN = 8
#: include/net/xdp_sock_drv.h ``XDP_TXMD_FLAGS_VALID`` (6.15 and later): ``xsk_buff_valid_tx_metadata``
#: is ``!(meta->flags & ~XDP_TXMD_FLAGS_VALID)``.
TXMD_KNOWN_FLAGS = XDP_TXMD_FLAGS_TIMESTAMP | XDP_TXMD_FLAGS_CHECKSUM | XDP_TXMD_FLAGS_LAUNCH_TIME
#: ``xsk_skb_metadata``: the checksum written at csum_start + csum_offset is a ``__sum16``.
CSUM_SIZE = 2
#: Where ``request.launch_time`` ends: it is the last field of ``struct xsk_tx_metadata`` (bytes 16..23).
LAUNCH_TIME_END = XSK_TX_METADATA.itemsize
#: ``xdp_umem_reg``: chunk and page counts are u32 (``chunks > U32_MAX``, ``npgs > U32_MAX``).
U32_MAX = (1 << 32) - 1
#: ``xp_unused_options_set``: every other bit makes the descriptor invalid.
KNOWN_OPTIONS = XDP_PKT_CONTD | XDP_TX_METADATA

_ADDR_MASK = np.uint64(XSK_UNALIGNED_BUF_ADDR_MASK)
_OFFSET_SHIFT = np.uint64(XSK_UNALIGNED_BUF_OFFSET_SHIFT)


class UmemRejected(ValueError):
    """The kernel would refuse to register this UMEM (``setsockopt(XDP_UMEM_REG)`` fails with EINVAL)."""


@dataclass(frozen=True)
class TxMetadataRules:
    """The tx metadata rules that differ between kernels: which lengths register, where launch_time may lie.

    ``min_len``: the smallest ``tx_metadata_len`` ``xdp_umem_reg`` registers
    with ``XDP_UMEM_TX_METADATA_LEN``.  The published source (net/xdp/xdp_umem.c
    up to 6.18: ``if (mr->flags & XDP_UMEM_TX_METADATA_LEN) { if
    (mr->tx_metadata_len >= 256 || mr->tx_metadata_len % 8) return -EINVAL; }``;
    in 6.8, before "xsk: Require XDP_UMEM_TX_METADATA_LEN to actuate
    tx_metadata_len", the same test without the flag) has no lower bound: 0.  Linux
    6.18.44 as measured here refuses 8 and registers 16 (and 0 with the flag):
    16, which keeps ``flags``, ``csum_start`` and ``csum_offset`` inside the area.

    ``launch_time_inside``: ``XDP_TXMD_FLAGS_LAUNCH_TIME`` is refused
    (``-EINVAL``) unless ``request.launch_time`` lies inside the area, that is
    ``tx_metadata_len >= 24``.  Not in the published ``xsk_skb_metadata``
    (which reads launch_time from the frame's first bytes when the area is
    shorter); measured on Linux 6.18.44.

    A length of 0 means "no metadata area" (``XDP_UMEM_TX_METADATA_LEN`` not
    set), which every kernel registers.
    """

    min_len: int
    launch_time_inside: bool
    source: str

    def length_error(self, tx_metadata_len: int) -> str | None:
        """Why ``tx_metadata_len`` would not register under these rules, or None."""
        if tx_metadata_len == 0:
            return None
        low = max(self.min_len, TX_METADATA_LEN_ALIGN)
        if not low <= tx_metadata_len < TX_METADATA_LEN_LIMIT or tx_metadata_len % TX_METADATA_LEN_ALIGN:
            return f"tx metadata length {tx_metadata_len} must be 0 or {self.describe()}"
        return None

    def describe(self) -> str:
        low = max(self.min_len, TX_METADATA_LEN_ALIGN)
        return (
            f"a multiple of {TX_METADATA_LEN_ALIGN} from {low} to {TX_METADATA_LEN_LIMIT - TX_METADATA_LEN_ALIGN} "
            f"({self.source})"
        )


#: net/xdp/xdp_umem.c and net/xdp/xsk.c as published for Linux 6.18 (and since 6.15, which added launch_time).
PUBLISHED_6_18 = TxMetadataRules(0, False, "the published Linux 6.18 source")
#: What this project's reference machine's kernel does (docs/verifier.md, "The xdp format").
MEASURED_6_18_44 = TxMetadataRules(16, True, "Linux 6.18.44 as measured")
#: The rules assumed when the running kernel cannot be asked: the newest kernel documented.
NEWEST_RULES = MEASURED_6_18_44


def registration_error(
    size: int,
    chunk_size: int,
    unaligned: bool,
    tx_metadata_len: int,
    page_size: int = HOST_PAGE_SIZE,
    rules: TxMetadataRules = NEWEST_RULES,
) -> str | None:
    """Why ``xdp_umem_reg`` (net/xdp/xdp_umem.c) would return -EINVAL for this geometry, or None.

    The checks in the kernel's order; ``tx_metadata_len`` by ``rules``.  The
    buffer address (page aligned, no wrap) and the headroom (0 here) are the
    registering program's business.
    """
    where = "(net/xdp/xdp_umem.c xdp_umem_reg: -EINVAL)"
    if not XDP_UMEM_MIN_CHUNK_SIZE <= chunk_size <= page_size:
        return f"chunk size {chunk_size} is outside {XDP_UMEM_MIN_CHUNK_SIZE}..{page_size} (the page size) {where}"
    if not unaligned and chunk_size & (chunk_size - 1):
        return f"chunk size {chunk_size} is not a power of two, which aligned mode needs {where}"
    if size < 0 or -(-size // page_size) > U32_MAX:
        return f"UMEM size {size} is not a size of at most 2**32 - 1 pages {where}"
    chunks, rest = divmod(size, chunk_size)
    if not 0 < chunks <= U32_MAX:
        return f"UMEM size {size} must hold between 1 and 2**32 - 1 chunks of {chunk_size} bytes {where}"
    if not unaligned and rest:
        return f"UMEM size {size} is not a multiple of the chunk size {chunk_size}, which aligned mode needs {where}"
    problem = rules.length_error(tx_metadata_len) if tx_metadata_len >= 0 else "negative tx metadata length"
    return None if problem is None else f"{problem} {where}"


@dataclass(frozen=True)
class XdpUmem:
    """A registered UMEM's geometry, as the TX checks see it (``struct xsk_buff_pool``).

    ``size`` is ``pool->addrs_cnt``; ``tx_metadata_len`` is the value registered
    with ``XDP_UMEM_TX_METADATA_LEN`` (0: no metadata area); ``rules`` are the
    kernel's :class:`TxMetadataRules`.  Construction runs
    :func:`registration_error` and raises :class:`UmemRejected`, so an
    ``XdpUmem`` always describes a UMEM the kernel accepts.
    """

    size: int
    chunk_size: int
    unaligned: bool = False
    tx_metadata_len: int = 0
    page_size: int = HOST_PAGE_SIZE
    rules: TxMetadataRules = NEWEST_RULES

    def __post_init__(self) -> None:
        problem = registration_error(
            self.size, self.chunk_size, self.unaligned, self.tx_metadata_len, self.page_size, self.rules
        )
        if problem is not None:
            raise UmemRejected(problem)

    @property
    def mode(self) -> str:
        return "unaligned" if self.unaligned else "aligned"


@dataclass
class XdpVerdicts:
    """One verdict per descriptor: ``reason`` is reasons.OK or the rejection code."""

    reason: U8

    @property
    def accepted(self) -> npt.NDArray[np.bool_]:
        return self.reason == R.OK


def descriptor_reasons(descs: npt.NDArray[np.void], umem: XdpUmem) -> U8:
    """``xp_validate_desc`` for every descriptor on its own (net/xdp/xsk_queue.h, Linux 6.18).

    Aligned mode, ``xp_aligned_validate_desc``: ``len == 0``; ``addr -
    tx_metadata_len`` underflows; the metadata plus the buffer do not fit in the
    rest of the chunk where ``addr - tx_metadata_len`` lies; that address is not
    below the UMEM size (only the start is bounds-checked: a buffer that fits
    its chunk ends inside the UMEM, whose size is a whole number of chunks);
    unknown option bits.

    Unaligned mode, ``xp_unaligned_validate_desc``, with ``addr`` first turned
    into ``(addr & XSK_UNALIGNED_BUF_ADDR_MASK) + (addr >> 48)``
    (``xp_unaligned_add_offset_to_addr``): ``len == 0``; ``len +
    tx_metadata_len > chunk_size``; the address minus the metadata underflows or
    is not below the UMEM size; the metadata plus the buffer end beyond the
    UMEM; unknown option bits.

    The overflow guards are those of "xsk: Harden userspace-supplied xdp_desc
    validation" (commit 07ca98f906a4, Linux 6.18, backported to 6.8+ stable):
    lengths are summed in 64 bits, so ``len`` near 2**32 cannot wrap past the chunk
    test.  The first rule broken, in that order, is the reason.
    """
    if descs.dtype != XDP_DESC:
        raise TypeError(f"expected ring.descriptors.XDP_DESC, got {descs.dtype}")
    addr = descs["addr"]
    length = descs["len"].astype(np.uint64)
    meta = np.uint64(umem.tx_metadata_len)
    size = np.uint64(umem.size)
    chunk = np.uint64(umem.chunk_size)
    unknown = (descs["options"] & np.uint32(~KNOWN_OPTIONS & U32_MAX)) != 0
    zero = length == 0
    if umem.unaligned:
        start = buffer_start(descs, umem)
        total = length + meta
        under = start < meta
        base = start - meta  # wraps where ``under``; those are decided before it is used
        conditions = [zero, total > chunk, under, base >= size, base + total > size, unknown]
        codes = [R.LEN_ZERO, R.LEN_TOO_LONG, R.XDP_ADDR_OUT_OF_UMEM, R.XDP_ADDR_OUT_OF_UMEM,
                 R.XDP_END_OUT_OF_UMEM, R.XDP_OPTIONS_UNKNOWN]  # fmt: skip
    else:
        under = addr < meta
        base = addr - meta
        offset = base & (chunk - np.uint64(1))
        conditions = [zero, under, offset + length + meta > chunk, base >= size, unknown]
        codes = [R.LEN_ZERO, R.XDP_ADDR_OUT_OF_UMEM, R.XDP_CHUNK_CROSSED, R.XDP_ADDR_OUT_OF_UMEM,
                 R.XDP_OPTIONS_UNKNOWN]  # fmt: skip
    return np.select(conditions, codes, default=R.OK).astype(np.uint8)


def buffer_start(descs: npt.NDArray[np.void], umem: XdpUmem) -> npt.NDArray[np.uint64]:
    """Each buffer's UMEM offset: ``addr``, or in unaligned mode ``xp_unaligned_add_offset_to_addr(addr)``."""
    addr = descs["addr"]
    return (addr & _ADDR_MASK) + (addr >> _OFFSET_SHIFT) if umem.unaligned else addr.copy()


def metadata_from_image(descs: npt.NDArray[np.void], umem: XdpUmem, image: npt.NDArray[np.uint8]) -> npt.NDArray:
    """The ``struct xsk_tx_metadata`` each descriptor would find in ``image``, the UMEM's bytes.

    The kernel reads it at ``buffer - tx_metadata_len`` (``xsk_skb_metadata``,
    ``xsk_buff_raw_get_data``): here ``buffer_start - tx_metadata_len``.  Bytes
    outside the image (a descriptor whose metadata area is not in the UMEM is
    refused before its metadata is read) read as zero.  One ``XSK_TX_METADATA``
    record per descriptor; all zero without a metadata area.
    """
    if image.dtype != np.uint8 or image.shape != (umem.size,):
        raise ValueError(f"the UMEM image must be {umem.size} bytes (uint8), got {image.dtype} {image.shape}")
    meta = np.zeros(len(descs), dtype=XSK_TX_METADATA)
    if umem.tx_metadata_len == 0 or len(descs) == 0:
        return meta
    width = XSK_TX_METADATA.itemsize
    start = buffer_start(descs, umem)
    inside = (start >= np.uint64(umem.tx_metadata_len)) & (start - np.uint64(umem.tx_metadata_len) < umem.size)
    base = np.where(inside, start - np.uint64(umem.tx_metadata_len), 0).astype(np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(np.concatenate([image, np.zeros(width, np.uint8)]), width)
    rows = np.where(inside[:, None], windows[base], 0).astype(np.uint8)
    return np.ascontiguousarray(rows).view(XSK_TX_METADATA).reshape(len(descs))


def metadata_reasons(descs: npt.NDArray[np.void], meta: npt.NDArray, umem: XdpUmem) -> U8:
    """``xsk_skb_metadata`` (net/xdp/xsk.c, Linux 6.18) for every descriptor, as if its metadata were read.

    ``meta`` holds one ``XSK_TX_METADATA`` per descriptor.  In the kernel's order:

    - ``flags`` with bits other than ``XDP_TXMD_FLAGS_VALID`` (TIMESTAMP,
      CHECKSUM, LAUNCH_TIME; ``xsk_buff_valid_tx_metadata``):
      XDP_METADATA_FLAGS_UNKNOWN;
    - LAUNCH_TIME while ``launch_time`` lies beyond ``tx_metadata_len``, on
      kernels whose :class:`TxMetadataRules` say so:
      XDP_METADATA_LAUNCH_TIME_OUTSIDE;
    - CHECKSUM and ``csum_start + csum_offset + sizeof(__sum16) > desc->len``
      (summed without wrapping: u16 + u16 promote to int): XDP_METADATA_CSUM_BEYOND_LEN.
      ``len`` is this descriptor's own, also when it is the first of a
      multi-buffer packet.

    TIMESTAMP and LAUNCH_TIME ask for nothing else in copy mode: the
    timestamp is a software one written at completion, and launch_time only
    sets ``skb->skb_mstamp_ns``.  Each refusal is ``-EINVAL`` from the kick
    with the descriptor left on the ring, like XDP_METADATA_WITHOUT_LEN.
    """
    if meta.dtype != XSK_TX_METADATA or meta.shape != descs.shape:
        raise TypeError(f"expected one ring.descriptors.XSK_TX_METADATA per descriptor, got {meta.dtype} {meta.shape}")
    flags = meta["flags"]
    unknown = (flags & np.uint64(~TXMD_KNOWN_FLAGS & (1 << 64) - 1)) != 0
    launch_outside = np.zeros(len(descs), dtype=bool)
    if umem.rules.launch_time_inside and umem.tx_metadata_len < LAUNCH_TIME_END:
        launch_outside = (flags & np.uint64(XDP_TXMD_FLAGS_LAUNCH_TIME)) != 0
    checksum = (flags & np.uint64(XDP_TXMD_FLAGS_CHECKSUM)) != 0
    reach = meta["csum_start"].astype(np.int64) + meta["csum_offset"].astype(np.int64) + CSUM_SIZE
    beyond = checksum & (reach > descs["len"].astype(np.int64))
    return np.select(
        [unknown, launch_outside, beyond],
        [R.XDP_METADATA_FLAGS_UNKNOWN, R.XDP_METADATA_LAUNCH_TIME_OUTSIDE, R.XDP_METADATA_CSUM_BEYOND_LEN],
        default=R.OK,
    ).astype(np.uint8)


def check_xdp_tx(descs: npt.NDArray[np.void], umem: XdpUmem, meta: npt.NDArray | None = None) -> XdpVerdicts:
    """Every TX rule for descriptors in ring order, as one copy-mode socket transmits them.

    Per descriptor: :func:`descriptor_reasons`.  Per packet (``__xsk_generic_xmit``,
    ``xsk_build_skb``, ``xsk_drop_skb`` in net/xdp/xsk.c), as measured on Linux
    6.18 (docs/verifier.md, "The xdp format"):

    - a packet is a run of descriptors up to and including the first one
      without ``XDP_PKT_CONTD`` (``xp_mb_desc``); every descriptor's bit counts,
      a valid one's or not;
    - a packet is sent whole or not at all.  Descriptors without a reason of
      their own inherit the packet's: PKT_TOO_MANY_FRAGS when it has
      ``XSK_MAX_DESCS_PER_PACKET`` or more descriptors carrying XDP_PKT_CONTD
      (the 18th fragment that still continues is ``-EOVERFLOW``: at most 18
      descriptors a packet), else PKT_BAD_FRAGMENT when any descriptor of it
      was refused, else PKT_UNTERMINATED when the input ended inside it (the
      socket holds it in ``xs->skb`` and drops it at release);
    - ``XDP_TX_METADATA`` on a packet's first descriptor that passed its own
      checks makes the kernel read its metadata (``xsk_skb_metadata``): with
      no metadata area that is XDP_METADATA_WITHOUT_LEN, else the reason of
      :func:`metadata_reasons` for ``meta`` (one ``XSK_TX_METADATA`` per
      descriptor: what lies before its buffer; None: all zero, always valid).
      Each is -EINVAL from ``xsk_build_skb`` with the descriptor left on the
      ring, so a real socket stalls there; the verifier refuses it, with its
      packet, and goes on.  On a later fragment the bit is ignored.
    """
    own = descriptor_reasons(descs, umem)
    if own.size == 0:
        return XdpVerdicts(own)
    options = descs["options"]
    contd = (options & np.uint32(XDP_PKT_CONTD)) != 0
    ends = ~contd
    packet = np.cumsum(ends) - ends  # a descriptor without XDP_PKT_CONTD closes its packet
    first = np.concatenate(([True], ends[:-1]))
    reads_meta = first & ((options & np.uint32(XDP_TX_METADATA)) != 0) & (own == R.OK)
    if umem.tx_metadata_len == 0:
        own[reads_meta] = R.XDP_METADATA_WITHOUT_LEN
    elif meta is not None:
        content = metadata_reasons(descs, meta, umem)
        own = np.where(reads_meta, content, own).astype(np.uint8)
    count = int(packet[-1]) + 1
    continued = np.bincount(packet, weights=contd, minlength=count)
    refused = np.bincount(packet, weights=own != R.OK, minlength=count) > 0
    open_at_end = np.zeros(count, dtype=bool)
    open_at_end[-1] = bool(contd[-1])
    fate = np.select(
        [continued >= XSK_MAX_DESCS_PER_PACKET, refused, open_at_end],
        [R.PKT_TOO_MANY_FRAGS, R.PKT_BAD_FRAGMENT, R.PKT_UNTERMINATED],
        default=R.OK,
    )
    return XdpVerdicts(np.where(own == R.OK, fate[packet], own).astype(np.uint8))


def reason_names(verdicts: XdpVerdicts) -> list[str | None]:
    """Reason names per descriptor, None for accepted ones (the CLI's and the audit log's spelling)."""
    names = {r.code: r.name for r in R.all_reasons()}
    return [None if code == R.OK else names[code] for code in verdicts.reason.tolist()]
