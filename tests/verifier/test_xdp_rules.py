"""Every rule of the ``xdp`` format (verifier/rules/xdp.py) at its exact boundary: both sides of each edge.

The rules are the Linux kernel's (net/xdp/xdp_umem.c ``xdp_umem_reg``;
net/xdp/xsk_queue.h ``xp_aligned_validate_desc``, ``xp_unaligned_validate_desc``,
``xp_unused_options_set``; net/xdp/xsk.c for packets and ``xsk_skb_metadata``
for the metadata in front of a buffer).  The same boundaries run against a real
socket in tests/sandbox/test_verify_kernel.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from ring.descriptors import (
    XDP_DESC,
    XDP_PKT_CONTD,
    XDP_TX_METADATA,
    XDP_TXMD_FLAGS_CHECKSUM,
    XDP_TXMD_FLAGS_LAUNCH_TIME,
    XDP_TXMD_FLAGS_TIMESTAMP,
    XDP_UMEM_MIN_CHUNK_SIZE,
    XSK_TX_METADATA,
    XSK_UNALIGNED_BUF_OFFSET_SHIFT,
)
from verifier.rules import reasons as R
from verifier.rules.xdp import (
    MEASURED_6_18_44,
    NEWEST_RULES,
    PUBLISHED_6_18,
    TX_METADATA_LEN_LIMIT,
    U32_MAX,
    XSK_MAX_DESCS_PER_PACKET,
    TxMetadataRules,
    UmemRejected,
    XdpUmem,
    check_xdp_tx,
    descriptor_reasons,
    metadata_from_image,
    metadata_reasons,
    reason_names,
    registration_error,
)

PAGE = 4096
CHUNK = 2048
SIZE = 64 * CHUNK  # 128 KiB, a whole number of chunks
C, M = XDP_PKT_CONTD, XDP_TX_METADATA
U64_MAX = (1 << 64) - 1


def descs(*rows: tuple[int, int, int]) -> np.ndarray:
    """An XDP_DESC array of (addr, len, options) rows."""
    return np.array(list(rows), dtype=XDP_DESC)


def one(umem: XdpUmem, addr: int, length: int, options: int = 0) -> str | None:
    """The verdict on a single descriptor that is a whole packet by itself (None: accepted)."""
    return reason_names(check_xdp_tx(descs((addr, length, options)), umem))[0]


def unaligned_addr(start: int, offset: int) -> int:
    """``start`` written as base + offset in the top 16 bits (include/uapi/linux/if_xdp.h)."""
    return (start - offset) | (offset << XSK_UNALIGNED_BUF_OFFSET_SHIFT)


ALIGNED = XdpUmem(SIZE, CHUNK, page_size=PAGE)
ALIGNED_META = XdpUmem(SIZE, CHUNK, tx_metadata_len=16, page_size=PAGE)
UNALIGNED = XdpUmem(100 * 3000, 3000, unaligned=True, page_size=PAGE)
UNALIGNED_META = XdpUmem(SIZE, CHUNK, unaligned=True, tx_metadata_len=24, page_size=PAGE)


# -- registration: xdp_umem_reg ---------------------------------------------------------------------


REGISTRATION_CASES = [
    (SIZE, XDP_UMEM_MIN_CHUNK_SIZE, False, 0, True),
    (SIZE, XDP_UMEM_MIN_CHUNK_SIZE - 1, True, 0, False),  # below the minimum chunk
    (SIZE, PAGE, False, 0, True),  # a page is the largest chunk
    (SIZE, 2 * PAGE, False, 0, False),
    (SIZE, PAGE + 1, True, 0, False),
    (3000 * 10, 3000, True, 0, True),  # unaligned chunks need not be powers of two
    (3000 * 10, 3000, False, 0, False),
    (SIZE + 1, CHUNK, True, 0, True),  # unaligned: a partial last chunk is fine
    (SIZE + 1, CHUNK, False, 0, False),  # aligned: whole chunks only
    (CHUNK, CHUNK, False, 0, True),  # one chunk
    (CHUNK - 1, CHUNK, True, 0, False),  # no whole chunk at all
    (0, CHUNK, False, 0, False),
    (SIZE, CHUNK, False, 16, True),
    (SIZE, CHUNK, False, 12, False),  # a multiple of 8
    (SIZE, CHUNK, False, TX_METADATA_LEN_LIMIT - 8, True),
    (SIZE, CHUNK, False, TX_METADATA_LEN_LIMIT, False),  # below 256
    ((U32_MAX + 1) * PAGE, PAGE, False, 0, False),  # 2**32 pages
    (U32_MAX * PAGE, PAGE, False, 0, True),
]

#: The tx_metadata_len values every registration test tries, on every rule set and against the kernel.
TX_METADATA_LENS = (0, 4, 8, 12, 16, 24, 32, 120, 248, 252, 256, 264, 512)
#: Which of them each documented rule set registers (0: no XDP_UMEM_TX_METADATA_LEN, always fine).
REGISTERS = {
    PUBLISHED_6_18: {0, 8, 16, 24, 32, 120, 248},  # xdp_umem_reg as published: < 256 and a multiple of 8
    MEASURED_6_18_44: {0, 16, 24, 32, 120, 248},  # Linux 6.18.44: and at least 16
}


@pytest.mark.parametrize(
    ("size", "chunk", "unaligned", "meta", "ok"),
    REGISTRATION_CASES,
)
def test_registration_boundaries(size: int, chunk: int, unaligned: bool, meta: int, ok: bool) -> None:
    problem = registration_error(size, chunk, unaligned, meta, page_size=PAGE)
    assert (problem is None) == ok, problem
    if not ok:
        assert "xdp_umem_reg" in str(problem)
        with pytest.raises(UmemRejected):
            XdpUmem(size, chunk, unaligned, meta, page_size=PAGE)


@pytest.mark.parametrize("rules", list(REGISTERS), ids=["published-6.18", "measured-6.18.44"])
@pytest.mark.parametrize("length", TX_METADATA_LENS)
def test_tx_metadata_len_rule_by_kernel(rules: TxMetadataRules, length: int) -> None:
    problem = registration_error(SIZE, CHUNK, False, length, PAGE, rules)
    assert (problem is None) == (length in REGISTERS[rules]), problem
    if problem:
        assert rules.source in problem and "xdp_umem_reg" in problem


def test_a_rule_set_with_any_lower_bound() -> None:
    rules = TxMetadataRules(40, False, "a kernel of the future")
    assert [m for m in TX_METADATA_LENS if rules.length_error(m) is None] == [0, 120, 248]
    assert "from 40 to 248" in str(rules.length_error(32))


def test_the_default_rules_are_the_newest_documented() -> None:
    assert NEWEST_RULES is MEASURED_6_18_44
    assert XdpUmem(SIZE, CHUNK).rules is NEWEST_RULES
    with pytest.raises(UmemRejected, match="from 16 to 248"):
        XdpUmem(SIZE, CHUNK, tx_metadata_len=8)
    assert XdpUmem(SIZE, CHUNK, tx_metadata_len=8, rules=PUBLISHED_6_18).tx_metadata_len == 8


# -- aligned mode: xp_aligned_validate_desc ---------------------------------------------------------


ALIGNED_CASES = [
    (0, 1, 0, None),
    (0, 0, 0, "LEN_ZERO"),
    (5 * CHUNK, CHUNK, 0, None),  # a whole chunk
    (5 * CHUNK, CHUNK + 1, 0, "XDP_CHUNK_CROSSED"),
    (5 * CHUNK + 100, CHUNK - 100, 0, None),  # ends exactly at the chunk's end
    (5 * CHUNK + 100, CHUNK - 99, 0, "XDP_CHUNK_CROSSED"),
    (5 * CHUNK + 101, CHUNK - 100, 0, "XDP_CHUNK_CROSSED"),  # the same length one byte later
    (SIZE - 1, 1, 0, None),  # the last byte: only the start is bounds-checked, and it is inside
    (SIZE - 64, 64, 0, None),
    (SIZE, 1, 0, "XDP_ADDR_OUT_OF_UMEM"),
    (SIZE + CHUNK - 1, 1, 0, "XDP_ADDR_OUT_OF_UMEM"),
    (U64_MAX, 1, 0, "XDP_ADDR_OUT_OF_UMEM"),
    (U64_MAX, 2, 0, "XDP_CHUNK_CROSSED"),  # addr + len wraps: the chunk rule sees it first
    (0, U32_MAX, 0, "XDP_CHUNK_CROSSED"),
    (0, 1, C | M, None),  # the two known option bits (XDP_TX_METADATA ignored here: see packets)
    (0, 1, 1 << 2, "XDP_OPTIONS_UNKNOWN"),
    (0, 1, 1 << 31, "XDP_OPTIONS_UNKNOWN"),
    (0, 0, 1 << 2, "LEN_ZERO"),  # priority: len first, then the chunk, the UMEM, the options
    (SIZE, CHUNK + 1, 1 << 2, "XDP_CHUNK_CROSSED"),
    (SIZE, 1, 1 << 2, "XDP_ADDR_OUT_OF_UMEM"),
]


@pytest.mark.parametrize(
    ("addr", "length", "options", "reason"),
    ALIGNED_CASES,
)
def test_aligned_descriptor_boundaries(addr: int, length: int, options: int, reason: str | None) -> None:
    got = descriptor_reasons(descs((addr, length, options)), ALIGNED)
    assert R.name(int(got[0])) == (reason or "OK")
    if not options & (C | M):  # a packet of its own: the packet rules add nothing
        assert one(ALIGNED, addr, length, options) == reason


ALIGNED_META_CASES = [
    (16, 1, None),  # the metadata area starts the UMEM
    (15, 1, "XDP_ADDR_OUT_OF_UMEM"),  # addr - tx_metadata_len underflows
    (0, 1, "XDP_ADDR_OUT_OF_UMEM"),
    (3 * CHUNK + 16, CHUNK - 16, None),  # metadata and buffer fill the chunk exactly
    (3 * CHUNK + 16, CHUNK - 15, "XDP_CHUNK_CROSSED"),
    (3 * CHUNK + 15, 1, "XDP_CHUNK_CROSSED"),  # the metadata would start in the chunk before
    (SIZE + 15, 1, "XDP_CHUNK_CROSSED"),
    (SIZE + 16, 1, "XDP_ADDR_OUT_OF_UMEM"),
    (16, U32_MAX - 15, "XDP_CHUNK_CROSSED"),  # len + m = 2**32 + 1: wrapped to 1 before 07ca98f906a4
]


@pytest.mark.parametrize(
    ("addr", "length", "reason"),
    ALIGNED_META_CASES,
)
def test_aligned_metadata_boundaries(addr: int, length: int, reason: str | None) -> None:
    assert one(ALIGNED_META, addr, length, M) == reason
    assert one(ALIGNED_META, addr, length) == reason  # the area is reserved whether or not it is used


# -- unaligned mode: xp_unaligned_validate_desc -----------------------------------------------------


UNALIGNED_CASES = [
    (0, 3000, None),  # len up to chunk_size
    (0, 3001, "LEN_TOO_LONG"),
    (0, 0, "LEN_ZERO"),
    (2999, 3000, None),  # crosses a chunk and a page boundary: fine without DMA pages
    (UNALIGNED.size - 3000, 3000, None),  # ends exactly at the end of the UMEM
    (UNALIGNED.size - 2999, 3000, "XDP_END_OUT_OF_UMEM"),
    (UNALIGNED.size - 1, 1, None),
    (UNALIGNED.size, 1, "XDP_ADDR_OUT_OF_UMEM"),
    (unaligned_addr(UNALIGNED.size - 1, 0xFFFF), 1, None),  # offset in the top 16 bits
    (unaligned_addr(UNALIGNED.size - 1, 0xFFFF) + 1, 1, "XDP_ADDR_OUT_OF_UMEM"),
    (unaligned_addr(UNALIGNED.size - 64, 7), 64, None),
    (unaligned_addr(UNALIGNED.size - 64, 7), 65, "XDP_END_OUT_OF_UMEM"),
    (U64_MAX, 1, "XDP_ADDR_OUT_OF_UMEM"),  # base 2**48 - 1 plus offset 0xffff: no wrap, far out
    (0, U32_MAX, "LEN_TOO_LONG"),
]


@pytest.mark.parametrize(
    ("addr", "length", "reason"),
    UNALIGNED_CASES,
)
def test_unaligned_descriptor_boundaries(addr: int, length: int, reason: str | None) -> None:
    assert one(UNALIGNED, addr, length) == reason


UNALIGNED_META_CASES = [
    (24, CHUNK - 24, None),
    (24, CHUNK - 23, "LEN_TOO_LONG"),  # len + tx_metadata_len > chunk_size
    (23, 1, "XDP_ADDR_OUT_OF_UMEM"),
    (unaligned_addr(24, 24), 1, None),
    (SIZE - 10, 10, None),
    (SIZE - 9, 10, "XDP_END_OUT_OF_UMEM"),
    (SIZE + 23, 1, "XDP_END_OUT_OF_UMEM"),  # the metadata starts inside, the buffer ends outside
    (SIZE + 24, 1, "XDP_ADDR_OUT_OF_UMEM"),
]


@pytest.mark.parametrize(
    ("addr", "length", "reason"),
    UNALIGNED_META_CASES,
)
def test_unaligned_metadata_boundaries(addr: int, length: int, reason: str | None) -> None:
    assert one(UNALIGNED_META, addr, length, M) == reason


def test_unaligned_options_rule() -> None:
    assert one(UNALIGNED, 0, 64, 1 << 5) == "XDP_OPTIONS_UNKNOWN"
    assert one(UNALIGNED, 0, 3001, 1 << 5) == "LEN_TOO_LONG"  # the length outranks the options


def test_wrong_dtype_is_refused() -> None:
    with pytest.raises(TypeError):
        descriptor_reasons(np.zeros(2, dtype=np.uint64), ALIGNED)


# -- packets: net/xdp/xsk.c ------------------------------------------------------------------------

V = (0, 64, C)  # a valid fragment that continues
E = (CHUNK, 64, 0)  # a valid last (or only) descriptor
BAD = (0, 0, C)  # invalid (len 0), continues
BAD_END = (0, 0, 0)  # invalid, ends its packet


def verdicts(*rows: tuple[int, int, int], umem: XdpUmem = ALIGNED) -> list[str | None]:
    return reason_names(check_xdp_tx(descs(*rows), umem))


def test_packet_limit_is_18_descriptors() -> None:
    limit = XSK_MAX_DESCS_PER_PACKET
    assert limit == 18
    assert verdicts(*[V] * (limit - 1), E) == [None] * limit
    assert verdicts(*[V] * limit, E, E) == ["PKT_TOO_MANY_FRAGS"] * (limit + 1) + [None]  # dropped whole
    assert verdicts(*[V] * (2 * limit), E) == ["PKT_TOO_MANY_FRAGS"] * (2 * limit + 1)


def test_open_packet_at_the_end() -> None:
    limit = XSK_MAX_DESCS_PER_PACKET
    assert verdicts(E, *[V] * (limit - 1)) == [None] + ["PKT_UNTERMINATED"] * (limit - 1)
    assert verdicts(*[V] * limit) == ["PKT_TOO_MANY_FRAGS"] * limit  # the 18th continues: -EOVERFLOW already
    assert verdicts(E, BAD, V) == [None, "LEN_ZERO", "PKT_BAD_FRAGMENT"]


def test_bad_fragment_drops_its_whole_packet() -> None:
    assert verdicts(V, BAD, V, E, E) == ["PKT_BAD_FRAGMENT", "LEN_ZERO", "PKT_BAD_FRAGMENT", "PKT_BAD_FRAGMENT", None]
    assert verdicts(BAD, V, E, E) == ["LEN_ZERO", "PKT_BAD_FRAGMENT", "PKT_BAD_FRAGMENT", None]
    assert verdicts(V, V, BAD_END, E) == ["PKT_BAD_FRAGMENT", "PKT_BAD_FRAGMENT", "LEN_ZERO", None]


def test_an_invalid_descriptor_without_contd_ends_its_packet() -> None:
    assert verdicts(V, BAD_END, V, E) == ["PKT_BAD_FRAGMENT", "LEN_ZERO", None, None]
    # an invalid descriptor's own XDP_PKT_CONTD still chains (unknown bits plus bit 0)
    assert verdicts(V, (0, 64, C | 4), V, E, E) == [
        "PKT_BAD_FRAGMENT", "XDP_OPTIONS_UNKNOWN", "PKT_BAD_FRAGMENT", "PKT_BAD_FRAGMENT", None,
    ]  # fmt: skip


def test_too_many_outranks_a_bad_fragment() -> None:
    rows = [V] * 10 + [BAD] + [V] * 10 + [E]
    got = verdicts(*rows)
    assert got[10] == "LEN_ZERO"
    assert set(got[:10] + got[11:]) == {"PKT_TOO_MANY_FRAGS"}


def test_metadata_without_a_metadata_area() -> None:
    first = (0, 64, M)
    assert verdicts(first, E) == ["XDP_METADATA_WITHOUT_LEN", None]
    assert verdicts((0, 64, M | C), V, E, E) == ["XDP_METADATA_WITHOUT_LEN"] + ["PKT_BAD_FRAGMENT"] * 2 + [None]
    assert verdicts(V, (0, 64, M)) == [None, None]  # only the first descriptor's bit is looked at
    assert verdicts(BAD, (0, 64, M), E) == ["LEN_ZERO", "PKT_BAD_FRAGMENT", None]
    assert verdicts(BAD, E, first, E) == ["LEN_ZERO", "PKT_BAD_FRAGMENT", "XDP_METADATA_WITHOUT_LEN", None]
    assert verdicts((0, 0, M)) == ["LEN_ZERO"]  # the descriptor checks come first
    assert verdicts((16, 64, M), umem=ALIGNED_META) == [None]


def test_unaligned_packets_follow_the_same_rules() -> None:
    rows = [(unaligned_addr(1000 * i + 7, i), 100, C) for i in range(17)] + [(2999, 3000, 0)]
    assert verdicts(*rows, umem=UNALIGNED) == [None] * 18


def test_empty_input() -> None:
    assert verdicts() == []


# -- metadata: xsk_skb_metadata (net/xdp/xsk.c) -----------------------------------------------------

TS, CS, LT = XDP_TXMD_FLAGS_TIMESTAMP, XDP_TXMD_FLAGS_CHECKSUM, XDP_TXMD_FLAGS_LAUNCH_TIME


def metas(*rows: tuple[int, int, int, int]) -> np.ndarray:
    """An XSK_TX_METADATA array of (flags, csum_start, csum_offset, launch_time) rows."""
    return np.array(list(rows), dtype=XSK_TX_METADATA)


def test_the_struct_is_the_kernels() -> None:
    """include/uapi/linux/if_xdp.h, 6.15 and later: 24 bytes; flags, then request {u16, u16, u64}."""
    assert XSK_TX_METADATA.itemsize == 24
    fields = XSK_TX_METADATA.fields
    assert fields is not None
    assert {name: fields[name][1] for name in fields} == {
        "flags": 0, "csum_start": 8, "csum_offset": 10, "launch_time": 16,
    }  # fmt: skip
    assert (TS, CS, LT) == (1, 2, 4)


META_CASES = [  # (len, flags, csum_start, csum_offset, reason) on ALIGNED_META (tx_metadata_len 16)
    (60, 0, 0, 0, None),
    (60, TS, 0, 0, None),
    (60, TS | CS, 0, 0, None),
    (60, 1 << 3, 0, 0, "XDP_METADATA_FLAGS_UNKNOWN"),
    (60, 1 << 63, 0, 0, "XDP_METADATA_FLAGS_UNKNOWN"),
    (60, CS | 1 << 40, 60, 60, "XDP_METADATA_FLAGS_UNKNOWN"),  # the flags are checked first
    (60, CS, 50, 8, None),  # 50 + 8 + 2 == len
    (60, CS, 50, 9, "XDP_METADATA_CSUM_BEYOND_LEN"),
    (60, CS, 58, 0, None),
    (60, CS, 0, 58, None),
    (60, CS, 0xFFFF, 0xFFFF, "XDP_METADATA_CSUM_BEYOND_LEN"),  # summed without wrapping
    (2, CS, 0, 0, None),
    (1, CS, 0, 0, "XDP_METADATA_CSUM_BEYOND_LEN"),
    (1, 0, 0xFFFF, 0xFFFF, None),  # no checksum asked for: the fields are not looked at
    (60, LT, 0, 0, "XDP_METADATA_LAUNCH_TIME_OUTSIDE"),  # launch_time is bytes 16..23: not in a 16-byte area
    (60, LT | CS, 50, 9, "XDP_METADATA_LAUNCH_TIME_OUTSIDE"),
]


@pytest.mark.parametrize(("length", "flags", "start", "offset", "reason"), META_CASES)
def test_metadata_boundaries(length: int, flags: int, start: int, offset: int, reason: str | None) -> None:
    rows, meta = descs((16, length, M)), metas((flags, start, offset, 0))
    assert R.name(int(metadata_reasons(rows, meta, ALIGNED_META)[0])) == (reason or "OK")
    assert reason_names(check_xdp_tx(rows, ALIGNED_META, meta)) == [reason]
    assert reason_names(check_xdp_tx(descs((16, length, 0)), ALIGNED_META, meta)) == [None]  # not asked for


def test_launch_time_depends_on_the_kernel_and_the_area() -> None:
    meta = metas((LT, 0, 0, 12345))
    assert reason_names(check_xdp_tx(descs((24, 60, M)), UNALIGNED_META, meta)) == [None]  # 24 bytes: inside
    published = XdpUmem(SIZE, CHUNK, tx_metadata_len=16, page_size=PAGE, rules=PUBLISHED_6_18)
    assert reason_names(check_xdp_tx(descs((16, 60, M)), published, meta)) == [None]
    assert reason_names(check_xdp_tx(descs((16, 60, M)), ALIGNED_META, meta)) == ["XDP_METADATA_LAUNCH_TIME_OUTSIDE"]


def test_only_a_packets_first_descriptor_has_its_metadata_read() -> None:
    bad, zero = (1 << 5, 0, 0, 0), (0, 0, 0, 0)
    rows = descs((16, 64, M | C), (CHUNK + 16, 64, M | C), (2 * CHUNK + 16, 64, M))
    assert reason_names(check_xdp_tx(rows, ALIGNED_META, metas(zero, bad, bad))) == [None] * 3
    assert reason_names(check_xdp_tx(rows, ALIGNED_META, metas(bad, zero, zero))) == [
        "XDP_METADATA_FLAGS_UNKNOWN", "PKT_BAD_FRAGMENT", "PKT_BAD_FRAGMENT",
    ]  # fmt: skip
    # the checksum is held to the first descriptor's own length, not the packet's
    csum = (CS, 60, 3, 0)
    assert reason_names(check_xdp_tx(rows, ALIGNED_META, metas(csum, zero, zero)))[0] == "XDP_METADATA_CSUM_BEYOND_LEN"
    # the descriptor's own checks come first, and a packet after a refused one starts afresh
    rows = descs((0, 64, M), (16, 64, M))
    assert reason_names(check_xdp_tx(rows, ALIGNED_META, metas(bad, bad))) == [
        "XDP_ADDR_OUT_OF_UMEM", "XDP_METADATA_FLAGS_UNKNOWN",
    ]  # fmt: skip


def test_no_metadata_area_outranks_the_contents() -> None:
    assert reason_names(check_xdp_tx(descs((0, 64, M)), ALIGNED, metas((1 << 9, 0, 0, 0)))) == [
        "XDP_METADATA_WITHOUT_LEN"
    ]


def test_zero_or_absent_metadata_is_always_fine() -> None:
    rows = descs(*[(16 + CHUNK * i, 64, M) for i in range(10)])
    assert check_xdp_tx(rows, ALIGNED_META).accepted.all()
    assert check_xdp_tx(rows, ALIGNED_META, np.zeros(10, XSK_TX_METADATA)).accepted.all()


def test_metadata_read_from_a_umem_image() -> None:
    image = np.zeros(SIZE, np.uint8)
    record = metas((CS | TS, 10, 6, 7)).view(np.uint8)
    image[CHUNK : CHUNK + 24] = record  # the area of a buffer at CHUNK + 16 (and of one at CHUNK + 8 in 8 + 16)
    rows = descs((CHUNK + 16, 18, M), (CHUNK + 16, 17, M), (16, 64, M), (0, 64, M), (SIZE + 16, 1, M))
    meta = metadata_from_image(rows, ALIGNED_META, image)
    assert meta.dtype == XSK_TX_METADATA and meta[:2].tolist() == [(CS | TS, 10, 6, 7)] * 2
    assert meta[2:].tolist() == [(0, 0, 0, 0)] * 3  # zero bytes, or an area outside the UMEM
    assert reason_names(check_xdp_tx(rows, ALIGNED_META, meta)) == [
        None, "XDP_METADATA_CSUM_BEYOND_LEN", None, "XDP_ADDR_OUT_OF_UMEM", "XDP_ADDR_OUT_OF_UMEM",
    ]  # fmt: skip
    # unaligned: the top-16-bit offset counts; the last bytes of the image still read
    image2 = np.zeros(UNALIGNED_META.size, np.uint8)
    image2[-30:-6] = metas((1 << 7, 0, 0, 0)).view(np.uint8)
    meta2 = metadata_from_image(descs((unaligned_addr(SIZE - 6, 100), 6, M)), UNALIGNED_META, image2)
    assert meta2["flags"].tolist() == [1 << 7]
    with pytest.raises(ValueError, match="bytes"):
        metadata_from_image(rows, ALIGNED_META, image[:-1])


def test_wrong_metadata_dtype_is_refused() -> None:
    with pytest.raises(TypeError):
        metadata_reasons(descs((16, 1, M)), np.zeros(1, np.uint64), ALIGNED_META)
