"""Group commit of the audit log (``--fsync batch`` with N records / T ms): when records become durable.

A record is durable when the fsync covering it has returned
(``AuditLog.acknowledged``, ``on_durable``); nothing waiting is lost at
close or on SIGTERM; the bytes are those of any other policy.  No timing is
asserted: the interval test only waits (up to a generous bound) for the
timer's sync to happen at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from verifier.audit.durability import GroupCommit, describe
from verifier.audit.log import AuditLog
from verifier.audit.read import log_files, verify
from verifier.audit.record import AuditRecord

ROOT = Path(__file__).resolve().parents[2]
FOREVER_MS = 60_000.0


def refusal(i: int = 0) -> AuditRecord:
    return AuditRecord(2, "mallory", "nic2", 0, "tx", i, bytes(16), {"addr": 0}, "ADDR_NOT_PINNED", {"owner": "kernel"})


def virtual() -> Callable[[], tuple[int, int]]:
    ticks = iter(range(10**9))
    return lambda: (1_700_000_000_000_000_000 + next(ticks) * 1000, next(ticks) * 1000)


def count(path: Path) -> int:
    result = verify(log_files([path]))
    assert result.ok, result.problem
    return result.records


def test_a_full_group_is_synced_by_the_record_that_fills_it(tmp_path: Path) -> None:
    synced: list[int] = []
    group = GroupCommit(records=4, interval_ms=FOREVER_MS)
    with AuditLog(tmp_path / "a.jsonl", "verifier", group=group, on_durable=lambda s, a, b: synced.append(s)) as log:
        for i in range(3):
            log.record(refusal(i))
            log.commit()  # a doorbell does not sync a group: the group decides
        assert log.acknowledged == -1 and log.pending == 3 and synced == []
        log.record(refusal(3))
        assert log.acknowledged == 3 and log.pending == 0 and synced == [3]
        for i in range(9):
            log.record(refusal(i))
        assert synced == [3, 7, 11] and log.pending == 1
    assert synced == [3, 7, 11, 12]  # close synced the partial group
    assert count(tmp_path / "a.jsonl") == 13


def test_the_interval_syncs_a_group_that_never_fills(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "b.jsonl", "verifier", group=GroupCommit(records=1000, interval_ms=5.0)) as log:
        log.record(refusal())
        deadline = time.monotonic() + 30  # liveness, not timing: the timer thread must sync it at some point
        while log.acknowledged < 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert log.acknowledged == 0 and log.pending == 0
    assert count(tmp_path / "b.jsonl") == 1


def test_nothing_pending_is_lost_at_close(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    log = AuditLog(path, "verifier", group=GroupCommit(records=1000, interval_ms=FOREVER_MS))
    for i in range(5):
        log.record(refusal(i))
    assert log.pending == 5 and path.stat().st_size == 0
    log.close()
    log.close()
    assert log.acknowledged == 4 and count(path) == 5


@pytest.mark.parametrize("group", [GroupCommit(1, 1.0), GroupCommit(7, FOREVER_MS), GroupCommit(1000, 0.5)])
def test_group_commit_writes_the_same_bytes(tmp_path: Path, group: GroupCommit) -> None:
    with AuditLog(tmp_path / "plain", "verifier", fsync="never", clock=virtual(), rotate_bytes=8 << 10) as log:
        for i in range(60):
            log.record(refusal(i))
    with AuditLog(tmp_path / "group", "verifier", clock=virtual(), rotate_bytes=8 << 10, group=group) as log:
        for i in range(60):
            log.record(refusal(i))
            if i % 9 == 0:
                log.commit()
    for name in ("plain", "plain.1", "plain.2"):
        assert (tmp_path / name).read_bytes() == (tmp_path / name.replace("plain", "group")).read_bytes()


def test_group_commit_needs_batch_and_sane_values(tmp_path: Path) -> None:
    for policy in ("always", "never"):
        with pytest.raises(ValueError, match="group commit needs fsync batch"):
            AuditLog(tmp_path / policy, "verifier", fsync=policy, group=GroupCommit())
    bad: dict[str, Any]
    for bad in ({"records": 0}, {"records": 2_000_000}, {"interval_ms": 0.0}, {"interval_ms": float("nan")}):
        with pytest.raises(ValueError, match="group commit"):
            GroupCommit(**bad)
    assert "per doorbell" in describe("batch", None)
    assert "8 records or 2.5 ms" in describe("batch", GroupCommit(8, 2.5))


SIGTERM_WRITER = """
import sys, time
from sandbox.signals import sigterm_as_interrupt
from verifier.audit.durability import GroupCommit
from verifier.audit.log import AuditLog
from verifier.audit.record import AuditRecord
r = AuditRecord(2, "mallory", "nic2", 0, "tx", 0, bytes(16), None, "ADDR_NOT_PINNED", {})
try:
    with sigterm_as_interrupt(), AuditLog(sys.argv[1], "verifier", group=GroupCommit(1000, 60000.0)) as log:
        for _ in range(7):
            log.record(r)
        print(log.pending, flush=True)
        time.sleep(60)
except KeyboardInterrupt:
    sys.exit(143)
"""


def test_sigterm_with_a_pending_group_loses_nothing(tmp_path: Path) -> None:
    """SIGTERM unwinds as the commands do (sandbox/signals.py): the log's close syncs the waiting group."""
    path = tmp_path / "d.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "7"  # seven records wait, none written
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert count(path) == 7
