"""Audit logs for the web view's tests, written by the real writer (verifier/audit/log.py).

``write_log`` gives a small, varied, deterministic log: three tenants, TX
and RX descriptors, register refusals, several reasons, 10 ms apart from
2024-05-01T12:00:00Z.  ``HOSTILE_NAME`` is a tenant name and a detail value
carrying markup and script: the writer stores any text, so the page must
show it as text.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ring.descriptors import RX_DESC, TX_DESC
from verifier.audit.log import AuditLog
from verifier.audit.record import AuditRecord

EPOCH_NS = 1_714_564_800_000_000_000  # 2024-05-01T12:00:00Z
STEP_NS = 10_000_000
REASONS = ("ADDR_NOT_PINNED", "LEN_ZERO", "ADDR_WRAP", "PKT_BAD_FRAGMENT")
TENANTS = ((1, "alice"), (2, "bob"), (3, "mallory"))
#: Markup in a tenant name: if the page ever parsed it, the image's onerror and the script would set window.pwned.
HOSTILE_NAME = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>&amp;"\'</td>'
HOSTILE_DETAIL = "<b>bold</b><script>window.pwned=3</script>"


def ticking(start: int = 0) -> Callable[[], tuple[int, int]]:
    ticks = itertools.count(start)

    def clock() -> tuple[int, int]:
        n = next(ticks) * STEP_NS
        return EPOCH_NS + n, n

    return clock


def record(i: int, tenant: tuple[int, str] | None = None, reason: str | None = None) -> AuditRecord:
    """The ``i``-th refusal of the stream: mostly TX descriptors, every 5th an RX one, every 11th a register."""
    tid, name = tenant or TENANTS[i % len(TENANTS)]
    if i % 11 == 10:
        return AuditRecord(
            tid, name, "nic0", None, "register", None, None, None, reason or "REG_NOT_DOORBELL",
            {"rule": "only the tail register is a doorbell", "register": "TDBAL", "offset": 0x3800, "value": 0x1000},
        )  # fmt: skip
    kind = "rx" if i % 5 == 4 else "tx"
    dtype = RX_DESC if kind == "rx" else TX_DESC
    desc = np.zeros((), dtype=dtype)
    desc["addr"], desc["length"] = 0x1000 * (1 + i % 64), 60 + i % 100
    if kind == "tx":
        desc["cmd"] = 0x0B
    fields = {n: int(desc[n]) for n in dtype.names or ()}
    return AuditRecord(
        tid, name, f"nic{tid}", i % 2, kind, i % 64, desc.tobytes(), fields, reason or REASONS[i % len(REASONS)],
        {"rule": "a byte of the range lies in a frame not pinned by the queue's owner", "frame": 1 + i % 64,
         "owner": "kernel"},
    )  # fmt: skip


def write_log(path: Path, n: int, start: int = 0, hostile_at: int | None = None) -> None:
    """Append records ``start``..``start + n - 1`` to ``path`` (one commit per 16, as a kernel's doorbells do)."""
    with AuditLog(path, "verifier", clock=ticking(start)) as log:
        for i in range(start, start + n):
            if i == hostile_at:
                bad = record(i, tenant=(7, HOSTILE_NAME))
                log.record(bad._replace(detail={"rule": HOSTILE_DETAIL, "note": HOSTILE_NAME}))
            else:
                log.record(record(i))
            if i % 16 == 15:
                log.commit()
