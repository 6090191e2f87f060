"""The receive half of AF_XDP: an XDP program that redirects a device's frames into an XSKMAP.

An AF_XDP socket sees nothing by itself: frames reach its RX ring only when an
XDP program on the device returns ``bpf_redirect_map(&xskmap, queue, ...)`` and
the map's slot for that queue holds the socket (net/xdp/xskmap.c,
net/core/filter.c ``xdp_do_redirect`` -> ``__xsk_map_redirect``).  Here the
program is hand-assembled (``driver.afxdp.bpf.xsk_redirect_program``), loaded with
``BPF_PROG_LOAD`` and attached in generic (skb) mode through a bpf_link, so it
runs in ``do_xdp_generic`` for every frame the veth receives.

:class:`XskRedirect` owns three file descriptors (map, program, link).
Closing them is the whole cleanup: the link detaches the program on its last
close, and the program and map are freed with their last reference.
"""

from __future__ import annotations

import os
from types import TracebackType

from driver.afxdp.bpf import xsk_redirect_program
from driver.afxdp.bpf_syscall import attach_xdp_generic, create_xskmap, load_xdp_program, map_update_u32
from driver.netns import NetNamespace


class XskRedirect:
    """XSKMAP + redirect program + generic-mode link on one interface."""

    def __init__(self, ifindex: int, queues: int = 1) -> None:
        """Create and attach; call from a thread inside the interface's namespace."""
        self.map_fd = -1
        self.prog_fd = -1
        self.link_fd = -1
        try:
            self.map_fd = create_xskmap(queues)
            self.prog_fd = load_xdp_program(xsk_redirect_program(self.map_fd))
            self.link_fd = attach_xdp_generic(self.prog_fd, ifindex)
        except BaseException:
            self.close()
            raise

    @classmethod
    def to_socket(cls, ns: NetNamespace, ifname: str, xsk_fd: int, queue: int = 0) -> XskRedirect:
        """Attach to ``ifname`` inside ``ns`` (the map and link are made there) and send ``queue`` to ``xsk_fd``."""
        index = ns.ifindex(ifname)
        with ns.inside():
            redirect = cls(index, queue + 1)
        try:
            redirect.add_socket(queue, xsk_fd)
        except BaseException:
            redirect.close()
            raise
        return redirect

    def add_socket(self, queue: int, xsk_fd: int) -> None:
        """Frames received on ``queue`` go to the AF_XDP socket ``xsk_fd`` from now on."""
        map_update_u32(self.map_fd, queue, xsk_fd)

    def close(self) -> None:
        for name in ("link_fd", "prog_fd", "map_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

    def __enter__(self) -> XskRedirect:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
