"""A Linux TAP device: a file descriptor that carries whole Ethernet frames to and from the kernel's stack.

Opening ``/dev/net/tun`` and issuing ``TUNSETIFF`` with ``IFF_TAP | IFF_NO_PI``
creates a network interface; every ``write`` on the descriptor is one
Ethernet frame received by that interface, every ``read`` returns one frame
the stack transmitted through it (Documentation/networking/tuntap.rst;
constants from include/uapi/linux/if_tun.h).  Without ``IFF_NO_PI`` each
frame would carry a 4-byte packet-information prefix; without
``IFF_VNET_HDR`` the kernel segments GSO packets before handing them over,
so a read never exceeds the MTU plus the Ethernet header.

The interface is not persistent (no ``TUNSETPERSIST``): closing the last
descriptor unregisters it, whichever network namespace it was moved to
(drivers/net/tun.c, ``tun_chr_close`` -> ``tun_detach``).  A process that
dies without cleaning up therefore never leaves a TAP interface behind.
"""

from __future__ import annotations

import errno
import fcntl
import os

import numpy as np

TUN_PATH = "/dev/net/tun"

#: include/uapi/linux/if.h: interface names hold 15 characters and a NUL.
IFNAMSIZ = 16

#: include/uapi/asm-generic/ioctl.h: an ioctl number is dir:2 | size:14 | type:8 | nr:8 (high to low).
_IOC_WRITE = 1
_IOC_NRSHIFT, _IOC_TYPESHIFT, _IOC_SIZESHIFT, _IOC_DIRSHIFT = 0, 8, 16, 30
_SIZEOF_INT = 4


def _iow(kind: str, nr: int, size: int) -> int:
    """``_IOW(type, nr, size)``: an ioctl that passes ``size`` bytes from user space to the kernel."""
    return (_IOC_WRITE << _IOC_DIRSHIFT) | (size << _IOC_SIZESHIFT) | (ord(kind) << _IOC_TYPESHIFT) | nr


#: include/uapi/linux/if_tun.h: ``#define TUNSETIFF _IOW('T', 202, int)`` (0x400454ca).
TUNSETIFF = _iow("T", 202, _SIZEOF_INT)
#: if_tun.h "TUNSETIFF ifr flags": an Ethernet (layer 2) device, and no packet-information prefix.
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000

#: ``struct ifreq`` as TUNSETIFF reads it (include/uapi/linux/if.h): the name, then a union whose
#: first member here is ``short ifr_flags``; the union is 24 bytes on 64-bit Linux (40 in all).
IFREQ_FLAGS = np.dtype([("name", f"S{IFNAMSIZ}"), ("flags", "=u2"), ("pad", "V22")])

#: A read buffer larger than any frame a TAP without IFF_VNET_HDR can return.
MAX_FRAME_READ = 65536


class TapError(OSError):
    """The TAP device could not be created (no /dev/net/tun, no CAP_NET_ADMIN, a bad name)."""


class TapDevice:
    """One non-persistent TAP interface and its non-blocking descriptor.

    ``read_frame`` returns one frame or None when none is waiting;
    ``write_frame`` hands one frame to the stack.  Closing the device
    removes the interface.
    """

    def __init__(self, name: str) -> None:
        raw = name.encode()
        if not raw or len(raw) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
            raise ValueError(f"interface name must be 1 to {IFNAMSIZ - 1} characters without spaces or '/': {name!r}")
        try:
            fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as err:
            raise TapError(err.errno, f"cannot open {TUN_PATH}: {err.strerror}") from None
        request = np.zeros(1, dtype=IFREQ_FLAGS)
        request["name"] = raw
        request["flags"] = IFF_TAP | IFF_NO_PI
        try:
            answer = fcntl.ioctl(fd, TUNSETIFF, request.tobytes())
        except OSError as err:
            os.close(fd)
            raise TapError(err.errno, f"TUNSETIFF {name}: {err.strerror}") from None
        self.fd: int | None = fd
        self.name = np.frombuffer(answer, dtype=IFREQ_FLAGS)["name"][0].decode()
        self.write_errors = 0  # frames the stack refused (interface down: tun_get_user returns EIO)

    def fileno(self) -> int:
        if self.fd is None:
            raise ValueError(f"TAP {self.name} is closed")
        return self.fd

    def read_frame(self) -> bytes | None:
        """One frame the stack sent out of the interface, or None if none is waiting."""
        try:
            return os.read(self.fileno(), MAX_FRAME_READ)
        except BlockingIOError:
            return None

    def write_frame(self, frame: bytes) -> bool:
        """Deliver one frame to the stack, as if it had arrived on the wire; False if the stack refused it."""
        try:
            os.write(self.fileno(), frame)
        except OSError as err:
            if err.errno not in (errno.EIO, errno.EINVAL, errno.EAGAIN):
                raise
            self.write_errors += 1
            return False
        return True

    def close(self) -> None:
        """Close the descriptor; the kernel unregisters the interface with it."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def __enter__(self) -> TapDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
