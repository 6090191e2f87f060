"""The AF_XDP user-space ABI, declared once: cffi structs, libc calls and the option numbers.

Every number here is from the Linux UAPI header ``include/uapi/linux/if_xdp.h``
(6.x: ``XDP_USE_SG``, ``XDP_UMEM_TX_METADATA_LEN``, ``XDP_MAX_TX_SKB_BUDGET``
are newer than the copy Debian ships in ``linux-libc-dev``, so they are spelled
out here rather than read from /usr/include).  The socket options are handled
by ``xsk_setsockopt``/``xsk_getsockopt`` in ``net/xdp/xsk.c``.

Why ``struct xdp_umem_reg`` is declared with all six fields (32 bytes): the
kernel picks the layout by ``optlen`` (``xsk_setsockopt``, case
``XDP_UMEM_REG``).  Anything shorter than 32 bytes is read as the original
24-byte ``xdp_umem_reg_v1`` (addr, len, chunk_size, headroom) and ``flags`` is
taken as 0 -- so a caller that asks for unaligned chunks with a short struct
silently gets aligned chunks.  ``tx_metadata_len`` is only honoured when
``flags`` has ``XDP_UMEM_TX_METADATA_LEN`` (net/xdp/xdp_umem.c ``xdp_umem_reg``).

The format itself is declared once in ``ring.descriptors``: ``struct xdp_desc``
(``XDP_DESC``), its ``options`` bits (``XDP_PKT_CONTD``, ``XDP_TX_METADATA``), the
``xdp_umem_reg.flags`` bits (``XDP_UMEM_*``), ``XDP_UMEM_MIN_CHUNK_SIZE`` and the
unaligned-address split (``XSK_UNALIGNED_*``), since the verifier judges the same
format.  This module holds what only a socket needs: structs, socket options,
bind flags and the libc calls.
"""

from __future__ import annotations

import os
from typing import Any

from cffi import FFI

ffi = FFI()
ffi.cdef(
    """
    struct xdp_umem_reg {
        uint64_t addr;            /* start of the UMEM, page aligned */
        uint64_t len;             /* bytes */
        uint32_t chunk_size;
        uint32_t headroom;
        uint32_t flags;           /* XDP_UMEM_* */
        uint32_t tx_metadata_len; /* needs XDP_UMEM_TX_METADATA_LEN in flags */
    };
    struct xdp_umem_reg_v1 {      /* the 24-byte original: no flags */
        uint64_t addr;
        uint64_t len;
        uint32_t chunk_size;
        uint32_t headroom;
    };
    struct xdp_ring_offset {
        uint64_t producer;
        uint64_t consumer;
        uint64_t desc;
        uint64_t flags;
    };
    struct xdp_mmap_offsets {
        struct xdp_ring_offset rx;
        struct xdp_ring_offset tx;
        struct xdp_ring_offset fr;  /* fill */
        struct xdp_ring_offset cr;  /* completion */
    };
    struct xdp_statistics {
        uint64_t rx_dropped;
        uint64_t rx_invalid_descs;
        uint64_t tx_invalid_descs;
        uint64_t rx_ring_full;
        uint64_t rx_fill_ring_empty_descs;
        uint64_t tx_ring_empty_descs;
    };
    struct xdp_options {
        uint32_t flags;
    };
    struct sockaddr_xdp {
        uint16_t sxdp_family;
        uint16_t sxdp_flags;
        uint32_t sxdp_ifindex;
        uint32_t sxdp_queue_id;
        uint32_t sxdp_shared_umem_fd;
    };
    struct pollfd {
        int fd;
        short events;
        short revents;
    };

    int socket(int domain, int type, int protocol);
    int close(int fd);
    int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen);
    int getsockopt(int fd, int level, int optname, void *optval, uint32_t *optlen);
    int bind(int fd, const void *addr, uint32_t addrlen);
    ssize_t sendto(int fd, const void *buf, size_t len, int flags, const void *dest, uint32_t addrlen);
    int poll(struct pollfd *fds, unsigned long nfds, int timeout);
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset);
    int munmap(void *addr, size_t length);
    int *__errno_location(void);
    """
)
libc: Any = ffi.dlopen(None)

