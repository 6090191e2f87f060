"""UDP on 127.0.0.1: the cable between QEMU's e1000s (``-netdev dgram``), its sockets and its backlog.

QEMU's dgram netdev sends every frame as one UDP datagram, raw Ethernet
without FCS.  The project opens these sockets itself and hands them to QEMU
(``local.type=fd``), for three reasons:

- the port is bound before QEMU starts (port 0, the kernel picks), so two
  runs never race for a port;
- a cabled socket is ``connect``-ed to its peer, so it sends there and the
  kernel drops datagrams from anyone else: only the other end of the cable
  can inject frames;
- the receive buffer can be raised.  At the default 208 KiB a loopback
  socket holds about 270 small datagrams (each costs its skb's truesize,
  about 768 bytes), fewer than one 512-descriptor ring's worth, and QEMU
  stops reading while the e1000 has no free RX descriptor, so a burst
  larger than the buffer loses frames silently.

``udp_backlog`` reads how many bytes wait in the receive queues of given
local ports (/proc/net/udp, the ``rx_queue`` column, printed by
net/ipv4/udp.c ``udp4_format_sock`` from ``sk_rmem_alloc``): frames on the
cable that no device has taken in yet; ``udp_drops`` reads the ``drops``
column, frames the cable lost because that queue was full.  Reading that
file walks the kernel's whole UDP table (about 0.2 ms); ``CableProbe``
answers the one question the interrupt poller asks every round, "does any
frame wait?", with one FIONREAD per socket (a few microseconds) on
duplicates of the sockets handed to QEMU.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import termios
from collections.abc import Iterable
from pathlib import Path

LOOPBACK = "127.0.0.1"
PROC_NET_UDP = Path("/proc/net/udp")
#: Receive buffer asked for each cable socket (SO_RCVBUFFORCE needs CAP_NET_ADMIN; else capped at rmem_max).
CABLE_RCVBUF = 8 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # include/uapi/asm-generic/socket.h
#: 127.0.0.1 as /proc/net/udp prints it: the address as one hex word in host (little-endian) order.
_LOOPBACK_HEX = "0100007F"
_RX_QUEUE_FIELD = 4  # "tx_queue:rx_queue"
_SKB_OVERHEAD = 384  # struct sk_buff + skb_shared_info and headroom, rounded up
_DROPS_FIELD = 12


def cable_socket(rcvbuf: int = CABLE_RCVBUF) -> socket.socket:
    """A UDP socket bound to a free port of 127.0.0.1 with a receive buffer of (up to) ``rcvbuf`` bytes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((LOOPBACK, 0))
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except PermissionError:  # not root: as much as net.core.rmem_max allows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    except OSError:
        sock.close()
        raise
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def rcvbuf_of(sock: socket.socket) -> int:
    """The receive buffer the kernel granted (``sk_rcvbuf``: twice what was asked, capped)."""
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


def datagram_truesize(nbytes: int) -> int:
    """What one datagram of ``nbytes`` costs a loopback receive queue (an upper estimate).

    A queued skb is charged its truesize (net/core/skbuff.c, ``SKB_TRUESIZE``):
    the data area as kmalloc rounds it, to a power of two, plus ``struct
    sk_buff`` and ``skb_shared_info``.  Measured on this project's kernel:
    832 bytes for a 60-byte datagram, 1283 up to about 700 bytes, 2315 up
    to 1514.  The estimate rounds ``nbytes + 384`` up to a power of two and
    adds 384, which covers every measurement.
    """
    return (1 << (max(nbytes, 0) + _SKB_OVERHEAD - 1).bit_length()) + _SKB_OVERHEAD


def cable_capacity(rcvbuf: int, nbytes: int) -> int:
    """Datagrams of ``nbytes`` a receive buffer of ``rcvbuf`` holds before the kernel drops the next."""
    return rcvbuf // datagram_truesize(nbytes)


def _column(ports: Iterable[int], field: int) -> int:
    wanted = {f"{_LOOPBACK_HEX}:{port:04X}" for port in ports}
    if not wanted:
        return 0
    total = 0
    for line in PROC_NET_UDP.read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > field and fields[1] in wanted:
            value = fields[field]
            total += int(value.split(":")[1], 16) if field == _RX_QUEUE_FIELD else int(value)
    return total


def udp_backlog(ports: Iterable[int]) -> int:
    """Bytes queued for reading on the UDP sockets bound to 127.0.0.1 at ``ports``."""
    return _column(ports, _RX_QUEUE_FIELD)


def udp_drops(ports: Iterable[int]) -> int:
    """Datagrams those sockets dropped because their receive queue was full."""
    return _column(ports, _DROPS_FIELD)


class CableProbe:
    """Whether a datagram waits on any of some UDP sockets, asked without reading /proc.

    Holds duplicates of the sockets (the sockets themselves go to QEMU), so
    the ports live until ``close``.  FIONREAD on a UDP socket is the length
    of the first queued datagram (net/ipv4/udp.c ``udp_ioctl``, SIOCINQ), 0
    when none waits; a frame on the cable is never empty (14 bytes of
    Ethernet header at least), so nonzero means "a frame waits".
    """

    def __init__(self, socks: Iterable[socket.socket]) -> None:
        self._fds: list[int] = []
        try:
            for sock in socks:
                self._fds.append(os.dup(sock.fileno()))
        except BaseException:
            self.close()
            raise

    def waiting(self) -> bool:
        queued = array.array("i", [0])  # one per call: the poller thread and a drain may ask at once
        for fd in self._fds:
            fcntl.ioctl(fd, termios.FIONREAD, queued, True)
            if queued[0]:
                return True
        return False

    def close(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)
