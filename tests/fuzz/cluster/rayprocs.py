"""The Ray processes on this machine (for tests that must leave none behind)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

#: What names a Ray program in a command line: its installed files (gcs_server, raylet, monitor, agents), the
#: ``ray::`` titles its workers take, and the modules it runs with ``-m`` (the client server).
MARKERS = (b"/site-packages/ray/", b"ray::", b"-m\x00ray.")


def ray_processes() -> set[tuple[int, bytes]]:
    """(pid, command line) of every live process whose command line names a Ray program."""
    found: set[tuple[int, bytes]] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if any(m in cmdline for m in MARKERS):
            found.add((int(proc.name), cmdline))
    return found


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it (from /proc/*/stat's parent ids)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(proc.name))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo += children.get(p, [])
    return out


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def netns_of(pid: int) -> str:
    """The network namespace ``pid`` is in (``net:[inode]``)."""
    return os.readlink(f"/proc/{pid}/ns/net")


def listening(table_of: str = "self") -> set[tuple[str, int, int]]:
    """(local address, port, socket inode) of every TCP socket listening in the network namespace of process
    ``table_of`` (its /proc/PID/net/tcp and tcp6: the table is per namespace, not per process)."""
    found: set[tuple[str, int, int]] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{table_of}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != LISTEN:
                continue
            addr, port = fields[1].split(":")
            found.add((_address(addr), int(port, 16), int(fields[9])))
    return found


def sockets_of(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds open."""
    inodes: set[int] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


#: /proc/net/tcp's state of a listening socket (TCP_LISTEN)
LISTEN = "0A"


def _address(hexed: str) -> str:
    """/proc/net/tcp's address (host-order 32-bit words in hex) as text."""
    raw = b"".join(int(hexed[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(hexed), 8))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
