"""Network namespaces the project creates for real peers, and always removes again.

A named namespace is what ``ip netns add NAME`` makes: a fresh network stack
(only ``lo``, no routes), kept alive by a bind mount at ``/var/run/netns/NAME``
(iproute2 ip/ipnetns.c, ``NETNS_RUN_DIR``).  Nothing created inside it can
reach another host: the project adds addresses in 198.18.0.0/15 (RFC 2544
benchmarking space) and never a default route.  Every name is
``nicsb-WHAT-PID-N``: unique per process, so parallel runs never collide.

Two ways in:

- commands: :meth:`NetNamespace.run` and :meth:`NetNamespace.popen` (``ip netns
  exec``; each started process gets a session of its own);
- the calling thread: :meth:`NetNamespace.inside` switches it with ``setns(2)``
  for the duration of a ``with`` block.  Sockets and BPF links belong to the
  namespace of the thread that creates them (``sock_net`` is set at
  ``socket(2)``; ``BPF_LINK_CREATE`` resolves ``target_ifindex`` in
  ``current->nsproxy->net_ns``), and keep working after the thread has left.

``NetNamespace`` is a context manager.  Leaving it, normally, by an exception,
by Ctrl-C (SIGINT) or by SIGTERM/SIGHUP (turned into ``KeyboardInterrupt``
while the namespace exists, the old handlers restored afterwards), it

1. ends every process it started inside, by process group (SIGTERM, SIGKILL
   after :data:`TERM_GRACE_S`), so a terminal's Ctrl-C reaches the project
   first and the project decides the order,
2. deletes the interfaces it created in the root namespace (veth ends),
3. deletes the namespace, which unregisters every virtual interface still
   inside it (net/core/dev.c, ``default_device_exit_batch``).  Whatever holds
   the namespace open (a socket) keeps it alive until it is closed too.

A Ctrl-C (or SIGTERM/SIGHUP) during cleanup is held until cleanup is done.  A process
killed with SIGKILL cannot clean up: its namespace's name carries its pid, and
the next ``NetNamespace`` removes namespaces whose process is gone, and the
processes still running inside them (:func:`remove_stale`).

:class:`VethNamespace` is a namespace holding one veth pair, both ends inside:
the smallest real ``net_device`` that carries frames both ways, which is what
AF_XDP needs.  This module lives in driver/ because ``driver.afxdp.probe``
needs it, and driver/ never imports sandbox/.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from cffi import FFI

#: Where iproute2 keeps the bind mounts of named namespaces (ip/ipnetns.c: NETNS_RUN_DIR).
NETNS_RUN_DIR = Path("/var/run/netns")
#: Every namespace the project names starts so, and carries the creating pid: PREFIX-WHAT-PID-N.
NAME_PREFIX = "nicsb"
_OURS = re.compile(rf"^{NAME_PREFIX}-[a-z0-9]+-(\d+)(?:-\d+)?$")
#: Signals that end a process politely; while a namespace exists they unwind the stack instead.
CLEANUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
#: How long a child gets between SIGTERM and SIGKILL.
TERM_GRACE_S = 2.0
IP_TIMEOUT_S = 10.0
#: include/uapi/linux/sched.h: setns(2)'s nstype for a network namespace.
CLONE_NEWNET = 0x40000000
#: include/uapi/linux/if_ether.h: every protocol, for a packet socket that sees all frames.
ETH_P_ALL = 0x0003
#: include/uapi/asm-generic/socket.h: SO_RCVBUF beyond net.core.rmem_max (CAP_NET_ADMIN).
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
#: A read buffer larger than any frame a veth with the largest MTU delivers.
MAX_FRAME_READ = 1 << 17
#: veth accepts MTUs up to ETH_MAX_MTU (drivers/net/veth.c: max_mtu); a large MTU lets every
#: frame a sender builds reach the peer (``is_skb_forwardable`` checks it).
VETH_MAX_MTU = 65535

# setns(2) for the calling thread only (os.setns arrives with Python 3.12).
_ffi = FFI()
_ffi.cdef("int setns(int fd, int nstype);")
_libc: Any = _ffi.dlopen(None)

_serial = itertools.count()


class NetnsError(OSError):
    """An ``ip`` command or a namespace switch failed; the message is one line."""


def unique_name(what: str) -> str:
    """``nicsb-WHAT-PID-N``: N counts the namespaces this process has named."""
    if not re.fullmatch(r"[a-z0-9]+", what):
        raise ValueError(f"namespace kind must be lower-case letters and digits: {what!r}")
    return f"{NAME_PREFIX}-{what}-{os.getpid()}-{next(_serial)}"


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS`` and return its output; a failure raises NetnsError with ip's own message."""
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    except FileNotFoundError:
        raise NetnsError("the 'ip' command is missing (apt-get install iproute2)") from None
    except subprocess.TimeoutExpired:
        raise NetnsError(f"ip {' '.join(args)}: no answer in {IP_TIMEOUT_S:g} s") from None
    if check and done.returncode != 0:
        complaint = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise NetnsError(f"ip {' '.join(args)}: {complaint[0] if complaint else f'exit {done.returncode}'}")
    return done.stdout


