"""SIGINT, SIGTERM and SIGKILL during ``nic-sandbox demo``: the same exit for the first two, nothing left by any.

SIGINT and SIGTERM unwind the same way (sandbox/signals.py): exit 130 or 143,
one line on stderr, no traceback, and the audit log verifies.  SIGKILL can
write nothing: what was written before stays intact (the log verifies up to
its last complete record) and no child process remains.  ``fuzz`` has its
own (tests/fuzz/test_fuzz_interrupt.py), ``demo --nic qemu`` too
(tests/sandbox/test_qemu_demo.py), ``demo ping`` (tests/sandbox/test_ping_demo.py).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import children
from verifier.audit.read import verify

START_TIMEOUT_S = 60.0


def _signal_midway(argv: list[str], ready: Callable[[], bool], sig: signal.Signals) -> tuple[int, str, list[int]]:
    """Start ``argv``, wait until ``ready()``, send ``sig``; return the exit code, stderr and the children it had."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None and ready(), "the command ended (or never got going) before the signal"
        kids = children(proc.pid)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err, kids


def _judge(log: Path, sig: signal.Signals, code: int, err: str, kids: list[int]) -> None:
    """SIGINT/SIGTERM: 128 + sig and one line; any signal: the log verifies (SIGKILL: up to a torn line), no child."""
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        assert code == 128 + sig, err
        assert err.strip().splitlines() == ["nic-sandbox: interrupted"], err
    result = verify([log])
    assert result.ok or (sig == signal.SIGKILL and "torn" in str(result.problem)), result.problem
    assert not any(Path(f"/proc/{pid}").exists() for pid in kids)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_signal_during_the_demo(tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "audit.jsonl"
    argv = [sys.executable, "-m", "sandbox", "demo", "--count", "1000000000", "--no-pcap", "--audit-log", str(log)]
    started: list[float] = []

    def frames_flowing() -> bool:  # the log is open, then half a second of traffic
        if log.exists() and not started:
            started.append(time.monotonic())
        return bool(started) and time.monotonic() - started[0] >= 0.5

    _judge(log, sig, *_signal_midway(argv, frames_flowing, sig))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_signal_during_the_attack_demo(tmp_path: Path, sig: signal.Signals) -> None:
    """Mid-attack (after mallory's first refusal is on disk): the same exits, and the log still verifies."""
    log = tmp_path / "audit.jsonl"
    argv = [sys.executable, "-m", "sandbox", "demo", "attack", "--protection", "verifier", "--audit-log", str(log)]
    _judge(log, sig, *_signal_midway(argv, lambda: log.exists() and log.stat().st_size > 0, sig))


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.3, 0.5, 0.8])
def test_ctrl_c_while_the_command_line_loads_ends_in_one_line(delay: float) -> None:
    """SIGINT at any moment of start-up (sandbox/launch.py): never a traceback, 130 once Python handles it.

    The delays cover the import of the commands (numpy, scapy, the compiled
    accelerators), before ``main`` installs its handlers; the slowest ones
    may land in the command itself, which ends the same way.
    """
    launcher = [sys.executable, "-m", "sandbox.launch", "audit", "verify", "/nonexistent/audit.jsonl"]
    proc = subprocess.Popen(launcher, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    if proc.returncode == 130:
        assert err.strip().splitlines() == ["nic-sandbox: interrupted"], err
    else:  # the signal came before Python's handler (killed by it), or after the command had ended (exit 2)
        assert proc.returncode in (-signal.SIGINT, 2), (proc.returncode, err)
