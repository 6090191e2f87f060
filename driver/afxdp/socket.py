"""An AF_XDP socket driven from Python: UMEM, the four rings, bind, kick, statistics.

This is the real kernel's descriptor interface, the one the emulated NIC's
verifier models: user space writes ``struct xdp_desc`` (``ring.descriptors.XDP_DESC``)
into a TX ring that the kernel maps into its memory, rings no doorbell register
but calls ``sendto`` ("the kick"), and the kernel checks every descriptor before
it copies the frame out of the UMEM (net/xdp/xsk_queue.h
``xskq_cons_is_valid_desc``).  Setup follows Documentation/networking/af_xdp.rst:

1. ``socket(AF_XDP, SOCK_RAW, 0)``;
2. ``setsockopt(XDP_UMEM_REG)`` with the 32-byte ``struct xdp_umem_reg``
   (see :mod:`driver.afxdp.abi` for why the size matters);
3. ``setsockopt(XDP_UMEM_FILL_RING / XDP_UMEM_COMPLETION_RING / XDP_RX_RING / XDP_TX_RING)``
   with the entry counts (powers of two);
4. ``getsockopt(XDP_MMAP_OFFSETS)`` and one ``mmap`` per ring;
5. ``bind`` to (ifindex, queue) with ``XDP_COPY``: the generic, skb-based path
   that works on any device, veth included (net/xdp/xsk.c ``xsk_bind``,
   ``__xsk_generic_xmit``).

Everything is released by :meth:`XskSocket.close` (and the context manager):
ring mappings, the socket (which unpins the UMEM) and the UMEM mapping.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from driver.afxdp.abi import (
    AF_XDP,
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MSG_DONTWAIT,
    POLLIN,
    SOCK_RAW,
    SOL_XDP,
    STATISTICS_FIELDS,
    UMEM_REG_SIZE,
    XDP_COPY,
    XDP_MAX_TX_SKB_BUDGET,
    XDP_MMAP_OFFSETS,
    XDP_OPTIONS,
    XDP_OPTIONS_ZEROCOPY,
    XDP_PGOFF_RX_RING,
    XDP_PGOFF_TX_RING,
    XDP_RX_RING,
    XDP_STATISTICS,
    XDP_TX_RING,
    XDP_UMEM_COMPLETION_RING,
    XDP_UMEM_FILL_RING,
    XDP_UMEM_PGOFF_COMPLETION_RING,
    XDP_UMEM_PGOFF_FILL_RING,
    XDP_UMEM_REG,
    XDP_USE_SG,
    check,
    ffi,
    last_errno,
    libc,
    mmap_populated,
)
from driver.afxdp.rings import XskRing
from ring.descriptors import XDP_DESC, XDP_UMEM_TX_METADATA_LEN, XDP_UMEM_UNALIGNED_CHUNK_FLAG

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
UMEM_ADDR = np.dtype("<u8")  # fill and completion ring entries: a UMEM address (if_xdp.h)


@dataclass(frozen=True)
class UmemConfig:
    """What ``XDP_UMEM_REG`` is told (net/xdp/xdp_umem.c ``xdp_umem_reg`` checks it)."""

    size: int
    chunk_size: int = 4096
    headroom: int = 0
    unaligned: bool = False
    tx_metadata_len: int = 0

    @property
    def flags(self) -> int:
        flags = XDP_UMEM_UNALIGNED_CHUNK_FLAG if self.unaligned else 0
        if self.tx_metadata_len:
            flags |= XDP_UMEM_TX_METADATA_LEN
        return flags


@dataclass(frozen=True)
class RingSizes:
    """Entries per ring; 0 means "no such ring" (RX or TX may be absent, fill and completion may not)."""

    fill: int = 2048
    completion: int = 2048
    rx: int = 2048
    tx: int = 2048


class Umem:
    """Anonymous, page-aligned, pre-faulted memory (``mmap``), seen as a numpy byte array."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._length = -(-size // PAGE_SIZE) * PAGE_SIZE
        base = mmap_populated(self._length, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, "mmap umem")
        self._base: Any = base
        self.address = int(ffi.cast("uintptr_t", base))
        self.mem = np.frombuffer(ffi.buffer(base, self._length), dtype=np.uint8)[:size]

    def write(self, offset: int, data: bytes | np.ndarray) -> None:
        self.mem[offset : offset + len(data)] = np.frombuffer(bytes(data), np.uint8)

    def read(self, offset: int, length: int) -> bytes:
        return self.mem[offset : offset + length].tobytes()

    def close(self) -> None:
        if self._base is not None:
            self.mem = np.zeros(0, np.uint8)
            libc.munmap(self._base, self._length)
            self._base = None


