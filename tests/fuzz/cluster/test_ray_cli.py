"""``nic-sandbox fuzz --ray``: the same findings as ``--jobs``, per-worker audit logs verified as a set, one
line without Ray.

A ``--ray`` campaign runs in its own process (``python -m sandbox``): its
local cluster lives in a private network namespace entered by the calling
thread, and Ray's threads stay there -- one local cluster per process
(fuzz/cluster/netns.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import cli
from tests.fuzz.cluster.rayprocs import free_port, ray_processes
from tests.needs import need_module, need_root

ROOT = str(Path(__file__).resolve().parents[3])
CAMPAIGN = ["--protection", "unsafe-inplace", "--classes", "kernel-tx,straddle,race", "--iterations", "60"]


def _fuzz(args: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    argv = ["fuzz", *CAMPAIGN, "--seed", "3", "--json", "--out", str(out), *args]
    if "--ray" in args:  # in a process of its own
        env = {**os.environ, "PYTHONPATH": ROOT}
        done = subprocess.run(
            [sys.executable, "-m", "sandbox", *argv], capture_output=True, text=True, env=env, timeout=300
        )
        code, printed = done.returncode, done.stdout
        assert "all interfaces" not in done.stderr  # confined: no warning
    else:
        code, printed = cli.main(argv), capsys.readouterr().out
    assert code == 1, printed  # the race escapes under unsafe-inplace
    return dict(json.loads(printed))


def test_ray_campaign_equals_jobs_and_its_audit_logs_verify_as_a_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_module("ray", "nic-sandbox[ray]")
    need_root("a private network namespace for the local Ray cluster")
    before = ray_processes()
    ray = _fuzz(["--ray", "--jobs", "2"], tmp_path / "ray", capsys)
    jobs = _fuzz(["--jobs", "2"], tmp_path / "jobs", capsys)
    assert ray_processes() - before == set(), "the local cluster was not shut down"
    key = ("class", "kind", "what")
    found = [{k: f[k] for k in key} for f in ray["findings"]]  # type: ignore[attr-defined]
    assert found and found == [{k: f[k] for k in key} for f in jobs["findings"]]  # type: ignore[attr-defined]
    assert ray["classes"] == jobs["classes"] and ray["descriptors"] == jobs["descriptors"]
    assert all(f["reproduces"] for f in ray["findings"])  # type: ignore[attr-defined]  # minimised on the workers
    section = ray["ray"]
    assert isinstance(section, dict) and section["workers"] == 2 and section["retried"] == []
    logs = [str(tmp_path / "ray" / f"audit.jsonl.job{j}") for j in range(2)]
    assert section["audit_logs"] == logs == ray["audit_logs"]
    assert cli.main(["audit", "verify", str(tmp_path / "ray")]) == 0
    verdict = capsys.readouterr().out
    assert "OK: 2 logs" in verdict and "every chain intact" in verdict
    assert cli.main(["audit", "verify", "--json", *logs]) == 0
    checked = json.loads(capsys.readouterr().out)
    rejected = sum(c["rejected"] for c in ray["classes"].values())  # type: ignore[attr-defined]
    assert checked["ok"] and len(checked["logs"]) == 2 and checked["records"] == rejected > 0
    assert cli.main(["audit", "summary", "--json", str(tmp_path / "ray")]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == rejected
    torn = Path(logs[1])  # a worker killed mid-write: its log is incomplete, and the set's verdict says which
    torn.write_bytes(torn.read_bytes()[:-40])
    assert cli.main(["audit", "verify", str(tmp_path / "ray")]) == 1
    verdict = capsys.readouterr().out
    assert f"OK: {logs[0]}:" in verdict and f"TAMPERED: {logs[1]}: file cut mid-record" in verdict


def test_ray_without_ray_installed_is_one_line_and_exit_2(tmp_path: Path) -> None:
    hide = "import sys; sys.modules['ray'] = None; from sandbox.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["fuzz", "--ray", "--iterations", "3", "--out", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", hide, *args], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "nic-sandbox: error: --ray needs Ray: pip install 'nic-sandbox[ray]' (or pip install 'ray>=2.9')"
    ]


def test_ray_at_an_address_nothing_listens_on_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need_module("ray", "nic-sandbox[ray]")
    port = free_port()
    assert cli.main(["fuzz", "--ray", f"127.0.0.1:{port}", "--iterations", "3", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(f"nic-sandbox: error: --ray 127.0.0.1:{port}: cannot reach the cluster (")
        and len(err.splitlines()) == 1
    )


@pytest.mark.parametrize("address", ["::::", "host", ":80", "h:0", "h:70000"])
def test_ray_at_something_not_an_address_is_one_line_and_exit_2(
    address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["fuzz", "--ray", address, "--iterations", "3", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"nic-sandbox: error: --ray {address}: not an address: give auto, HOST:PORT (the head's GCS) or "
                   "ray://HOST:PORT"]  # fmt: skip