# -- address family and socket level (include/linux/socket.h) ---------------
AF_XDP = 44
SOL_XDP = 283

# -- bind flags, sockaddr_xdp.sxdp_flags (if_xdp.h) -------------------------
XDP_SHARED_UMEM = 1 << 0
XDP_COPY = 1 << 1  # force copy mode: the generic (skb) path, any driver
XDP_ZEROCOPY = 1 << 2
XDP_USE_NEED_WAKEUP = 1 << 3
XDP_USE_SG = 1 << 4  # multi-buffer: descriptors chained with ring.descriptors.XDP_PKT_CONTD

# -- struct xdp_options.flags (if_xdp.h) --------------------------------------
XDP_OPTIONS_ZEROCOPY = 1 << 0

# -- ring flags word ----------------------------------------------------------
XDP_RING_NEED_WAKEUP = 1 << 0

# -- socket options (if_xdp.h) ------------------------------------------------
XDP_MMAP_OFFSETS = 1
XDP_RX_RING = 2
XDP_TX_RING = 3
XDP_UMEM_REG = 4
XDP_UMEM_FILL_RING = 5
XDP_UMEM_COMPLETION_RING = 6
XDP_STATISTICS = 7
XDP_OPTIONS = 8
XDP_MAX_TX_SKB_BUDGET = 9  # Linux 6.17+; [32, TX ring size]

# -- mmap page offsets of the four rings (if_xdp.h) ---------------------------
XDP_PGOFF_RX_RING = 0
XDP_PGOFF_TX_RING = 0x80000000
XDP_UMEM_PGOFF_FILL_RING = 0x100000000
XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000

# -- limits (net/xdp/xsk.c) ------------------------------------------------------
XDP_TX_BUDGET_DEFAULT = 32  # TX_BATCH_SIZE: descriptors per sendto kick

# -- mmap(2), socket(2), sendto(2), poll(2) ---------------------------------------
PROT_READ = 0x1
PROT_WRITE = 0x2
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_ANONYMOUS = 0x20
MAP_POPULATE = 0x8000
SOCK_RAW = 3
MSG_DONTWAIT = 0x40
POLLIN = 0x001
POLLOUT = 0x004

UMEM_REG_SIZE = ffi.sizeof("struct xdp_umem_reg")
UMEM_REG_V1_SIZE = ffi.sizeof("struct xdp_umem_reg_v1")
assert UMEM_REG_SIZE == 32, "struct xdp_umem_reg must be 32 bytes (if_xdp.h, Linux 6.8+)"
assert UMEM_REG_V1_SIZE == 24
assert ffi.sizeof("struct xdp_statistics") == 48
assert ffi.sizeof("struct sockaddr_xdp") == 16

STATISTICS_FIELDS = (
    "rx_dropped",
    "rx_invalid_descs",
    "tx_invalid_descs",
    "rx_ring_full",
    "rx_fill_ring_empty_descs",
    "tx_ring_empty_descs",
)


def last_errno() -> int:
    """The calling thread's errno after a failed libc call."""
    return int(libc.__errno_location()[0])


def check(result: int, what: str) -> int:
    """Raise OSError(errno) when a libc call returned -1."""
    if result < 0:
        code = last_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def mmap_populated(length: int, flags: int, fd: int, offset: int, what: str) -> Any:
    """``mmap(NULL, length, PROT_READ | PROT_WRITE, flags | MAP_POPULATE, fd, offset)``; OSError on MAP_FAILED.

    Pre-faulted (MAP_POPULATE), so the kernel and Python never take a page fault on first touch.
    """
    base = libc.mmap(ffi.NULL, length, PROT_READ | PROT_WRITE, flags | MAP_POPULATE, fd, offset)
    if int(ffi.cast("intptr_t", base)) == -1:  # MAP_FAILED
        check(-1, what)
    return base