@dataclass(frozen=True)
class XdpStatistics:
    """``struct xdp_statistics`` (if_xdp.h), as ``getsockopt(XDP_STATISTICS)`` returns it."""

    rx_dropped: int
    rx_invalid_descs: int
    tx_invalid_descs: int
    rx_ring_full: int
    rx_fill_ring_empty_descs: int
    tx_ring_empty_descs: int

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in STATISTICS_FIELDS}


class XskSocket:
    """One AF_XDP socket with its own UMEM, bound to ``(ifindex, queue)`` in copy mode.

    Create it with :meth:`open` from a thread that is inside the device's
    network namespace (see ``driver.netns.NetNamespace.inside``).
    """

    def __init__(self, fd: int, umem: Umem, config: UmemConfig) -> None:
        self.fd = fd
        self.umem = umem
        self.config = config
        self.fill: XskRing | None = None
        self.completion: XskRing | None = None
        self.rx: XskRing | None = None
        self.tx: XskRing | None = None
        self.kicks = 0

    @classmethod
    def open(
        cls,
        ifindex: int,
        config: UmemConfig,
        rings: RingSizes | None = None,
        queue: int = 0,
        multi_buffer: bool = False,
        umem_reg_size: int = UMEM_REG_SIZE,
    ) -> XskSocket:
        """Socket, UMEM, rings, bind.  ``umem_reg_size`` < 32 reproduces old user space (see driver/afxdp/abi.py)."""
        rings = rings or RingSizes()
        fd = check(libc.socket(AF_XDP, SOCK_RAW, 0), "socket(AF_XDP)")
        umem = None
        sock = None
        try:
            umem = Umem(config.size)
            sock = cls(fd, umem, config)
            sock.register_umem(umem_reg_size)
            sock._setup_rings(rings)
            sock.bind(ifindex, queue, XDP_COPY | (XDP_USE_SG if multi_buffer else 0))
            return sock
        except BaseException:
            if sock is not None:
                sock.close()
            else:
                libc.close(fd)
                if umem is not None:
                    umem.close()
            raise

    # -- setup ----------------------------------------------------------------
    def register_umem(self, reg_size: int = UMEM_REG_SIZE) -> None:
        """``XDP_UMEM_REG`` with the first ``reg_size`` bytes of the 32-byte struct."""
        reg = ffi.new("struct xdp_umem_reg *")
        reg.addr = self.umem.address
        reg.len = self.config.size
        reg.chunk_size = self.config.chunk_size
        reg.headroom = self.config.headroom
        reg.flags = self.config.flags
        reg.tx_metadata_len = self.config.tx_metadata_len
        check(libc.setsockopt(self.fd, SOL_XDP, XDP_UMEM_REG, reg, reg_size), "setsockopt(XDP_UMEM_REG)")

    def _set_u32(self, option: int, value: int, what: str) -> None:
        val = ffi.new("uint32_t *", value)
        check(libc.setsockopt(self.fd, SOL_XDP, option, val, ffi.sizeof("uint32_t")), f"setsockopt({what})")

    def _setup_rings(self, sizes: RingSizes) -> None:
        self._set_u32(XDP_UMEM_FILL_RING, sizes.fill, "XDP_UMEM_FILL_RING")
        self._set_u32(XDP_UMEM_COMPLETION_RING, sizes.completion, "XDP_UMEM_COMPLETION_RING")
        if sizes.rx:
            self._set_u32(XDP_RX_RING, sizes.rx, "XDP_RX_RING")
        if sizes.tx:
            self._set_u32(XDP_TX_RING, sizes.tx, "XDP_TX_RING")
        off = ffi.new("struct xdp_mmap_offsets *")
        optlen = ffi.new("uint32_t *", ffi.sizeof(off[0]))
        check(libc.getsockopt(self.fd, SOL_XDP, XDP_MMAP_OFFSETS, off, optlen), "getsockopt(XDP_MMAP_OFFSETS)")
        self.fill = XskRing.map("fill", self.fd, XDP_UMEM_PGOFF_FILL_RING, off.fr, sizes.fill, UMEM_ADDR)
        self.completion = XskRing.map(
            "completion", self.fd, XDP_UMEM_PGOFF_COMPLETION_RING, off.cr, sizes.completion, UMEM_ADDR
        )
        if sizes.rx:
            self.rx = XskRing.map("rx", self.fd, XDP_PGOFF_RX_RING, off.rx, sizes.rx, XDP_DESC)
        if sizes.tx:
            self.tx = XskRing.map("tx", self.fd, XDP_PGOFF_TX_RING, off.tx, sizes.tx, XDP_DESC)

    def bind(self, ifindex: int, queue: int, flags: int) -> None:
        addr = ffi.new("struct sockaddr_xdp *")
        addr.sxdp_family = AF_XDP
        addr.sxdp_flags = flags
        addr.sxdp_ifindex = ifindex
        addr.sxdp_queue_id = queue
        check(libc.bind(self.fd, addr, ffi.sizeof(addr[0])), f"bind(AF_XDP, ifindex {ifindex}, queue {queue})")

    def set_tx_budget(self, budget: int) -> bool:
        """``XDP_MAX_TX_SKB_BUDGET``: descriptors per kick (default 32); False if the kernel lacks it.

        The kernel allows [32, TX ring entries] and says EINVAL outside (net/xdp/xsk.c).
        """
        try:
            self._set_u32(XDP_MAX_TX_SKB_BUDGET, budget, "XDP_MAX_TX_SKB_BUDGET")
        except OSError as err:
            if err.errno == errno.ENOPROTOOPT:  # a kernel before 6.17
                return False
            raise
        return True

    # -- datapath -------------------------------------------------------------
    def kick(self) -> int:
        """``sendto(fd, NULL, 0, MSG_DONTWAIT)``: the kernel drains the TX ring.  Returns 0 or the errno.

        EAGAIN (budget spent or completion ring full) and EBUSY (the device
        dropped a frame) are normal outcomes, not failures (net/xdp/xsk.c
        ``__xsk_generic_xmit``).
        """
        self.kicks += 1
        if libc.sendto(self.fd, ffi.NULL, 0, MSG_DONTWAIT, ffi.NULL, 0) < 0:
            return last_errno()
        return 0

    def wait_rx(self, timeout_ms: int) -> bool:
        """poll(POLLIN): True once the RX ring has entries."""
        pfd = ffi.new("struct pollfd *")
        pfd.fd = self.fd
        pfd.events = POLLIN
        return int(libc.poll(pfd, 1, timeout_ms)) > 0 and bool(pfd.revents & POLLIN)

    def statistics(self) -> XdpStatistics:
        """``getsockopt(XDP_STATISTICS)``; fields an older kernel does not fill read as 0."""
        stats = ffi.new("struct xdp_statistics *")
        optlen = ffi.new("uint32_t *", ffi.sizeof(stats[0]))
        check(libc.getsockopt(self.fd, SOL_XDP, XDP_STATISTICS, stats, optlen), "getsockopt(XDP_STATISTICS)")
        return XdpStatistics(*(int(getattr(stats, name)) for name in STATISTICS_FIELDS))

    def tx_invalid_descs(self) -> int:
        """The one statistics field the TX probe reads after every kick."""
        return self.statistics().tx_invalid_descs

    def zerocopy(self) -> bool:
        """``getsockopt(XDP_OPTIONS)``: False in copy mode."""
        opts = ffi.new("struct xdp_options *")
        optlen = ffi.new("uint32_t *", ffi.sizeof(opts[0]))
        check(libc.getsockopt(self.fd, SOL_XDP, XDP_OPTIONS, opts, optlen), "getsockopt(XDP_OPTIONS)")
        return bool(opts.flags & XDP_OPTIONS_ZEROCOPY)

    def ring_counters(self) -> dict[str, dict[str, int]]:
        """Producer and consumer of every mapped ring."""
        rings = {"fill": self.fill, "completion": self.completion, "rx": self.rx, "tx": self.tx}
        return {n: {"producer": r.producer, "consumer": r.consumer} for n, r in rings.items() if r is not None}

    # -- teardown -------------------------------------------------------------
    def close(self) -> None:
        for ring in (self.fill, self.completion, self.rx, self.tx):
            if ring is not None:
                ring.unmap()
        self.fill = self.completion = self.rx = self.tx = None
        if self.fd >= 0:
            libc.close(self.fd)
            self.fd = -1
        self.umem.close()

    def __enter__(self) -> XskSocket:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
