"""Audit log throughput: records written per second, alone and inside a campaign, and verified, per schema.

Rows of issue 12 (goals as ratios measured in the same run where the disk
sets the limit, absolute rates for a quiet bench machine otherwise):

* **writer alone, fsync=batch, against the disk's ceiling** --
  ``AuditLog.record_batch`` of one doorbell's rejections (``DOORBELL``
  rejected TX descriptors with every kind of detail, as the verifier hands
  them over), ``commit()`` after each as the kernel does: one ``fsync`` per
  doorbell.  No code writes faster than the disk syncs, so the same run
  measures the ceiling: ``DOORBELL`` records per (write + fsync of one
  doorbell's bytes), the bytes this writer wrote per doorbell; goal >= 0.8 of it;
* **writer alone, fsync=never** -- the encoder, the hash and the write
  without the disk's sync: the writer's own cost; goal >= 1M rec/s;
* **inside a campaign** -- ``fuzz.campaign.run_campaign`` in verifier mode,
  the batch-mode classes, writing the log on disk as ``nic-sandbox fuzz``
  opens it (``sandbox.flags.open_audit`` with the fsync policy of the fuzz
  command, ``FUZZ_FSYNC``, and the wall clock): records written over the
  campaign's seconds, its end check (the log verified) included;
* **audit verify** -- ``verifier.audit.read.verify`` over the writer's log, the
  files found as ``nic-sandbox audit verify`` finds them (``expand_logs``).

Writer and verify rows are printed for both schemas (v1: a hash per record;
v2: a chained checkpoint per batch, docs/audit-log.md).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.fuzz_bench import BATCH_CLASSES
from bench.goals import GoalRow
from fuzz.campaign import run_campaign
from measure.refusals import DOORBELL, doorbell_batch
from sandbox.flags import open_audit
from verifier.audit.durability import GroupCommit
from verifier.audit.log import DEFAULT_SCHEMA, SCHEMAS, AuditLog
from verifier.audit.read import log_files, verify
from verifier.modes.protection import Protection

WRITER_GOAL = 1_000_000
#: The writer with fsync=batch, as a fraction of the disk's ceiling measured in the same run.
CEILING_GOAL = 0.8
CAMPAIGN_GOAL = 300_000
VERIFY_GOAL = 1_000_000
#: The fsync policy ``nic-sandbox fuzz`` opens its audit log with (sandbox/commands/fuzz.py).
FUZZ_FSYNC = "never"


def measure_writer(
    path: Path, seconds: float, group: GroupCommit | None = None, fsync: str = "batch", schema: int = DEFAULT_SCHEMA
) -> float:
    """Records per second through ``record_batch`` + ``commit`` (fsync ``fsync``, or ``group`` commit)."""
    rate, _ = measure_writer_bytes(path, seconds, group, fsync, schema)
    return rate


def measure_writer_bytes(
    path: Path, seconds: float, group: GroupCommit | None = None, fsync: str = "batch", schema: int = DEFAULT_SCHEMA
) -> tuple[float, int]:
    """``measure_writer``'s rate and the bytes the writer wrote per doorbell (what one fsync covers)."""
    rows = doorbell_batch()
    with AuditLog(path, "verifier", fsync=fsync, max_bytes=None, group=group, schema=schema) as log:
        start = time.perf_counter()
        doorbells = 0
        while time.perf_counter() - start < seconds:
            log.record_batch(rows)
            log.commit()
            doorbells += 1
        elapsed = time.perf_counter() - start
        return log.next_seq / elapsed, log.disk.written // max(1, doorbells)


def fsync_ceiling(path: Path, size: int, seconds: float) -> float:
    """Records per second the disk allows one fsync per doorbell: ``DOORBELL`` / (write + fsync of ``size`` bytes).

    Measured as the writer syncs: append ``size`` bytes to a file, flush, fsync, for ``seconds``.
    """
    block = b"x" * (size - 1) + b"\n"
    count = 0
    with path.open("ab") as f:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            f.write(block)
            f.flush()
            os.fsync(f.fileno())
            count += 1
        elapsed = time.perf_counter() - start
    return DOORBELL * count / elapsed


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
    """The audit rows of issue 12, from one run of ``seconds`` per measurement."""
    rows: list[GoalRow] = []
    with tempfile.TemporaryDirectory(prefix="nicsb-audit-bench-") as tmp:
        for schema in SCHEMAS:
            tag = f"v{schema}" + (", the default" if schema == DEFAULT_SCHEMA else "")
            synced, size = measure_writer_bytes(Path(tmp) / f"synced{schema}.jsonl", seconds, schema=schema)
            ceiling = fsync_ceiling(Path(tmp) / f"ceiling{schema}.bin", size, seconds)
            written = Path(tmp) / f"writer{schema}.jsonl"
            alone = measure_writer(written, seconds, fsync="never", schema=schema)
            checked, records = measure_verify(written)
            rows += [
                GoalRow(
                    f"audit log ({tag}): writer alone, record_batch of {DOORBELL}, fsync=batch, vs the disk's ceiling",
                    f"{synced:,.0f} rec/s",
                    f"{ceiling:,.0f} rec/s ({size:,} B per fsync)",
                    synced / ceiling,
                    CEILING_GOAL,
                ),
                GoalRow(
                    f"audit log ({tag}): writer alone, fsync=never (encode + hash + write)",
                    f"{alone:,.0f} rec/s",
                    "-",
                    alone,
                    WRITER_GOAL,
                    unit="rec/s",
                ),
                GoalRow(
                    f"audit verify ({tag}), records checked per second",
                    f"{records:,} records",
                    "-",
                    checked,
                    VERIFY_GOAL,
                    unit="rec/s",
                ),
            ]
        campaign, in_campaign, took = measure_campaign(Path(tmp) / "campaign.jsonl", seconds)
    rows.append(
        GoalRow(
            f"audit log inside a verifier campaign (on disk, fsync={FUZZ_FSYNC} as fuzz opens it)",
            f"{in_campaign:,} records in {took:.1f} s",
            "-",
            campaign,
            CAMPAIGN_GOAL,
            unit="rec/s",
        )
    )
    return rows


def main() -> None:  # python -m bench.audit_bench
    for row in goal_rows(3.0):
        goal = f"goal {row.show(row.goal)}: {row.verdict}"
        print(f"{row.what:96} {row.figure:26} {row.baseline:34} {row.show(row.value):>14}  {goal}")


if __name__ == "__main__":
    main()
