"""Consecutive descriptor records of one queue, read back from a file-backed audit log, as columns.

Why: a campaign writing its log to disk has the oracle follow the file
after every step (fuzz/log_follow.py).  Taken as one dict per record, the
step's records were then regrouped and turned into columns by per-record
Python -- about ten times what judging the same records costs when an
in-memory sink hands them over as columns.  The follower now parses a
step's lines straight into these columns (one ``LoggedSpan`` per run of
consecutive descriptor records of one queue) and the oracle matches and
judges them as it does an in-memory span.  The columns are exactly what
``AuditWatch._run_rows`` builds from the same records as dicts (the
reference path, still used for any chunk that is not plain:
tests/fuzz/test_log_columns.py holds the two to the same rows and verdicts).

Data only: this module reads no file format of verifier/ (the follower
parses the JSON lines) and imports nothing the oracle judges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fuzz.oracle.reasons import Rows


@dataclass(eq=False)
class LoggedSpan:
    """Records ``seq .. seq + len - 1`` of queue ``(nic, kind, queue)``, each a refused descriptor, as columns.

    The shape ``AuditWatch`` reads of an in-memory ``RecordSpanLike`` (``seq``, ``nic``, ``kind``, ``queue``,
    ``ring_index``, ``reason`` codes and their ``names``), plus the judged columns as a record states them:
    ``addr``, ``lengths`` (TX: the descriptor's length; RX: ``detail.checked_bytes``, -1 when not stated),
    ``cmd``/``cso``/``css`` (TX only), ``bad_byte`` (``detail.first_bad_byte``, -1 when none), ``owner``
    (``detail.owner``, "" when none) and the first record's whole ``detail``.
    """

    seq: int
    nic: str
    kind: str
    queue: int | None
    ring_index: npt.NDArray[np.int64]
    reason: npt.NDArray[np.uint8]
    names: Mapping[int, str]
    addr: npt.NDArray[np.uint64]
    lengths: npt.NDArray[np.int64]
    cmd: npt.NDArray[np.uint8] | None
    cso: npt.NDArray[np.int64] | None
    css: npt.NDArray[np.int64] | None
    bad_byte: npt.NDArray[np.int64]
    owner: npt.NDArray[np.str_]
    detail: Mapping[str, Any]

    # what an in-memory span (RecordSpanLike) carries and a logged run does not: these columns are above
    @property
    def descs(self) -> None:
        return None

    @property
    def extra(self) -> None:
        return None

    @property
    def iova(self) -> None:
        return None

    @property
    def length(self) -> None:
        return None

    @property
    def write(self) -> None:
        return None

    def __len__(self) -> int:
        return int(self.reason.size)

    def rows(self, context: Mapping[str, Any]) -> Rows:
        """The records as the reason predicates read them; ``context``: what the oracle knows of the queue."""
        rows = Rows(self.seq, self.nic, self.kind, **context)
        rows.addr = self.addr
        rows.length = self.lengths
        if self.kind != "rx":
            rows.cmd, rows.cso, rows.css = self.cmd, self.cso, self.css
            rows.slot = self.ring_index
        rows.bad_byte = self.bad_byte
        rows.owner = self.owner
        rows.detail = self.detail
        return rows
