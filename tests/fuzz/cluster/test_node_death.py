"""A two-node Ray cluster on this machine; the worker node is killed mid-campaign; nothing is lost.

The head and one worker node (each one CPU, loopback only, a small object
store, no dashboard, their own temporary directory) are real Ray processes
(``ray.cluster_utils.Cluster`` starts gcs_server and a raylet per node).
When the campaign has pushed a few blocks the worker node is killed
(SIGKILL, no graceful exit).  The job that ran there is replaced on the
head, its unfinished blocks rerun, and the merged result is exactly that
of ``--jobs 2`` with the same seed and iterations.  Every Ray process the
test started is gone afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fuzz.cluster.driver import Status, run_ray
from fuzz.cluster.plan import Plan
from fuzz.jobs import run_jobs
from sandbox.commands import fuzz_ray
from tests.fuzz.cluster.rayprocs import descendants, free_port, ray_processes
from tests.needs import need_module
from verifier.modes.protection import Protection

ROOT = str(Path(__file__).resolve().parents[3])
CLASSES = ["kernel-tx", "straddle", "race", "register"]
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


def test_killed_worker_node_is_replaced_and_nothing_is_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    need_module("ray", "nic-sandbox[ray]")
    ray_bin = str(Path(sys.executable).with_name("ray"))
    env = {
        **os.environ,
        **FAST_DEATH,
        "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p),
    }
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a loopback-only cluster of this test: no token to share
    env["RAY_AUTH_MODE"] = "disabled"
    before = ray_processes()
    port, manager = free_port(), free_port()
    killed: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="nicsb-ray-") as tmp:
            head = [ray_bin, "start", "--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", tmp]
            subprocess.run([*head, *NODE], env=env, check=True, capture_output=True, timeout=60)
            worker = [ray_bin, "start", "--address", f"127.0.0.1:{port}", "--node-manager-port", str(manager)]
            subprocess.run([*worker, *NODE], env=env, check=True, capture_output=True, timeout=60)

            def kill_when_started(status: Status) -> None:
                if not killed and len(status.progress.by_worker) == 2:  # both jobs have pushed a block
                    raylets = [
                        pid for pid, cmd in ray_processes() if b"raylet" in cmd and f"={manager}".encode() in cmd
                    ]
                    for pid in {p for r in raylets for p in descendants(r)}:
                        os.kill(pid, signal.SIGKILL)
                    killed.append(status.elapsed)

            plan = Plan(Protection.NONE, 5, CLASSES, workers=2, iterations=768, arena_every=32, minimise=False)
            out = run_ray(plan, address=f"127.0.0.1:{port}", progress=kill_when_started, every=0.1)
    finally:
        for pid, _ in ray_processes() - before:  # only what this test started, by id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    reference = run_jobs("none", 5, CLASSES, 2, iterations=768, arena_every=32)
    assert killed, "the worker node was never killed: the campaign ended too early"
    assert len(out.retries) == 1
    retry = out.retries[0]
    assert retry.node != "?" and retry.attempt == 1 and retry.rerun
    assert set(retry.rerun) <= set(range(retry.job, 24, 2))  # its own blocks only
    assert out.result.as_dict() == reference.as_dict()  # nothing lost, nothing counted twice
    assert {f.key for f in out.result.findings} == {f.key for f in reference.findings}
    assert out.tags == ["job0", "job1", f"job{retry.job}-retry1"]
    section = fuzz_ray.report(out, f"127.0.0.1:{port}", None)  # the report's "ray" section and its lines
    assert section["retried"] == [retry.as_dict()] and section["nodes"] == 2
    blocks = ", ".join(str(b) for b in retry.rerun)
    assert any(
        line.startswith(f"Retried: job {retry.job} died") and blocks in line for line in fuzz_ray.describe(section)
    )
    deadline = time.monotonic() + 10
    while ray_processes() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_processes() - before == set(), "Ray processes left behind"
