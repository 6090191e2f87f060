"""The Linux kernel's AF_XDP TX descriptor rules: the verifier's ``xdp`` format, vectorised.

An AF_XDP socket's TX ring holds ``struct xdp_desc`` (``ring.descriptors.XDP_DESC``):
a UMEM-relative ``addr``, a ``len`` and ``options``.  Before the kernel copies a
buffer out of the UMEM it checks the descriptor, and this module applies the
same checks, in the same order, to a whole array of descriptors at once, so its
verdicts can be compared one for one with a real socket's (``nic-sandbox verify
--format xdp --against kernel``).  Sources, Linux 6.18:

- registration, ``net/xdp/xdp_umem.c`` ``xdp_umem_reg``: the UMEM geometry a
  socket can have at all (:func:`registration_error`);
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

What stays out: rules on the UMEM's *contents* (``xsk_skb_metadata`` rejects a
``struct xsk_tx_metadata`` with unknown flags or a checksum request beyond the
frame) and ring-index and budget mechanics (a kick stops at the first invalid
descriptor and handles at most 32 descriptors by default), which change when a
descriptor is judged, not its verdict.
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
    XDP_UMEM_MIN_CHUNK_SIZE,
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
#: ``xdp_umem_reg``: ``tx_metadata_len >= 256 || tx_metadata_len % 8`` is -EINVAL.
TX_METADATA_LEN_LIMIT = 256
TX_METADATA_LEN_ALIGN = 8
#: ``xdp_umem_reg``: chunk and page counts are u32 (``chunks > U32_MAX``, ``npgs > U32_MAX``).
U32_MAX = (1 << 32) - 1
#: ``xp_unused_options_set``: every other bit makes the descriptor invalid.
KNOWN_OPTIONS = XDP_PKT_CONTD | XDP_TX_METADATA

_ADDR_MASK = np.uint64(XSK_UNALIGNED_BUF_ADDR_MASK)
_OFFSET_SHIFT = np.uint64(XSK_UNALIGNED_BUF_OFFSET_SHIFT)


class UmemRejected(ValueError):
    """The kernel would refuse to register this UMEM (``setsockopt(XDP_UMEM_REG)`` fails with EINVAL)."""


def registration_error(
    size: int, chunk_size: int, unaligned: bool, tx_metadata_len: int, page_size: int = HOST_PAGE_SIZE
) -> str | None:
    """Why ``xdp_umem_reg`` (net/xdp/xdp_umem.c) would return -EINVAL for this geometry, or None.

    The checks in the kernel's order.  The buffer address (page aligned, no
    wrap) and the headroom (0 here) are the registering program's business.
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
    if not 0 <= tx_metadata_len < TX_METADATA_LEN_LIMIT or tx_metadata_len % TX_METADATA_LEN_ALIGN:
        return (
            f"tx metadata length {tx_metadata_len} must be a multiple of {TX_METADATA_LEN_ALIGN} "
            f"below {TX_METADATA_LEN_LIMIT} {where}"
        )
    return None


@dataclass(frozen=True)
class XdpUmem:
    """A registered UMEM's geometry, as the TX checks see it (``struct xsk_buff_pool``).

    ``size`` is ``pool->addrs_cnt``; ``tx_metadata_len`` is the value registered
    with ``XDP_UMEM_TX_METADATA_LEN`` (0: no metadata area).  Construction runs
    :func:`registration_error` and raises :class:`UmemRejected`, so an
    ``XdpUmem`` always describes a UMEM the kernel accepts.
    """

    size: int
    chunk_size: int
    unaligned: bool = False
    tx_metadata_len: int = 0
    page_size: int = HOST_PAGE_SIZE

    def __post_init__(self) -> None:
        problem = registration_error(self.size, self.chunk_size, self.unaligned, self.tx_metadata_len, self.page_size)
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
        start = (addr & _ADDR_MASK) + (addr >> _OFFSET_SHIFT)
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


def check_xdp_tx(descs: npt.NDArray[np.void], umem: XdpUmem) -> XdpVerdicts:
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
    - ``XDP_TX_METADATA`` on a packet's first descriptor while the UMEM has no
      metadata area is refused: XDP_METADATA_WITHOUT_LEN (``xsk_build_skb``
      returns -EINVAL and leaves the descriptor on the ring, so a real socket
      stalls there; the verifier refuses it, with its packet, and goes on).
      On a later fragment the bit is ignored.
    """
    own = descriptor_reasons(descs, umem)
    if own.size == 0:
        return XdpVerdicts(own)
    options = descs["options"]
    contd = (options & np.uint32(XDP_PKT_CONTD)) != 0
    ends = ~contd
    packet = np.cumsum(ends) - ends  # a descriptor without XDP_PKT_CONTD closes its packet
    if umem.tx_metadata_len == 0:
        first = np.concatenate(([True], ends[:-1]))
        wants_meta = (options & np.uint32(XDP_TX_METADATA)) != 0
        own[first & wants_meta & (own == R.OK)] = R.XDP_METADATA_WITHOUT_LEN
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
