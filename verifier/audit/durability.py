"""Group commit for the audit log: fsync after N records or T milliseconds, whichever comes first.

``fsync="batch"`` alone syncs once per doorbell (``AuditLog.commit``).  A
``GroupCommit`` changes *when* that one fsync happens: the log collects
records until ``records`` of them wait, or until the oldest waiting one has
waited ``interval_ms``, and then writes and fsyncs them together.  This is
the group commit of database write-ahead logs -- PostgreSQL's
``commit_delay``/``commit_siblings``, MySQL's
``binlog_group_commit_sync_delay``/``..._no_delay_count``, the interval of
InnoDB's ``innodb_flush_log_at_timeout`` -- and of Kafka's
``log.flush.interval.messages``/``log.flush.interval.ms``: a bigger group
costs one disk flush per more records (throughput up) and makes each record
wait longer before it is safe (durability latency up).  measure/durability.py
models and measures exactly that trade.

A record is *durable* only when the fsync that covers it has returned;
``AuditLog.acknowledged`` says up to which ``seq`` that is.  Nothing waiting
is lost on ``close()`` (and so on Ctrl-C or SIGTERM, which unwind into it):
close writes and fsyncs the last partial group.  The bytes written are the
same whatever the grouping: only the moments of ``write``/``fsync`` change.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_INTERVAL_MS", "MAX_RECORDS", "MIN_INTERVAL_MS", "GroupCommit", "describe"]

#: Bounds of the flags: one record up to a million per fsync (the buffer holds a group in memory, ~600 B each);
#: 10 µs (below that the timer thread's own wake-up dominates) up to a minute.
MAX_RECORDS = 1_000_000
MIN_INTERVAL_MS, MAX_INTERVAL_MS = 0.01, 60_000.0
#: The group when only one of the two flags is given: the writer's default buffer bound, and 10 ms
#: (a disk flush on an SSD takes about a millisecond: ten of them a second per writer at most).
DEFAULT_RECORDS = 4096
DEFAULT_INTERVAL_MS = 10.0


@dataclass(frozen=True)
class GroupCommit:
    """Sync after ``records`` records or after the oldest has waited ``interval_ms``, whichever comes first."""

    records: int = DEFAULT_RECORDS
    interval_ms: float = DEFAULT_INTERVAL_MS

    def __post_init__(self) -> None:
        if type(self.records) is not int or not 1 <= self.records <= MAX_RECORDS:
            raise ValueError(f"group commit records must be an integer in 1..{MAX_RECORDS}, got {self.records!r}")
        interval = self.interval_ms
        if not isinstance(interval, int | float) or not MIN_INTERVAL_MS <= interval <= MAX_INTERVAL_MS:
            raise ValueError(
                f"group commit interval must be {MIN_INTERVAL_MS}..{MAX_INTERVAL_MS:g} ms, got {interval!r}"
            )

    @property
    def interval_s(self) -> float:
        return self.interval_ms / 1000.0


def describe(fsync: str, group: GroupCommit | None) -> str:
    """One line for a demo's output: the durability setting it ran with, in words a student can check."""
    if fsync == "always":
        return "fsync always: each record is on disk before the call that wrote it returns"
    if fsync == "never":
        return "fsync never: records reach the OS at each doorbell, never forced to disk (a power loss may lose them)"
    if group is None:
        return "fsync batch: one fsync per doorbell, covering every record of that doorbell"
    return (
        f"fsync batch, group commit: one fsync per {group.records} records or {group.interval_ms:g} ms, "
        "whichever comes first (a record is durable when that fsync returns)"
    )
