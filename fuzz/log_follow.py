"""Follow a file-backed audit log as it grows: the records appended since the last look, as dicts.

Why: a campaign writing its audit log to disk used to judge that log only at
the end (``AuditWatch.finish``), so a wrong reason or a lost record was found
late and by no batch, and had no reproducer.  After each step the campaign's
``AuditWatch`` asks this follower for the step's records (the sink has
committed them: a doorbell commits its own) and matches and judges them as
it does an in-memory sink's.  The step's lines are parsed as one JSON array
(one C call): a line that is not JSON is dropped here, so the watch reports
its record lost; the canonical form and the chain are checked once, at the
end, by ``verify``.  A schema v2 log's checkpoint lines (docs/audit-log.md)
are the chain's, not records: they are left out here.

A rotation (the writer renames the file to ``PATH.N`` and opens a new
``PATH``) is followed: the old file is read to its end through the handle
already open, then the new one from its start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO


class LogFollower:
    """The records appended to the log at ``path`` since the last call (the first call: since construction)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: BinaryIO | None = None
        self._rest = b""
        self._open(at_end=True)

    def _open(self, at_end: bool) -> None:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            self._file = None
            return
        if at_end:
            handle.seek(0, os.SEEK_END)
        self._file = handle
        self._rest = b""

    def _rotated(self) -> bool:
        """The writer opened a new file at ``path`` since ours was opened."""
        if self._file is None:
            return self.path.exists()
        try:
            return os.stat(self.path).st_ino != os.fstat(self._file.fileno()).st_ino
        except FileNotFoundError:
            return False

    def __call__(self) -> list[dict[str, Any]]:
        data = b""
        while True:
            if self._file is not None:
                data += self._rest + self._file.read()
                self._rest = b""
            if not self._rotated():
                break
            if self._file is not None:
                self._file.close()
            self._open(at_end=False)
        lines = data.split(b"\n")
        self._rest = lines.pop()  # an incomplete last line waits for the rest of it
        if not lines:
            return []
        try:
            records = json.loads(b"[" + b",".join(lines) + b"]")
        except (ValueError, RecursionError):  # a damaged line: take the others one by one
            records = [_loads(line) for line in lines]
        # schema v2: a batch's checkpoint line is the chain's, not a record (verify checks it at the end)
        return [r for r in records if isinstance(r, dict) and "checkpoint" not in r]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _loads(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None
