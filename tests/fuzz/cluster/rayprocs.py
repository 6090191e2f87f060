"""The Ray processes on this machine (for tests that must leave none behind)."""

from __future__ import annotations

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
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
