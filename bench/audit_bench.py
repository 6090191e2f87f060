"""Audit log throughput: records written per second, alone and inside a campaign, and verified, per schema.

Rows of issue 12 (goals as ratios measured in the same run where the disk
sets the limit, absolute rates for a quiet bench machine otherwise):

* **writer alone, fsync=batch, against the disk's ceiling** --
  ``AuditLog.record_batch`` of one doorbell's rejections (``DOORBELL``
  rejected TX descriptors with every kind of detail, as the verifier hands
  them over), ``commit()`` after each as the kernel does: one ``fsync`` per
  doorbell.  No code writes faster than the disk syncs, so the same run
  measures the ceiling: ``DOORBELL`` records per (write + fsync of one
  doorbell's bytes), the bytes this writer wrote per doorbell, in slices
  alternating with the writer's so both see the same disk; goal >= 0.8 of it;
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
import sys
import tempfile
import time
from pathlib import Path

from bench.fuzz_bench import BATCH_CLASSES
from bench.goals import GoalRow
from fuzz.campaign import run_campaign
from measure.refusals import DOORBELL, doorbell_batch
from sandbox.flags import FUZZ_AUDIT_SCHEMA, open_audit
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


def settle_disk(folder: Path) -> None:
    """Delete the measurements' files and write back what the page cache still holds (``sync(2)``), untimed.

    A row at fsync=never writes through the page cache at about 0.5-0.9 GB/s; the rows before it leave
    gigabytes dirty (the v1 writer's 3 s is about 1.6 GB), and ext4's journal commits for the next fsyncs, or the
    kernel's writeback once ``vm.dirty_background_ratio`` is crossed, then compete with the next row's writes:
    one whole run measured the v2 writer at 397k records/s after the v1 rows and at 1.26M alone.  Each row
    starts from a disk with nothing left to write.
    """
    for leftover in folder.iterdir():
        leftover.unlink()
    os.sync()


def measure_writer(
    path: Path, seconds: float, group: GroupCommit | None = None, fsync: str = "batch", schema: int = DEFAULT_SCHEMA
) -> float:
    """Records per second through ``record_batch`` + ``commit`` (fsync ``fsync``, or ``group`` commit)."""
    rows = doorbell_batch()
    with AuditLog(path, "verifier", fsync=fsync, max_bytes=None, group=group, schema=schema) as log:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            log.record_batch(rows)
            log.commit()
        return log.next_seq / (time.perf_counter() - start)


def synced_and_ceiling(folder: Path, seconds: float, schema: int, rounds: int = 8) -> tuple[float, float, int]:
    """The writer with fsync=batch and the disk's ceiling, measured in alternating slices of the same ``seconds``.

    The ceiling is ``DOORBELL`` records per (write + fsync of the bytes one doorbell writes), measured as the
    writer syncs: append that many bytes, flush, fsync.  A disk shared with other work changes its fsync latency
    from one second to the next; alternating ``rounds`` slices of each puts both under the same conditions.
    Returns (writer rec/s, ceiling rec/s, bytes per doorbell).
    """
    rows = doorbell_batch()
    slice_s = seconds / rounds
    written_s = ceiling_s = 0.0
    doorbells = synced = 0
    block = b""
    with (
        AuditLog(folder / f"synced{schema}.jsonl", "verifier", fsync="batch", max_bytes=None, schema=schema) as log,
        (folder / f"ceiling{schema}.bin").open("ab") as raw,
    ):
        for _ in range(rounds):
            start = time.perf_counter()
            while time.perf_counter() - start < slice_s:
                log.record_batch(rows)
                log.commit()
                doorbells += 1
            written_s += time.perf_counter() - start
            if not block:
                size = log.disk.written // doorbells
                block = b"x" * (size - 1) + b"\n"
            start = time.perf_counter()
            while time.perf_counter() - start < slice_s:
                raw.write(block)
                raw.flush()
                os.fsync(raw.fileno())
                synced += 1
            ceiling_s += time.perf_counter() - start
        return log.next_seq / written_s, DOORBELL * synced / ceiling_s, len(block)


def measure_campaign(path: Path, seconds: float, seed: int = 1) -> tuple[float, int, float]:
    """Records per second a verifier-mode campaign writes to its on-disk log: (rate, records, seconds)."""
    log = open_audit(str(path), Protection.VERIFIER, FUZZ_FSYNC, schema=FUZZ_AUDIT_SCHEMA)
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
            tag = f"v{schema}" + (", fuzz's" if schema == FUZZ_AUDIT_SCHEMA else ", the demos'")
            settle_disk(Path(tmp))
            synced, ceiling, size = synced_and_ceiling(Path(tmp), 2 * seconds, schema)
            written = Path(tmp) / f"writer{schema}.jsonl"
            settle_disk(Path(tmp))
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
        settle_disk(Path(tmp))
        campaign, in_campaign, took = measure_campaign(Path(tmp) / "campaign.jsonl", seconds)
    rows.append(
        GoalRow(
            f"audit log in a verifier campaign (on disk, fsync={FUZZ_FSYNC}, v{FUZZ_AUDIT_SCHEMA}, as fuzz writes it)",
            f"{in_campaign:,} records in {took:.1f} s",
            "-",
            campaign,
            CAMPAIGN_GOAL,
            unit="rec/s",
        )
    )
    return rows


#: Where ``cpu_per_record`` keeps its log: memory (tmpfs), so the disk's share is out of the figure.
TMPFS = Path("/dev/shm")


def cpu_per_record(schema: int, doorbells: int = 800, runs: int = 3) -> tuple[float, float]:
    """CPU seconds per record of the writer (``record_batch`` + ``commit``, fsync never) and of ``verify``, the log
    on tmpfs: the code's own cost, apart from the disk and from other work on a shared machine (best of ``runs``).
    """
    rows = doorbell_batch()
    writer = checker = float("inf")
    folder = TMPFS if TMPFS.is_dir() else None
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="nicsb-audit-cpu-", dir=folder) as tmp:
            path = Path(tmp) / "log"
            with AuditLog(path, "verifier", fsync="never", max_bytes=None, rotate_bytes=None, schema=schema) as log:
                start = time.process_time()
                for _ in range(doorbells):
                    log.record_batch(rows)
                    log.commit()
                writer = min(writer, (time.process_time() - start) / log.next_seq)
            start = time.process_time()
            result = verify(log_files([path]))
            if not result.ok:
                raise RuntimeError(f"the bench's own log does not verify: {result.problem}")
            checker = min(checker, (time.process_time() - start) / result.records)
    return writer, checker


def main() -> None:  # python -m bench.audit_bench [--cpu]
    if "--cpu" in sys.argv[1:]:
        for schema in SCHEMAS:
            writer, checker = cpu_per_record(schema)
            print(f"v{schema}: writer {writer * 1e6:.2f} µs/record, verify {checker * 1e6:.2f} µs/record (CPU, tmpfs)")
        return
    for row in goal_rows(3.0):
        goal = f"goal {row.show(row.goal)}: {row.verdict}"
        print(f"{row.what:96} {row.figure:26} {row.baseline:34} {row.show(row.value):>14}  {goal}")


if __name__ == "__main__":
    main()
