"""A large audit log, fast, written by the real writer: what ``bench.audit_scale`` measures the auditor's tools on.

A fuzz campaign writes ~20,000 records a second here (the million-record
test waits ~50 s for its log); issue 15 section 4 asks for 10,000,000, which
a campaign would take ten minutes to write.  This writes the same kind of
records through the same writer (``AuditLog.record_batch`` with
``RejectionBatch``: the bytes, chain and rotation of a kernel's doorbell
batches) without running a NIC: 255 refused TX/RX descriptors per doorbell,
eight tenants on four NICs with two queues each, the reasons of a mallory
campaign (address, length, packet and access refusals), the virtual clock
(1 µs a record from ``VIRTUAL_EPOCH_NS``), rotated at the writer's 64 MB, never
pruned.  Deterministic: the same ``records`` give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ring.descriptors import RX_DESC, TX_DESC
from ring.memory import OWNER_FREE, OWNER_KERNEL
from verifier.audit.log import VIRTUAL_EPOCH_NS, AuditLog
from verifier.audit.rejection_batch import RejectionBatch
from verifier.rules import reasons as R
from verifier.rules.checks import NO_OWNER

#: Rows per doorbell batch (a ring of 256 holds 255 new descriptors at most).
BATCH = 255
TENANTS = tuple((t, f"tenant-{t}") for t in range(1, 9))
#: Reasons of descriptor refusals, and whether they name an offending byte.
REASONS: tuple[tuple[int, bool], ...] = (
    (R.ADDR_NOT_PINNED, True),
    (R.ADDR_BEYOND_MEMORY, True),
    (R.ADDR_WRAP, True),
    (R.LEN_ZERO, False),
    (R.LEN_TOO_LONG, False),
    (R.PKT_BAD_FRAGMENT, False),
    (R.ACCESS_NO_READ, True),
)
STEP_NS = 1000


def _virtual_clock() -> Callable[[], tuple[int, int]]:
    tick = [0]

    def clock() -> tuple[int, int]:
        tick[0] += STEP_NS
        return VIRTUAL_EPOCH_NS + tick[0], tick[0]

    return clock


def _batches(records: int, seed: int) -> Iterator[RejectionBatch]:
    rng = np.random.default_rng(seed)
    weights = np.array([40, 6, 3, 8, 5, 30, 8], dtype=float)
    weights /= weights.sum()
    codes = np.array([code for code, _ in REASONS], dtype=np.uint8)
    addressed = {code for code, named in REASONS if named}
    done = 0
    while done < records:
        n = min(BATCH, records - done)
        tenant, name = TENANTS[int(rng.integers(len(TENANTS)))]
        kind = "rx" if rng.random() < 0.25 else "tx"
        dtype = RX_DESC if kind == "rx" else TX_DESC
        descs = np.zeros(n, dtype=dtype)
        descs["addr"] = rng.integers(0, 1 << 36, n, dtype=np.uint64) & ~np.uint64(0x3F)
        descs["length"] = rng.integers(0, 9000, n)
        if kind == "tx":
            descs["cmd"] = 0x0B
        reason = codes[rng.choice(len(codes), n, p=weights)]
        has_byte = np.isin(reason, list(addressed))
        bad_byte = np.where(has_byte, descs["addr"].astype(np.int64) + 17, -1)
        owner = np.where(has_byte, rng.choice([OWNER_KERNEL, OWNER_FREE, tenant % 8 + 1], n), NO_OWNER).astype(np.int32)
        ring = np.arange(done, done + n, dtype=np.int64) % 256
        yield RejectionBatch(tenant, name, f"nic{tenant % 4}", tenant % 2, kind, ring, reason, bad_byte, owner, descs)
        done += n


def write(path: Path, records: int, seed: int = 3, progress: Callable[[int], None] | None = None) -> None:
    """Append ``records`` refusals to the log ``path`` (a new one: the directory must not hold one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with AuditLog(path, "verifier", fsync="never", clock=_virtual_clock(), max_bytes=None) as log:
        for batch in _batches(records, seed):
            log.record_batch(batch)
            log.commit()
            written += len(batch)
            if progress is not None and written % (BATCH * 4000) < BATCH:
                progress(written)
