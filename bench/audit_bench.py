"""Audit log throughput: hash-chained records written per second, alone and inside a campaign, and verified.

Three rows of issue 12, absolute rates (goals stated for a quiet bench machine):

* **writer alone** -- ``AuditLog.record_batch`` of one doorbell's rejections
  (``DOORBELL`` rejected TX descriptors with every kind of detail, as the
  verifier hands them over), ``commit()`` after each as the kernel does, with
  ``fsync="batch"``: one ``fsync`` per doorbell, on a file in the temporary
  directory (a real disk, as users' logs are);
* **inside a campaign** -- ``fuzz.campaign.run_campaign`` in verifier mode,
  the batch-mode classes, writing the log on disk as ``nic-sandbox fuzz``
  opens it (``sandbox.flags.open_audit`` with the fsync policy of the fuzz
  command, ``FUZZ_FSYNC``, and the wall clock): records written over the
  campaign's seconds, its end check (the log verified) included;
* **audit verify** -- ``verifier.audit.read.verify`` over the writer's log, the
  files found as ``nic-sandbox audit verify`` finds them (``expand_logs``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.fuzz_bench import BATCH_CLASSES
from bench.goals import GoalRow
from fuzz.campaign import run_campaign
from measure.refusals import DOORBELL, doorbell_batch
from sandbox.flags import open_audit
from verifier.audit.durability import GroupCommit
from verifier.audit.log import AuditLog
from verifier.audit.read import log_files, verify
from verifier.modes.protection import Protection

WRITER_GOAL = 1_000_000
CAMPAIGN_GOAL = 300_000
VERIFY_GOAL = 1_000_000
#: The fsync policy ``nic-sandbox fuzz`` opens its audit log with (sandbox/commands/fuzz.py).
FUZZ_FSYNC = "never"


def measure_writer(path: Path, seconds: float, group: GroupCommit | None = None) -> float:
    """Records per second through ``record_batch`` + ``commit`` (fsync batch, or ``group`` commit) for ``seconds``."""
    rows = doorbell_batch()
    with AuditLog(path, "verifier", fsync="batch", max_bytes=None, group=group) as log:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            log.record_batch(rows)
            log.commit()
        elapsed = time.perf_counter() - start
        return log.next_seq / elapsed


def measure_campaign(path: Path, seconds: float, seed: int = 1) -> tuple[float, int, float]:
    """Records per second a verifier-mode campaign writes to its on-disk log: (rate, records, seconds)."""
    log = open_audit(str(path), Protection.VERIFIER, FUZZ_FSYNC)
    try:
        result = run_campaign("verifier", seed, list(BATCH_CLASSES), seconds=seconds, audit=log, batch=DOORBELL)
        records = log.next_seq
    finally:
        log.close()
    return records / result.seconds, records, result.seconds


def measure_verify(path: Path) -> tuple[float, int]:
    """Records per second checked by ``verify`` as ``audit verify`` calls it, and how many."""
    files = log_files([path])
    start = time.perf_counter()
    result = verify(files)
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise RuntimeError(f"the bench's own log does not verify: {result.problem}")
    return result.records / elapsed, result.records


def goal_rows(seconds: float) -> list[GoalRow]:
    """The three audit rows of issue 12, from one run of ``seconds`` per measurement."""
    with tempfile.TemporaryDirectory(prefix="nicsb-audit-bench-") as tmp:
        written = Path(tmp) / "writer.jsonl"
        writer = measure_writer(written, seconds)
        checked, records = measure_verify(written)
        campaign, in_campaign, took = measure_campaign(Path(tmp) / "campaign.jsonl", seconds)
    return [
        GoalRow(
            f"audit log, writer alone (record_batch of {DOORBELL}, fsync=batch)",
            f"{writer:,.0f} rec/s",
            "-",
            writer,
            WRITER_GOAL,
            unit="rec/s",
        ),
        GoalRow(
            f"audit log inside a verifier campaign (on disk, fsync={FUZZ_FSYNC} as fuzz opens it)",
            f"{in_campaign:,} records in {took:.1f} s",
            "-",
            campaign,
            CAMPAIGN_GOAL,
            unit="rec/s",
        ),
        GoalRow(
            "audit verify, records checked per second",
            f"{records:,} records",
            "-",
            checked,
            VERIFY_GOAL,
            unit="rec/s",
        ),
    ]


def main() -> None:  # python -m bench.audit_bench
    for row in goal_rows(3.0):
        print(f"{row.what:80} {row.figure:28} {row.show(row.value):>14}  goal {row.show(row.goal)}: {row.verdict}")


if __name__ == "__main__":
    main()
