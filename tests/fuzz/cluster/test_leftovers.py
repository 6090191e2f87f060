"""The local cluster's leftover processes: found below this one, waited for, killed at the deadline."""

from __future__ import annotations

import subprocess
import time

from fuzz.cluster.leftovers import descendants, running, wait_gone


def test_a_tree_that_ignores_sigterm_is_found_and_killed_at_the_deadline() -> None:
    # a shell that ignores SIGTERM, with a grandchild that does too: what a stuck raylet and its worker look like
    tree = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 60 & wait"])
    try:
        deadline = time.monotonic() + 5
        while not descendants(tree.pid) and time.monotonic() < deadline:  # the shell has started its sleep
            time.sleep(0.05)
        below = descendants()
        mine = {p: t for p, t in below.items() if p == tree.pid or p in descendants(tree.pid)}
        assert tree.pid in mine and len(mine) == 2, below
        assert wait_gone(mine, grace_s=0.3, killed_s=5) == {}
        assert tree.wait(timeout=5) == -9  # SIGTERM was ignored: the grace ran out and SIGKILL ended it
    finally:
        tree.kill()
        tree.wait()


def test_exited_processes_and_reused_pids_count_as_gone() -> None:
    child = subprocess.Popen(["true"])
    procs = {p: t for p, t in descendants().items() if p == child.pid}
    deadline = time.monotonic() + 5
    while running(procs) and time.monotonic() < deadline:  # a zombie until reaped: exited all the same
        time.sleep(0.05)
    assert running(procs) == {}
    child.wait()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        alive = {p: t for p, t in descendants().items() if p == sleeper.pid}
        assert running(alive) == alive
        other = {pid: start + 1 for pid, start in alive.items()}  # the same pid, started at another time
        assert running(other) == {}
        assert wait_gone(other, grace_s=0, killed_s=0) == {}
        assert sleeper.poll() is None  # a process that only shares the pid is not killed
    finally:
        sleeper.kill()
        sleeper.wait()
