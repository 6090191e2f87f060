"""SIGTERM to ``fuzz --ray``: the report keeps what was found, and the local cluster it started is shut down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fuzz.cluster.rayprocs import ray_processes
from tests.needs import need_module, need_root

ROOT = str(Path(__file__).resolve().parents[3])


def test_sigterm_keeps_the_findings_and_shuts_the_cluster_down(tmp_path: Path) -> None:
    need_module("ray", "nic-sandbox[ray]")
    need_root("a private network namespace for the local Ray cluster")
    before = ray_processes()
    args = ["fuzz", "--ray", "--jobs", "2", "--seconds", "120", "--protection", "none", "--out", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, "-m", "sandbox", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + 50
        for line in proc.stdout:  # progress lines: wait until something was found
            seen.append(line)
            if (line.startswith("ray:") and " 0 distinct escapes" not in line) or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        rest = proc.stdout.read()
        code = proc.wait(timeout=60)
    assert code == 143, "".join(seen) + rest
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["interrupted"] == "SIGTERM" and report["findings"], report
    assert all(Path(f["case"]).exists() for f in report["findings"])
    left = time.monotonic() + 10
    while ray_processes() - before and time.monotonic() < left:
        time.sleep(0.2)
    assert ray_processes() - before == set(), "the local cluster was not shut down"
