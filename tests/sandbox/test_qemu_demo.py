"""``nic-sandbox demo --nic qemu``: the pingpong over QEMU's e1000s, its errors, and what it leaves behind.

Cleanup is checked from the outside: after a normal exit, an error, a
Ctrl-C and a SIGKILL, no QEMU process remains and no file of the run
(/dev/shm, /tmp): there is none by design, guest RAM, firmware and QEMU's
log are memfds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.pcap import read_pcap
from driver.qemu.loopback import udp_drops
from driver.qemu.machine import QemuError
from sandbox import cli
from sandbox.demos import pingpong
from tests.driver.qemu_rig import need_qemu
from tests.sandbox.test_cli import ROOT
from verifier.audit.read import verify
from world import scenario
from world.qemu import qemu_world

COUNT = 3000
QEMU_COMM = "qemu-system-x86"  # /proc/PID/comm keeps 15 characters


def leftovers(pid: int) -> list[str]:
    """Files a run of process ``pid`` could leave if RAM, firmware or log were files instead of memfds."""
    found = [str(p) for p in Path("/dev/shm").glob(f"nicsb-{pid}*")]
    found += [str(p) for p in Path("/tmp").glob(f"nicsb-qemu-{pid}-*")]
    return found


def qemu_children(pid: int) -> list[int]:
    """QEMU processes whose parent is ``pid``."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == pid and comm.startswith(QEMU_COMM):
            kids.append(int(stat.parent.name))
    return kids


def alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


@pytest.mark.privileged
def test_pingpong_over_qemu_delivers_every_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need_qemu()
    pcap = tmp_path / "qemu.pcap"
    code = cli.main(["demo", "--nic", "qemu", "--count", str(COUNT), "--json", "--pcap", str(pcap),
                     "--audit-log", str(tmp_path / "audit.jsonl")])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["clean"] and report["nic"] == "qemu" and report["protection"] == "verifier"
    for direction in report["directions"]:
        assert (direction["received"], direction["lost"], direction["corrupt"], direction["duplicates"]) == (
            COUNT, 0, 0, 0,
        )  # fmt: skip
    assert report["rejected"] == 0
    frames = read_pcap(pcap)  # QEMU's own filter-dump of nic0: both directions of the cable
    assert len(frames) == 2 * COUNT
    assert {len(f) for _t, f in frames} == {60}  # 64 bytes on the wire less the FCS, which QEMU never carries
    assert not qemu_children(os.getpid()) and not leftovers(os.getpid())


@pytest.mark.privileged
def test_a_small_cable_buffer_loses_nothing() -> None:
    """Without root a socket buffer is capped by net.core.rmem_max: the demo clocks its window to it."""
    need_qemu()
    small = 64 << 10  # the kernel grants twice this: 128 KiB, about 50 full-size frames
    with qemu_world(scenario.load(), pcap=False, rcvbuf=small) as world:
        limit = world.backend.in_flight_limit(1518)
        assert 0 < limit < 511  # below the demo's ring window, so the clamp is what keeps the frames
        report = pingpong.run(world, 2000, 1518, 256)
        drops = udp_drops(world.backend.machine.ports)
    assert report.clean and report.echo.received == 2000 and drops == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "attack", "--nic", "qemu"], "argument --nic: invalid choice: 'qemu'"),
        (["demo", "--nic", "qemu", "--engine", "threaded"], "--engine"),
        (["demo", "--nic", "qemu", "--protection", "iommu"], "iommu"),
        (["demo", "--nic", "vmware"], "invalid choice"),
        (["demo", "--nic", "qemu", "--pcap", "/proc/nope/x.pcap"], "/proc/nope: No such file or directory"),
        (["demo", "--pcap", "/proc/nope/x.pcap"], "/proc/nope: No such file or directory"),
    ],
)
def test_bad_combinations_are_one_line_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.privileged
def test_close_and_errors_leave_nothing_behind() -> None:
    need_qemu()
    scen = scenario.load()
    world = qemu_world(scen, pcap=False)
    pid = world.backend.machine.pid
    assert alive(pid)
    with pytest.raises(RuntimeError), world:
        raise RuntimeError("a failure in the middle of a run")
    assert not alive(pid) and not leftovers(os.getpid())
    with pytest.raises(QemuError, match="did not start"):  # a "QEMU" that exits at once: the error path
        qemu_world(scen, pcap=False, binary="false")
    assert not qemu_children(os.getpid()) and not leftovers(os.getpid())


def start_demo(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """A long ``nic-sandbox demo --nic qemu`` in a child process, and its QEMU once it runs."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "sandbox", "demo", "--nic", "qemu", "--count", "1000000000", "--no-pcap",
            "--json", "--audit-log", str(tmp_path / "audit.jsonl")]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 30
    kids: list[int] = []
    while not kids and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        kids = qemu_children(proc.pid)
    if not kids:
        proc.kill()
        _out, err = proc.communicate()
        pytest.fail(f"no QEMU started: {err}")
    return proc, kids


def ram_is_a_memfd(qemu: int) -> bool:
    """QEMU maps guest RAM from the sandbox's memfd: a mapping with no file-system name."""
    return "/memfd:nicsb-ram-" in Path(f"/proc/{qemu}/maps").read_text()


@pytest.mark.privileged
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_qemu_and_leaves_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    """Ctrl-C, and SIGTERM alike (sandbox/signals.py): exit 130 or 143, QEMU ended, nothing left."""
    need_qemu()
    proc, kids = start_demo(tmp_path)
    try:
        time.sleep(1.5)  # past the receive hold-off: frames are flowing
        assert ram_is_a_memfd(kids[0])
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err
    assert "interrupted" in err and "Traceback" not in err
    assert not any(alive(k) for k in kids)
    assert not leftovers(proc.pid)
    assert _log_intact(tmp_path / "audit.jsonl")


@pytest.mark.privileged
def test_qemu_dies_with_a_killed_sandbox(tmp_path: Path) -> None:
    """SIGKILL leaves Python no chance to clean up: PR_SET_PDEATHSIG ends QEMU, and it left no file."""
    need_qemu()
    proc, kids = start_demo(tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(k) for k in kids)
    assert not leftovers(proc.pid)
    assert _log_intact(tmp_path / "audit.jsonl")


def _log_intact(path: Path) -> bool:
    """What was acknowledged is intact: the log verifies, up to a last record a SIGKILL may have torn."""
    if not path.exists() or path.stat().st_size == 0:
        return True  # nothing was refused: nothing to keep
    result = verify([path])
    return result.ok or "torn" in str(result.problem)
