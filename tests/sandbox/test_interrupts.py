"""SIGINT, SIGTERM and SIGKILL during ``nic-sandbox demo``: the same exit for the first two, nothing left by any.

SIGINT and SIGTERM unwind the same way (sandbox/signals.py): exit 130 or 143,
one line on stderr, no traceback, and the audit log verifies.  SIGKILL can
write nothing: what was written before stays intact (the log verifies up to
its last complete record) and no child process remains.  ``fuzz`` has its
own (tests/fuzz/test_fuzz_interrupt.py), ``demo --nic qemu`` too
(tests/sandbox/test_qemu_demo.py), ``demo ping`` (tests/sandbox/test_ping_demo.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verifier.audit.read import verify

START_TIMEOUT_S = 60.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_signal_during_the_demo(tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "audit.jsonl"
    argv = [sys.executable, "-m", "sandbox", "demo", "--count", "1000000000", "--no-pcap", "--audit-log", str(log)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not log.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None and log.exists(), "the demo never opened its audit log"
        time.sleep(0.5)  # frames flowing
        children = _children(proc.pid)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + sig, err
        assert err.strip().splitlines() == ["nic-sandbox: interrupted"], err
    result = verify([log])
    assert result.ok or (sig == signal.SIGKILL and "torn" in str(result.problem)), result.problem
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_signal_during_the_attack_demo(tmp_path: Path, sig: signal.Signals) -> None:
    """Mid-attack (after mallory's first refusal is on disk): the same exits, and the log still verifies."""
    log = tmp_path / "audit.jsonl"
    argv = [sys.executable, "-m", "sandbox", "demo", "attack", "--protection", "verifier", "--audit-log", str(log)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (log.exists() and log.stat().st_size) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None and log.stat().st_size, "the attack demo wrote no record before it ended"
        children = _children(proc.pid)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + sig, err
        assert err.strip().splitlines() == ["nic-sandbox: interrupted"], err
    result = verify([log])
    assert result.ok or (sig == signal.SIGKILL and "torn" in str(result.problem)), result.problem
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)