def namespaces() -> list[str]:
    """Names of every named network namespace (what ``ip netns list`` reads)."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def namespace_exists(name: str) -> bool:
    return (NETNS_RUN_DIR / name).exists()


def link_exists(ifname: str, netns: str | None = None) -> bool:
    """Whether an interface of that name exists in the root namespace (or in ``netns``)."""
    where = ["-n", netns] if netns else []
    return bool(ip(*where, "-o", "link", "show", "dev", ifname, check=False).strip())


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is running; a zombie has exited and holds nothing, so it does not count."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def remove_stale() -> list[str]:
    """Delete the project's namespaces whose creating process no longer runs; return their names.

    A process killed with SIGKILL could not end what it started inside (a ``ping``, a ``tcpdump``: each in a
    session of its own, so nothing tells them): they are killed here first, then the namespace goes.
    """
    removed = []
    for name in namespaces():
        match = _OURS.match(name)
        if match and not process_alive(int(match.group(1))):
            for pid in ip("netns", "pids", name, check=False).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "delete", name, check=False)
            removed.append(name)
    return removed


def received_frames(sock: socket.socket) -> Iterator[bytes]:
    """Frames a packet socket has waiting that arrived on its interface (not the ones it sent)."""
    while True:
        try:
            frame, addr = sock.recvfrom(MAX_FRAME_READ, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        if addr[2] != socket.PACKET_OUTGOING:
            yield frame


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = _ffi.errno
        raise NetnsError(code, f"setns {what}: {os.strerror(code)}")


class NetNamespace:
    """A named network namespace with ``lo`` up, deleted with everything in it on exit."""

    def __init__(self, what: str = "sandbox") -> None:
        self.name = unique_name(what)
        self.processes: list[subprocess.Popen[Any]] = []
        self.root_links: list[str] = []  # interfaces created in the root namespace, deleted on close
        self._saved: dict[int, Any] = {}
        self._closed = False

    # -- life cycle -------------------------------------------------------------
    def __enter__(self) -> NetNamespace:
        try:
            self._trap_signals()
            remove_stale()
            ip("netns", "add", self.name)
            self.ip("link", "set", "dev", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _trap_signals(self) -> None:
        """SIGTERM and SIGHUP raise KeyboardInterrupt, so ``with`` blocks unwind as on Ctrl-C."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers belong to the main thread; a helper thread's caller owns them

        def interrupt(signum: int, _frame: FrameType | None) -> None:
            raise KeyboardInterrupt(signal.Signals(signum).name)

        for sig in CLEANUP_SIGNALS:
            self._saved[sig] = signal.signal(sig, interrupt)

    def close(self) -> None:
        """End processes, delete root-side interfaces, delete the namespace.  Safe to call twice.

        SIGINT, SIGTERM and SIGHUP arriving meanwhile are held, not acted on, so a second
        Ctrl-C cannot cut the cleanup short; once it is done, the first one held is raised
        as KeyboardInterrupt (it is not lost either).
        """
        if self._closed:
            return
        self._closed = True
        held: list[int] = []

        def hold(signum: int, _frame: FrameType | None) -> None:
            held.append(signum)

        main = threading.current_thread() is threading.main_thread()
        during = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, *CLEANUP_SIGNALS)} if main else {}
        try:
            for proc in self.processes:
                _end(proc)
            for link in self.root_links:
                ip("link", "delete", "dev", link, check=False)
            if namespace_exists(self.name):
                ip("netns", "delete", self.name, check=False)
        finally:
            for sig, handler in during.items():  # what was there before close, or before __enter__
                signal.signal(sig, self._saved.get(sig, handler))
            self._saved.clear()
        if held:
            raise KeyboardInterrupt(signal.Signals(held[0]).name)

    # -- commands inside the namespace -------------------------------------------------
    def ip(self, *args: str, check: bool = True) -> str:
        """``ip -n NAME ARGS``."""
        return ip("-n", self.name, *args, check=check)

    def command(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs ``argv`` inside the namespace (``ip netns exec``)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace to completion, capturing its output (locale C)."""
        return subprocess.run(
            self.command(argv), capture_output=True, text=True, timeout=timeout, env=_c_locale(), check=False
        )

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a command inside the namespace, in its own session; it is ended on close."""
        proc = subprocess.Popen(self.command(argv), start_new_session=True, env=_c_locale(), **kwargs)
        self.processes.append(proc)
        return proc

    def pids(self) -> list[int]:
        """Every process inside the namespace (``ip netns pids``)."""
        return [int(p) for p in ip("netns", "pids", self.name, check=False).split()]

    # -- the calling thread inside the namespace ---------------------------------------
    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Run the block with the calling thread in the namespace (setns(2)), then switch back."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(NETNS_RUN_DIR / self.name, os.O_RDONLY)
            try:
                _setns(target, self.name)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(home, "back")
        finally:
            os.close(home)

    def ifindex(self, ifname: str) -> int:
        """The interface index of ``ifname`` inside the namespace."""
        with self.inside():
            try:
                return socket.if_nametoindex(ifname)
            except OSError:
                raise NetnsError(f"{ifname}: no such interface in {self.name}") from None

    def packet_socket(self, ifname: str, rcvbuf: int = 0) -> socket.socket:
        """A raw packet socket bound to ``ifname`` here: it sends frames out and sees every frame.

        ``rcvbuf`` > 0 sets the receive buffer with SO_RCVBUFFORCE, so a burst is not lost while
        the reader is busy.  Read what arrived with :func:`received_frames`.
        """
        with self.inside():
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            sock.bind((ifname, 0))
        except BaseException:
            sock.close()
            raise
        return sock

    # -- interfaces -------------------------------------------------------------------
    def links(self) -> list[str]:
        """Interface names inside the namespace."""
        out = self.ip("-o", "link", "show")
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]

    def mac(self, ifname: str) -> bytes:
        """The hardware address of ``ifname`` inside the namespace.

        Not /sys/class/net: sysfs shows the namespace it was mounted in, not the thread's.
        """
        out = self.ip("-j", "link", "show", "dev", ifname)
        return bytes.fromhex(json.loads(out)[0]["address"].replace(":", ""))

    def move_in(self, ifname: str) -> None:
        """Move an interface from the root namespace into this one (descriptors on it stay valid)."""
        ip("link", "set", "dev", ifname, "netns", self.name)

    def add_veth(self, outside: str, inside: str) -> None:
        """A veth pair: ``outside`` stays in the root namespace, ``inside`` lives here."""
        ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", self.name)
        self.root_links.append(outside)

    def add_veth_inside(self, a: str, b: str, mtu: int | None = None) -> None:
        """A veth pair with both ends inside this namespace (nothing in the root namespace)."""
        self.ip("link", "add", a, "type", "veth", "peer", "name", b)
        if mtu is not None:
            for end in (a, b):
                self.ip("link", "set", "dev", end, "mtu", str(mtu))

    def bring_up(self, ifname: str, cidr: str | None = None) -> None:
        """Address (optional) and up; no IPv6 link-local address, so the stack sends nothing unasked."""
        self.ip("link", "set", "dev", ifname, "addrgenmode", "none")
        if cidr is not None:
            self.ip("address", "add", cidr, "dev", ifname)
        self.ip("link", "set", "dev", ifname, "up")

    def neighbour(self, address: str) -> str:
        """The stack's neighbour (ARP) entry for ``address``, as ``ip neigh`` prints it; '' if none."""
        return self.ip("neigh", "show", address).strip()


