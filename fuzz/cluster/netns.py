"""A private network for a local Ray cluster: a fresh network namespace holding only ``lo``.

Why: the project's rule is that traffic stays on loopback or inside
network namespaces the project creates, and that servers bind loopback.
Ray 2.60 cannot be told to: its gRPC servers (gcs_server, the raylet,
every core worker and actor, the dashboard agent) listen on 0.0.0.0 / ``*``
even with ``--node-ip-address 127.0.0.1`` (``ss -ltnp`` during a campaign
showed ``*:55327 gcs_server``, ``*:41865 raylet``,
``192.0.2.2:52365 ray::DashboardAgent``; Ray only later made a loopback
node address bind loopback).  So the project confines it instead: in a
network namespace whose only interface is ``lo`` "all interfaces" *is*
loopback -- there is no route out, and nothing outside the namespace can
reach a socket inside it.

How (network_namespaces(7), unshare(2), setns(2), netdevice(7)):
``unshare(CLONE_NEWNET)`` through libc (Python 3.11 has no
``os.unshare``) gives the *calling thread* a new namespace, in which
``lo`` exists but is down; ``SIOCGIFFLAGS``/``SIOCSIFFLAGS`` on an
``AF_INET`` socket set ``IFF_UP`` on it (what ``ip link set lo up`` does,
without the tool).  On the way out ``setns`` on a descriptor of
``/proc/thread-self/ns/net`` opened before entering puts the thread back.

Caveats:

- It needs ``CAP_SYS_ADMIN`` (root).  Without it :class:`NoPrivateNetwork`
  is raised before anything changed: its message is one line for the
  command line to print.  (An unprivileged user namespace would give the
  capability, but ``setns`` back into the host's namespace then needs
  ``CAP_SYS_ADMIN`` there: the thread could never leave.)
- Only the calling thread moves.  Threads that exist before entering stay
  in the host namespace; threads and processes created inside inherit
  the private one and *stay* there after the context exits (a thread's
  namespace is its own).  So start Ray after entering, and once per
  process: after ``ray.shutdown()`` some of Ray's threads live on in the
  old namespace, and a second cluster in a second namespace could not be
  reached from them.  Subprocesses started inside (``ray start``) are in
  the namespace for good, which is what confines them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

#: <sched.h>
CLONE_NEWNET = 0x40000000
#: <linux/sockios.h>
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
#: <net/if.h>
IFF_UP = 0x1
#: struct ifreq: a 16-byte interface name, then a union whose first member here is a short of flags (40 bytes)
IFREQ = "16sh22x"
#: Where the calling thread's network namespace is named.
THREAD_NS = "/proc/thread-self/ns/net"


class NoPrivateNetwork(OSError):
    """The namespace could not be made (not root, or no namespaces here): the one line to print."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _call(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def bring_up(name: str = "lo") -> None:
    """Set ``IFF_UP`` on interface ``name`` of the calling thread's namespace (``ip link set NAME up``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack(IFREQ, name.encode(), 0)
        flags = struct.unpack(IFREQ, fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack(IFREQ, name.encode(), flags | IFF_UP))


def namespace_id(path: str = THREAD_NS) -> str:
    """The namespace behind ``path`` as the kernel names it (``net:[4026531840]``): to compare two."""
    return os.readlink(path)


@contextmanager
def private_network() -> Iterator[str]:
    """Move the calling thread into a fresh network namespace with only ``lo``, up; put it back on exit.

    Yields the new namespace's id (:func:`namespace_id`).  Raises :class:`NoPrivateNetwork` (nothing
    changed) when the namespace cannot be made.
    """
    libc = _libc()
    home = os.open(THREAD_NS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            why = "needs root (CAP_SYS_ADMIN)" if err in (errno.EPERM, errno.EACCES) else os.strerror(err)
            raise NoPrivateNetwork(err, f"cannot create a private network namespace: {why}")
        try:
            bring_up("lo")
            yield namespace_id()
        finally:
            _call(libc.setns(home, CLONE_NEWNET), "setns back to the original network namespace")
    finally:
        os.close(home)
