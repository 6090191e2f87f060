"""The processes a local Ray cluster left behind: waited for, then killed, before the campaign returns.

Why: the project's rule is that a command cleans up every process it
starts.  ``ray.shutdown()`` signals the local cluster's processes
(gcs_server, the raylet, its workers) and returns without waiting for
them; on a loaded machine a raylet and its workers took more than ten
seconds to go, so a command could exit with part of its cluster still
running.  The processes below this one are listed from ``/proc`` before
the shutdown (proc(5): a ``stat`` line's third field is the state, its
fourth the parent's pid, its 22nd the start time, which tells a process
from a later one given the same pid); afterwards each is waited for until
it is gone or a zombie (it has exited: its parent or init reaps it), and
whatever is still there at the deadline gets ``SIGKILL``, as a process
supervisor does after its stop timeout (systemd's ``TimeoutStopSec``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")
#: How long the cluster's processes get to exit on their own after ``ray.shutdown()``.
GRACE_S = 20.0
#: How long a process gets to die after ``SIGKILL`` before it is given up on.
KILLED_S = 5.0
POLL_S = 0.1


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state letter, parent pid, start time) of ``pid``, None when it is gone (``comm`` may hold ')')."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[19])


def descendants(pid: int | None = None) -> dict[int, int]:
    """Every process below ``pid`` (default: this one), children of children included: pid -> start time."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None:
                children.setdefault(found[1], []).append(int(entry.name))
                started[int(entry.name)] = found[2]
    below: dict[int, int] = {}
    todo = list(children.get(root, []))
    while todo:
        child = todo.pop()
        if child not in below:
            below[child] = started[child]
            todo.extend(children.get(child, []))
    return below


def running(procs: dict[int, int]) -> dict[int, int]:
    """Those of ``procs`` (pid -> start time) that have not exited: a zombie has (it only waits to be reaped), and
    a pid with another start time is another process."""
    alive = {}
    for pid, start in procs.items():
        found = _stat(pid)
        if found is not None and found[0] not in ("Z", "X") and found[2] == start:
            alive[pid] = start
    return alive


def wait_gone(procs: dict[int, int], grace_s: float = GRACE_S, killed_s: float = KILLED_S) -> dict[int, int]:
    """Wait up to ``grace_s`` for ``procs`` to exit, ``SIGKILL`` the rest, wait ``killed_s``; return what is left."""
    left = running(procs)
    deadline = time.monotonic() + grace_s
    while left and time.monotonic() < deadline:
        time.sleep(POLL_S)
        left = running(left)
    if not left:
        return left
    for pid in left:
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to kill
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + killed_s
    while left and time.monotonic() < deadline:
        time.sleep(POLL_S)
        left = running(left)
    return left