class VethNamespace(NetNamespace):
    """A namespace holding one veth pair ``port`` <-> ``peer``, up, with ``PORT_IP``/30 and ``PEER_IP``/30.

    ``port`` is the end a socket under test binds to, ``peer`` the host at the
    other end.  Both ends live in the namespace, so their names need not be
    unique, and nothing of the pair is visible in the root namespace.
    """

    PORT, PEER = "xsk0", "peer0"
    PORT_IP, PEER_IP, PREFIX_LEN = "198.18.1.1", "198.18.1.2", 30

    def __init__(self, what: str = "veth", mtu: int = 1500) -> None:
        super().__init__(what)
        self.mtu = mtu
        self.port, self.peer = self.PORT, self.PEER
        self.port_ip, self.peer_ip = self.PORT_IP, self.PEER_IP
        self.port_mac = self.peer_mac = b""

    def __enter__(self) -> VethNamespace:
        super().__enter__()
        try:
            self.add_veth_inside(self.port, self.peer, self.mtu)
            self.bring_up(self.port, f"{self.port_ip}/{self.PREFIX_LEN}")
            self.bring_up(self.peer, f"{self.peer_ip}/{self.PREFIX_LEN}")
            self.port_mac, self.peer_mac = self.mac(self.port), self.mac(self.peer)
        except BaseException:
            self.close()
            raise
        return self


def _c_locale() -> dict[str, str]:
    """The caller's environment with messages in the C locale, so output can be parsed."""
    return {**os.environ, "LC_ALL": "C"}


def _end(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM to the child's process group, SIGKILL after a grace period, and reap it."""
    if proc.poll() is None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=TERM_GRACE_S)
                break
            except subprocess.TimeoutExpired:
                continue
        proc.poll()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
