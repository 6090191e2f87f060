"""The node-death scenario of test_node_death.py, run as a process of its own inside a private network namespace.

``python -m tests.fuzz.cluster.node_death HOST_PID`` enters
``private_network()`` first, so the ``ray start`` nodes it starts (and
every process under them) and its own driver threads live in a namespace
holding only ``lo``: Ray 2.60 binds its servers to every interface
(fuzz/cluster/netns.py).  It starts a head and a worker node, runs a
campaign, SIGKILLs the worker node's raylet and everything under it once
both workers have pushed a block, and prints one JSON object: the merged
result, the retry, the report's ``ray`` section and lines, and what it saw
when it killed the node -- the namespaces its Ray processes were in and
any socket of theirs listening in the namespace of ``HOST_PID`` (the
test's; there must be none).  Every Ray process it started is killed
before it exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from fuzz.cluster.driver import Status, run_ray
from fuzz.cluster.netns import private_network
from fuzz.cluster.plan import Plan
from sandbox.commands import fuzz_ray
from tests.fuzz.cluster.rayprocs import descendants, free_port, listening, netns_of, ray_processes, sockets_of
from verifier.modes.protection import Protection

ROOT = str(Path(__file__).resolve().parents[3])
CLASSES = ["kernel-tx", "straddle", "race", "register"]
SEED, WORKERS, ITERATIONS, ARENA_EVERY = 5, 2, 768, 32
#: health checks every 200 ms, dead after 3 misses: a killed node is noticed in about a second (RAY_<config> vars)
FAST_DEATH = {
    "RAY_health_check_period_ms": "200",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_timeout_ms": "200",
}
NODE = [
    "--node-ip-address",
    "127.0.0.1",
    "--num-cpus",
    "1",
    "--object-store-memory",
    str(100 << 20),
    "--disable-usage-stats",
]


def scenario(host_pid: int) -> dict[str, Any]:
    ray_bin = str(Path(sys.executable).with_name("ray"))
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a cluster of this namespace only: no token to share
    env = {
        **os.environ,
        **FAST_DEATH,
        "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p),
    }
    before = ray_processes()
    port, manager = free_port(), free_port()
    seen: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="nicsb-ray-") as tmp:
            head = [ray_bin, "start", "--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", tmp]
            subprocess.run([*head, *NODE], env=env, check=True, capture_output=True, timeout=60)
            worker = [ray_bin, "start", "--address", f"127.0.0.1:{port}", "--node-manager-port", str(manager)]
            subprocess.run([*worker, *NODE], env=env, check=True, capture_output=True, timeout=60)

            def kill_when_started(status: Status) -> None:
                if seen or len(status.progress.by_worker) != 2:  # wait until both jobs have pushed a block
                    return
                mine = {pid for pid, _ in ray_processes() - before}
                held = {inode for pid in mine for inode in sockets_of(pid)}
                seen["namespaces"] = sorted({netns_of(pid) for pid in mine})
                seen["listening_outside"] = sorted(f"{a}:{p}" for a, p, i in listening(str(host_pid)) if i in held)
                seen["listening_inside"] = sorted({a for a, _, i in listening() if i in held})
                raylets = [pid for pid, cmd in ray_processes() if b"raylet" in cmd and f"={manager}".encode() in cmd]
                for pid in {p for r in raylets for p in descendants(r)}:
                    os.kill(pid, signal.SIGKILL)
                seen["killed_at"] = status.elapsed

            plan = Plan(
                Protection.NONE,
                SEED,
                CLASSES,
                workers=WORKERS,
                iterations=ITERATIONS,
                arena_every=ARENA_EVERY,
                minimise=False,
            )
            out = run_ray(plan, address=f"127.0.0.1:{port}", progress=kill_when_started, every=0.1)
    finally:
        for pid, _ in ray_processes() - before:  # only what this scenario started, by id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    section = fuzz_ray.report(out, f"127.0.0.1:{port}", None)
    return {
        "result": out.result.as_dict(),
        "findings": sorted(list(f.key) for f in out.result.findings),
        "retries": [r.as_dict() for r in out.retries],
        "tags": out.tags,
        "section": section,
        "lines": fuzz_ray.describe(section),
        **seen,
    }


def main(argv: list[str]) -> int:
    with private_network() as namespace:
        result = {"namespace": namespace, **scenario(int(argv[0]))}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
