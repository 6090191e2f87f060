"""A two-node Ray cluster on this machine; the worker node is killed mid-campaign; nothing is lost.

The head and one worker node (each one CPU, a small object store, no
dashboard, their own temporary directory) are real Ray processes started
with ``ray start``, in a private network namespace holding only ``lo``
(Ray 2.60 binds its servers to every interface): the scenario runs as a
process of its own that enters the namespace first
(tests/fuzz/cluster/node_death.py) and prints its result as JSON.  When
the campaign has pushed a few blocks the worker node is killed (SIGKILL,
no graceful exit).  The job that ran there is replaced on the head, its
unfinished blocks rerun, and the merged result is exactly that of
``--jobs 2`` with the same seed and iterations.  No Ray socket listened
in this test's namespace; every Ray process the scenario started is gone
afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fuzz.jobs import run_jobs
from tests.fuzz.cluster import node_death
from tests.fuzz.cluster.rayprocs import netns_of, ray_processes
from tests.needs import need_module, need_root

ROOT = str(Path(__file__).resolve().parents[3])


def test_killed_worker_node_is_replaced_and_nothing_is_lost() -> None:
    need_module("ray", "nic-sandbox[ray]")
    need_root("a private network namespace for the Ray nodes")
    before = ray_processes()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.fuzz.cluster.node_death", str(os.getpid())],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=300,
        )
    finally:
        for pid, _ in ray_processes() - before:  # a scenario that died leaves its nodes: only those, by id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])  # Ray prints its own lines before
    assert "killed_at" in out, "the worker node was never killed: the campaign ended too early"
    assert out["namespace"] != netns_of(os.getpid()) and out["namespaces"] == [out["namespace"]]
    assert out["listening_outside"] == [] and out["listening_inside"], out["listening_inside"]
    s = node_death
    reference = run_jobs("none", s.SEED, s.CLASSES, s.WORKERS, iterations=s.ITERATIONS, arena_every=s.ARENA_EVERY)
    assert len(out["retries"]) == 1
    retry = out["retries"][0]
    assert retry["node"] != "?" and retry["attempt"] == 1 and retry["rerun"]
    assert set(retry["rerun"]) <= set(range(retry["job"], 24, 2))  # its own blocks only
    assert out["result"] == json.loads(json.dumps(reference.as_dict()))  # nothing lost, nothing counted twice
    assert out["findings"] == sorted(list(f.key) for f in reference.findings)
    assert out["tags"] == ["job0", "job1", f"job{retry['job']}-retry1"]
    assert out["section"]["retried"] == [retry] and out["section"]["nodes"] == 2
    blocks = ", ".join(str(b) for b in retry["rerun"])
    assert any(line.startswith(f"Retried: job {retry['job']} died") and blocks in line for line in out["lines"])
    deadline = time.monotonic() + 10
    while ray_processes() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_processes() - before == set(), "Ray processes left behind"
