"""AF_XDP TX descriptors of every class, aimed at one UMEM's exact edges; deterministic by seed.

The cases feed the ``xdp`` verifier (verifier/rules/xdp.py) and the differential
run against a real socket (``nic-sandbox verify --format xdp --against
kernel``).  Each class produces a small *group*: one descriptor, or the
descriptors of one multi-buffer packet.  Groups are drawn round-robin over
:data:`CLASSES`, so every class appears in any run of a few hundred
descriptors, and each group picks its variant and numbers from a numpy
``Generator`` seeded once.  Boundaries come in pairs (fits / one byte over),
computed from the UMEM's size, chunk size, mode and tx metadata length.
Descriptors carry a ``struct xsk_tx_metadata`` each (``XdpCases.meta``): zero,
except in the ``metadata-contents`` class, which draws random flags (known and
unknown bits) and checksum fields on either side of the kernel's limits.

This module states no verdicts: which descriptors pass is the verifier's and
the kernel's business, and agreeing on exactly these edges is the point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from ring.descriptors import (
    XDP_DESC,
    XDP_PKT_CONTD,
    XDP_TX_METADATA,
    XDP_TXMD_FLAGS_CHECKSUM,
    XDP_TXMD_FLAGS_LAUNCH_TIME,
    XSK_TX_METADATA,
    XSK_UNALIGNED_BUF_ADDR_MASK,
    XSK_UNALIGNED_BUF_OFFSET_SHIFT,
)
from verifier.rules.xdp import CSUM_SIZE, TXMD_KNOWN_FLAGS, XSK_MAX_DESCS_PER_PACKET, XdpUmem

U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1
OFFSET_MAX = (1 << (64 - XSK_UNALIGNED_BUF_OFFSET_SHIFT)) - 1  # the top-16-bit offset field
#: Frame lengths worth hitting: a byte, an Ethernet header, the minimum frame, a full MTU frame.
COMMON_LENGTHS = (1, 14, 60, 64, 1514)

U16_MAX = (1 << 16) - 1
Desc = tuple[int, int, int]  # addr, len, options
Meta = tuple[int, int, int, int]  # flags, csum_start, csum_offset, launch_time (XSK_TX_METADATA)
ZERO_META: Meta = (0, 0, 0, 0)
T = TypeVar("T")


@dataclass
class XdpCases:
    """Generated descriptors (XDP_DESC), per descriptor ``class/variant``, and its metadata (XSK_TX_METADATA)."""

    descs: npt.NDArray[np.void]
    labels: list[str]
    meta: npt.NDArray[np.void]


class _Aim:
    """Addresses and lengths at a UMEM's edges, for one mode."""

    def __init__(self, umem: XdpUmem, rng: np.random.Generator) -> None:
        self.u = umem
        self.rng = rng
        self.meta = umem.tx_metadata_len
        #: The metadata of the group a class just made, one per descriptor; None: all zero.
        self.group_meta: list[Meta] | None = None

    def pick(self, values: Sequence[T]) -> T:
        return values[int(self.rng.integers(len(values)))]

    def room(self) -> int:
        """The longest buffer that can follow the metadata area."""
        return self.u.chunk_size - self.meta

    def length(self) -> int:
        """A valid length: a common frame size that fits, or anything from 1 to the room left."""
        fits = [n for n in COMMON_LENGTHS if n <= self.room()] + [self.room()]
        if self.rng.random() < 0.5:
            return self.pick(fits)
        return int(self.rng.integers(1, self.room() + 1))

    def start(self, length: int) -> int:
        """A UMEM offset where ``length`` bytes (and the metadata before them) fit."""
        u = self.u
        if u.unaligned:
            return int(self.rng.integers(self.meta, u.size - length + 1))
        chunk = int(self.rng.integers(u.size // u.chunk_size))
        return chunk * u.chunk_size + int(self.rng.integers(self.meta, u.chunk_size - length + 1))

    def encode(self, start: int) -> int:
        """``start`` as a descriptor address; in unaligned mode, sometimes split base + top-bits offset."""
        if not self.u.unaligned or self.rng.random() < 0.5:
            return start
        offset = int(self.rng.integers(0, min(start, OFFSET_MAX) + 1))
        return (start - offset) | (offset << XSK_UNALIGNED_BUF_OFFSET_SHIFT)

    def valid(self, options: int = 0) -> Desc:
        n = self.length()
        return self.encode(self.start(n)), n, options


# -- the classes --------------------------------------------------------------------------------------
# Each returns (variant, descriptors).  ``a.pick`` and ``a.rng`` make every choice.


def _valid(a: _Aim) -> tuple[str, list[Desc]]:
    meta = XDP_TX_METADATA if a.meta and a.rng.random() < 0.5 else 0
    return ("metadata" if meta else "plain"), [a.valid(meta)]


def _addr_beyond_umem(a: _Aim) -> tuple[str, list[Desc]]:
    size, meta = a.u.size, a.meta
    variant, addr = a.pick(
        [
            ("last-byte", size - 1),  # the last start that can hold one byte (with no metadata)
            ("size", size),
            ("size+meta", size + meta),
            ("beyond", size + meta + int(a.rng.integers(1, 1 << 20))),
            ("far", int(a.rng.integers(size + meta, 1 << 47))),
            ("top", U64_MAX - int(a.rng.integers(0, 1 << 16))),
        ]
    )
    return variant, [(addr, 1, 0)]


def _chunk_cross(a: _Aim) -> tuple[str, list[Desc]]:
    """Aligned: buffers that end exactly at their chunk's end, and one byte further (either way round)."""
    u, meta = a.u, a.meta
    if u.unaligned:
        # no chunk rule here: the whole buffer must fit in chunk_size and in the UMEM, anywhere
        pages = (u.size - 1) // u.page_size  # page boundaries strictly inside the UMEM
        boundary = int(a.rng.integers(1, pages + 1)) * u.page_size if pages else u.size // 2
        spans = max(meta + a.room() // 2, boundary)  # a buffer from here - room/2 spans the boundary
        variant, desc = a.pick(
            [
                ("len-fits", (a.encode(a.start(a.room())), a.room(), 0)),
                ("len+1", (a.encode(a.start(a.room())), a.room() + 1, 0)),
                ("end-at-size", (a.encode(u.size - a.room()), a.room(), 0)),
                ("end-at-size+1", (a.encode(u.size - a.room() + 1), a.room(), 0)),
                ("spans-page", (a.encode(spans - a.room() // 2), a.room(), 0)),
            ]
        )
        return variant, [desc]
    chunk = int(a.rng.integers(u.size // u.chunk_size)) * u.chunk_size
    offset = int(a.rng.integers(meta, u.chunk_size))
    fit = u.chunk_size - offset  # bytes from addr to the chunk's end
    variant, desc = a.pick(
        [
            ("fits", (chunk + offset, fit, 0)),
            ("len+1", (chunk + offset, fit + 1, 0)),
            ("addr+1", (chunk + offset + 1, fit, 0) if fit > 1 else (chunk + offset, fit + 1, 0)),
            ("addr-1", (chunk + offset - 1, fit + 1, 0) if chunk + offset else (0, u.chunk_size + 1, 0)),
            ("whole-chunk", (chunk + meta, u.chunk_size - meta, 0)),
            ("whole-chunk+1", (chunk + meta, u.chunk_size - meta + 1, 0)),
        ]
    )
    return variant, [desc]


def _len_zero(a: _Aim) -> tuple[str, list[Desc]]:
    addr, _, _ = a.valid()
    return "zero", [(addr, 0, 0)]


def _len_huge(a: _Aim) -> tuple[str, list[Desc]]:
    u, meta = a.u, a.meta
    variant, n = a.pick(
        [
            ("room+1", a.room() + 1),
            ("chunk+1", u.chunk_size + 1),
            ("64k", 1 << 16),
            ("2^31", 1 << 31),
            ("u32-max", U32_MAX),
            ("u32-wraps-with-meta", U32_MAX - meta + 1 if meta else U32_MAX),
        ]
    )
    addr = a.encode(a.start(1))
    return variant, [(addr, n, 0)]


def _options_unknown(a: _Aim) -> tuple[str, list[Desc]]:
    bit = int(a.rng.integers(2, 32))
    variant, options = a.pick(
        [
            (f"bit{bit}", 1 << bit),
            ("all", U32_MAX),
            ("random", int(a.rng.integers(4, U32_MAX + 1)) & ~3 | int(a.rng.integers(0, 4))),
        ]
    )
    addr, n, _ = a.valid()
    return variant, [(addr, n, options)]


def _metadata(a: _Aim) -> tuple[str, list[Desc]]:
    """XDP_TX_METADATA: the metadata area must lie before addr, in the UMEM (and the chunk, aligned)."""
    u, meta = a.u, a.meta
    if not meta:
        # no metadata area registered: only a packet's first descriptor is refused for asking
        variant, descs = a.pick(
            [
                ("no-area", [a.valid(XDP_TX_METADATA)]),
                ("no-area-first-frag", [a.valid(XDP_TX_METADATA | XDP_PKT_CONTD), a.valid(XDP_PKT_CONTD), a.valid()]),
                ("no-area-later-frag", [a.valid(XDP_PKT_CONTD), a.valid(XDP_TX_METADATA)]),
            ]
        )
        return variant, descs
    n = int(a.rng.integers(1, a.room() + 1))
    chunk = int(a.rng.integers(u.size // u.chunk_size)) * u.chunk_size
    variant, addr = a.pick(
        [
            ("exact", chunk + meta),  # metadata at the very start of the chunk
            ("short-by-1", chunk + meta - 1),  # metadata starts in the chunk before (or before the UMEM)
            ("below-meta", int(a.rng.integers(0, meta))),  # addr - tx_metadata_len underflows
            ("anywhere", a.start(n)),
        ]
    )
    return variant, [(a.encode(addr), n, XDP_TX_METADATA)]


def _metadata_contents(a: _Aim) -> tuple[str, list[Desc]]:
    """What lies in the metadata area: flags known and unknown, checksum requests at the length's edge.

    The kernel reads it for a packet's first descriptor with XDP_TX_METADATA
    (net/xdp/xsk.c ``xsk_skb_metadata``); elsewhere the same bytes are ignored.
    """
    desc = a.valid(XDP_TX_METADATA)
    n = desc[1]
    rng = a.rng

    def u16() -> int:
        return int(rng.integers(0, U16_MAX + 1))

    def known() -> int:
        return int(rng.integers(0, TXMD_KNOWN_FLAGS + 1)) & TXMD_KNOWN_FLAGS

    def split(total: int) -> tuple[int, int]:
        """csum_start, csum_offset with csum_start + csum_offset == total (each a u16)."""
        start = int(rng.integers(max(0, total - U16_MAX), min(total, U16_MAX) + 1))
        return start, total - start

    def csum(reach: int, extra: int = 0) -> Meta:
        """A checksum request whose csum_start + csum_offset + 2 is ``reach`` (at least 2)."""
        start, offset = split(max(reach, CSUM_SIZE) - CSUM_SIZE)
        return XDP_TXMD_FLAGS_CHECKSUM | extra, start, offset, int(rng.integers(0, 1 << 63))

    unknown_bit = 1 << int(rng.integers(3, 64))
    variant, meta = a.pick(
        [
            ("zero", ZERO_META),
            ("known-flags", (known() & ~XDP_TXMD_FLAGS_CHECKSUM, u16(), u16(), int(rng.integers(0, 1 << 63)))),
            ("unknown-bit", (known() | unknown_bit, 0, 0, 0)),
            ("random-flags", (int(rng.integers(0, 1 << 63)) << 1 | int(rng.integers(0, 2)), u16(), u16(), 0)),
            ("csum-fits", csum(n, known() & ~XDP_TXMD_FLAGS_LAUNCH_TIME)),
            ("csum-over", csum(n + 1, known() & ~XDP_TXMD_FLAGS_LAUNCH_TIME)),
            ("csum-random", (XDP_TXMD_FLAGS_CHECKSUM, u16(), u16(), 0)),
            ("csum-fields-without-flag", (known() & ~XDP_TXMD_FLAGS_CHECKSUM, u16(), u16(), 0)),
            ("launch-time", (XDP_TXMD_FLAGS_LAUNCH_TIME, 0, 0, int(rng.integers(0, 1 << 63)))),
        ]
    )
    shape = a.pick(["alone", "first-of-packet", "later-fragment", "no-option"])
    if shape == "alone":
        descs, metas = [desc], [meta]
    elif shape == "first-of-packet":  # checked against the first descriptor's own len, not the packet's
        descs = [(desc[0], n, XDP_TX_METADATA | XDP_PKT_CONTD), a.valid(XDP_PKT_CONTD), a.valid()]
        metas = [meta, ZERO_META, ZERO_META]
    elif shape == "later-fragment":  # not read: only a packet's first descriptor's metadata is
        descs = [a.valid(XDP_PKT_CONTD), desc]
        metas = [ZERO_META, meta]
    else:  # the same bytes, but the descriptor does not ask for them to be read
        descs, metas = [(desc[0], n, 0)], [meta]
    a.group_meta = metas
    return f"{variant}-{shape}", descs


def _multi_buffer(a: _Aim) -> tuple[str, list[Desc]]:
    limit = XSK_MAX_DESCS_PER_PACKET
    frags = a.pick([2, 5, limit - 1, limit, limit + 1, 2 * limit, 2 * limit + 1])
    descs = [a.valid(XDP_PKT_CONTD) for _ in range(frags - 1)] + [a.valid()]
    return f"{frags}-frags", descs


def _bad_fragment(a: _Aim) -> tuple[str, list[Desc]]:
    frags = int(a.rng.integers(3, 9))
    where = a.pick(["first", "middle", "last"])
    bad = {"first": 0, "middle": int(a.rng.integers(1, frags - 1)), "last": frags - 1}[where]
    descs = [a.valid(XDP_PKT_CONTD if i < frags - 1 else 0) for i in range(frags)]
    addr, n, options = descs[bad]
    kind, broken = a.pick(
        [
            ("len0", (addr, 0, options)),
            ("beyond", (a.u.size + a.meta + addr, n, options)),
            ("option", (addr, n, options | 1 << int(a.rng.integers(2, 32)))),
            ("len0-ends-packet", (addr, 0, 0)),  # no XDP_PKT_CONTD: the packet ends here, the rest is a new one
        ]
    )
    descs[bad] = broken
    return f"{where}-{kind}-of-{frags}", descs


def _unaligned_offset(a: _Aim) -> tuple[str, list[Desc]]:
    """Addresses with the top-16-bit offset field set; in aligned mode they are just huge addresses."""
    u = a.u
    n = int(a.rng.integers(1, a.room() + 1))
    start = int(a.rng.integers(a.meta, u.size - n + 1))
    offset = int(a.rng.integers(0, min(start, OFFSET_MAX) + 1))
    shift = XSK_UNALIGNED_BUF_OFFSET_SHIFT
    variant, addr = a.pick(
        [
            ("fits", (start - offset) | (offset << shift)),
            ("end-at-size", (u.size - n - offset) | (offset << shift) if u.size - n >= offset else u.size - n),
            ("offset-past-end", (u.size - n) | (int(a.rng.integers(1, OFFSET_MAX + 1)) << shift)),
            ("max-offset", start | (OFFSET_MAX << shift)),
            ("max-base", XSK_UNALIGNED_BUF_ADDR_MASK | (int(a.rng.integers(0, OFFSET_MAX + 1)) << shift)),
        ]
    )
    return variant, [(addr, n, 0)]


def _wrap(a: _Aim) -> tuple[str, list[Desc]]:
    """``addr + len`` past 2**64."""
    back = int(a.rng.integers(1, a.u.chunk_size + 1))
    variant, n = a.pick([("to-2^64", back), ("past-2^64", back + 1), ("far-past", back + a.room())])
    return variant, [(U64_MAX - back + 1, min(n, U32_MAX), 0)]


CLASSES: dict[str, Callable[[_Aim], tuple[str, list[Desc]]]] = {
    "valid": _valid,
    "addr-beyond-umem": _addr_beyond_umem,
    "chunk-cross": _chunk_cross,
    "len-zero": _len_zero,
    "len-huge": _len_huge,
    "options-unknown": _options_unknown,
    "metadata": _metadata,
    "metadata-contents": _metadata_contents,
    "multi-buffer": _multi_buffer,
    "bad-fragment": _bad_fragment,
    "unaligned-offset": _unaligned_offset,
    "wrap": _wrap,
}


def generate(umem: XdpUmem, count: int, seed: int, classes: Iterable[str] | None = None) -> XdpCases:
    """``count`` descriptors for ``umem``, groups drawn round-robin over ``classes`` (default: all).

    Deterministic: the same UMEM, count, seed and classes give the same
    descriptors.  The last group is cut at ``count``, which may leave a
    multi-buffer packet open at the end (a case of its own).
    """
    names = list(CLASSES) if classes is None else list(classes)
    unknown = [n for n in names if n not in CLASSES]
    if unknown or not names:
        raise ValueError(f"unknown xdp case classes {unknown}; choose from {', '.join(CLASSES)}")
    aim = _Aim(umem, np.random.default_rng(seed))
    rows: list[Desc] = []
    labels: list[str] = []
    metas: list[Meta] = []
    turn = 0
    while len(rows) < count:
        name = names[turn % len(names)]
        turn += 1
        aim.group_meta = None
        variant, descs = CLASSES[name](aim)
        rows.extend(descs)
        labels.extend([f"{name}/{variant}"] * len(descs))
        metas.extend(aim.group_meta or [ZERO_META] * len(descs))
    return XdpCases(
        np.array(rows[:count], dtype=XDP_DESC), labels[:count], np.array(metas[:count], dtype=XSK_TX_METADATA)
    )
