"""``fuzz --ray auto`` as root: the local cluster listens only inside its private network namespace.

Ray 2.60 binds its servers to every interface (fuzz/cluster/netns.py), so
the campaign starts it in a fresh network namespace holding only ``lo``.
While a campaign runs: every Ray process it started is in one namespace
that is not the test's (the host's); none of the sockets they hold is
listening in the host's TCP tables (/proc/self/net/tcp and tcp6); their
listening sockets -- the GCS's and the raylet's among them -- are in the
private namespace's tables; and that namespace has no interface but
``lo``.  Without root the line that says the cluster is not confined is
one line on stderr (checked without starting Ray).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fuzz.cluster.rayprocs import descendants, listening, netns_of, ray_processes, sockets_of
from tests.needs import need_module, need_root, need_tool

ROOT = str(Path(__file__).resolve().parents[3])
#: An unprivileged user (nobody)
NOBODY = 65534


def test_local_cluster_listens_only_inside_its_private_namespace(tmp_path: Path) -> None:
    need_module("ray", "nic-sandbox[ray]")
    need_root("a private network namespace for the local Ray cluster")
    host = netns_of(os.getpid())
    before = ray_processes()
    args = ["fuzz", "--ray", "auto", "--jobs", "2", "--seconds", "90", "--protection", "none", "--out", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1"}
    with (
        (tmp_path / "stderr").open("w") as err,
        subprocess.Popen(
            [sys.executable, "-m", "sandbox", *args], stdout=subprocess.PIPE, stderr=err, text=True, env=env
        ) as proc,
    ):
        assert proc.stdout is not None
        seen = []
        try:
            deadline = time.monotonic() + 60
            for line in proc.stdout:  # wait until both worker actors run: every server Ray starts is up
                seen.append(line)
                if (line.startswith("ray:") and " 2 workers running" in line) or time.monotonic() > deadline:
                    break
            assert seen and " 2 workers running" in seen[-1], "".join(seen)
            tree = descendants(proc.pid)
            mine = {pid: cmd for pid, cmd in ray_processes() - before if pid in tree}
            names = {cmd.split(b"\0")[0].rsplit(b"/", 1)[-1] for cmd in mine.values()}
            assert {b"gcs_server", b"raylet"} <= names, names
            private = netns_of(proc.pid)
            assert private != host
            assert {netns_of(pid) for pid in mine} == {private}, "a Ray process outside the private namespace"
            held = {inode: pid for pid in mine for inode in sockets_of(pid)}
            outside = [(a, port, mine[held[i]][:60]) for a, port, i in listening("self") if i in held]
            assert outside == [], "Ray listens in the host's namespace"
            inside = {(a, port): held[i] for a, port, i in listening(str(proc.pid)) if i in held}
            listeners = {mine[pid].split(b"\0")[0].rsplit(b"/", 1)[-1] for pid in inside.values()}
            assert {b"gcs_server", b"raylet"} <= listeners, inside
            devices = Path(f"/proc/{proc.pid}/net/dev").read_text().splitlines()[2:]
            assert [d.split(":")[0].strip() for d in devices] == ["lo"]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.stdout.read()
            code = proc.wait(timeout=60)
    assert code == 143
    assert "all interfaces" not in (tmp_path / "stderr").read_text()
    left = time.monotonic() + 10
    while ray_processes() - before and time.monotonic() < left:
        time.sleep(0.2)
    assert ray_processes() - before == set(), "the local cluster was not shut down"


def test_without_root_the_unconfined_cluster_is_one_line() -> None:
    need_root("running a process as another user")
    setpriv = need_tool("setpriv", "util-linux")
    check = (
        "import contextlib; from fuzz.cluster.connect import confine, warn\n"
        "with contextlib.ExitStack() as stack:\n"
        "    print(confine(stack, warn))\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run(
        [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-c", check],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert done.stderr.strip().splitlines() == [
        "nic-sandbox: warning: the local Ray cluster listens on all interfaces of this machine: "
        "cannot create a private network namespace: needs root (CAP_SYS_ADMIN)"
    ]
