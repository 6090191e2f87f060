"""Audit records shaped like the verifier's, for measuring the log without a machine around it.

``doorbell_batch``: one doorbell's rejected TX descriptors as the verifier
hands them to ``AuditLog.record_batch`` (address, length and fragment
reasons, owners of every kind); ``refusal``: one such record alone, as
``AuditLog.record`` takes it.  ``bench/audit_bench.py`` (issue 12's writer
rate) and ``measure/durability_disk.py`` (issue 14's durability latency)
write the same records, so their figures speak of the same bytes.
"""

from __future__ import annotations

import numpy as np

from ring.descriptors import TX_DESC, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS
from ring.memory import OWNER_FREE, OWNER_KERNEL
from verifier.audit.record import AuditRecord
from verifier.audit.rejection_batch import RejectionBatch
from verifier.rules import reasons as R
from verifier.rules.checks import NO_OWNER

#: Rejections per doorbell: a ring's worth, as the fuzzer's batch mode sends them.
DOORBELL = 255


def doorbell_batch(n: int = DOORBELL, seed: int = 1) -> RejectionBatch:
    """One doorbell's rejected TX descriptors: address, length and fragment reasons, owners of every kind."""
    rng = np.random.default_rng(seed)
    descs = np.zeros(n, dtype=TX_DESC)
    descs["addr"] = rng.integers(0, 1 << 26, n, dtype=np.uint64)
    descs["length"] = rng.integers(1, 2048, n)
    descs["cmd"] = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS
    codes = np.array([R.ADDR_NOT_PINNED, R.ADDR_NOT_PINNED, R.LEN_ZERO, R.PKT_BAD_FRAGMENT], dtype=np.uint8)
    reason = codes[np.arange(n) % codes.size]
    addressed = reason == R.ADDR_NOT_PINNED
    owners = np.array([OWNER_KERNEL, OWNER_FREE, 3], dtype=np.int32)
    return RejectionBatch(
        tenant=2,
        tenant_name="mallory",
        nic="nic2",
        queue=0,
        kind="tx",
        ring_index=np.arange(n, dtype=np.int64),
        reason=reason,
        bad_byte=np.where(addressed, descs["addr"].astype(np.int64), -1),
        owner=np.where(addressed, owners[np.arange(n) % owners.size], NO_OWNER).astype(np.int32),
        descs=descs,
    )


def refusal() -> AuditRecord:
    """One rejected TX descriptor (the first of ``doorbell_batch``), as a single ``AuditLog.record`` call takes it."""
    return next(iter(doorbell_batch(1).records()))
