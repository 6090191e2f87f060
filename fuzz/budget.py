"""A campaign's budgets: the end check inside the time budget, and retired arenas freed at once.

Time.  A campaign bounded by ``seconds`` ends with the oracle's end check
(``AuditWatch.finish``): with a file-backed audit log that re-reads and
verifies the whole hash chain, which costs several times what writing it did
(a 5 s campaign used to take 11 s).  ``EndCheck.reserve`` predicts that cost
-- the records the log holds, at a per-record cost measured on this machine
by verifying a sample of the log's first lines -- and the campaign stops
generating while there is still time to run it.  An in-memory sink's end
check only counts: nothing is reserved.  A log the oracle followed step by
step (fuzz/log_follow.py, as ``fuzz`` runs) is verified at the end but not
walked record by record again, so its sample is verified the same way and
the margin is smaller (``FOLLOWED_MARGIN``).

Memory.  An arena (a whole machine: 64 MiB of DRAM, the kernel's image, the
oracle's reference copies) is held in reference cycles (callbacks between
device, kernel and oracle), so dropping it frees nothing until the cyclic
garbage collector runs -- and a long-lived heap makes that rare: dead
arenas piled up to 860 MB in 30 s.  A campaign now builds one arena and
resets it (world/reset.py) instead of building more, so there is nothing
to pile up; ``ArenaReaper`` still collects right after a build (whatever
an earlier campaign left), and objects that existed before the campaign
are frozen (``gc.freeze``) for its duration, so a collection walks only the
campaign's own objects (a few ms, not tens).
"""

from __future__ import annotations

import gc
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from verifier.audit.log import CHECKPOINT_START, SCHEMA_V2

#: Lines of the log verified to measure the end check's cost per record (one verify chunk).
SAMPLE_LINES = 2048
#: Per-record cost assumed until a sample could be measured (measured here: about 90 us).
PRIOR_PER_RECORD_S = 120e-6
#: The end check also tallies and judges each record (fuzz/oracle/audit.py ``_LogTally``): margin on the sample.
MARGIN = 1.3
#: A log the oracle followed step by step is only verified (and its bytes re-hashed, about a tenth of verify's
#: cost: ``LogFollower.holds``) at the end: the sample is verified without handing out records.
FOLLOWED_MARGIN = 1.15
#: The most lines past ``SAMPLE_LINES`` read to reach a v2 batch's checkpoint (a batch is at most the writer's
#: ``max_pending``, 4096 records, plus its checkpoint).
MAX_BATCH = 4097


class SinkLike(Protocol):
    @property
    def path(self) -> Path | None: ...
    @property
    def next_seq(self) -> int: ...


class EndCheck:
    """Predicts how long the end-of-campaign audit check takes, from the log's size and a measured sample."""

    def __init__(self, sink: SinkLike, verify: Callable[..., Any], followed: bool = False) -> None:
        self.sink = sink
        self.verify = verify
        #: the campaign's oracle follows the log (fuzz/log_follow.py): its end check re-reads no record
        self.followed = followed
        self.per_record: float | None = None
        self._next_try = SAMPLE_LINES

    def reserve(self) -> float:
        """Seconds to keep for the end check if the campaign stopped now (0 for an in-memory sink)."""
        path = self.sink.path
        if path is None:
            return 0.0
        records = int(self.sink.next_seq)
        if self.per_record is None and records >= self._next_try:
            self._next_try = records + SAMPLE_LINES  # one attempt per SAMPLE_LINES new records at most
            self.per_record = self._measure(Path(path))
        return records * (self.per_record or PRIOR_PER_RECORD_S) * (FOLLOWED_MARGIN if self.followed else MARGIN)

    def _measure(self, path: Path) -> float | None:
        """Verify the first ``SAMPLE_LINES`` lines of the oldest file of the log; seconds per record, or None."""
        files = [path, *(f for f in path.parent.glob(path.name + ".*") if f.suffix[1:].isdigit())]
        starts = [(f, r) for f in files if (r := _first_record(f)) is not None and r.get("seq") == 0]
        if not starts:
            return None  # the chain's first file was rotated away: keep the prior
        first, head = starts[0]
        batched = head.get("v") == SCHEMA_V2  # the sample must end on a checkpoint, or it verifies as cut mid-batch
        with tempfile.TemporaryDirectory(prefix="nicsb-endcheck-") as tmp:
            sample = Path(tmp) / "sample.jsonl"
            with first.open("rb") as src, sample.open("wb") as dst:
                lines = 0
                checkpoint_ended = False
                for line in src:
                    if not line.endswith(b"\n") or lines >= SAMPLE_LINES + MAX_BATCH:
                        break
                    if lines >= SAMPLE_LINES and (not batched or checkpoint_ended):
                        break
                    dst.write(line)
                    lines += 1
                    checkpoint_ended = batched and line.startswith(CHECKPOINT_START)
            if lines < SAMPLE_LINES // 2:
                return None
            start = time.perf_counter()
            result = self.verify([sample], on_record=None if self.followed else lambda _r: None)
            spent = time.perf_counter() - start
        if not getattr(result, "ok", False) or not result.records:
            return None  # the oldest file does not start the chain (rotated away): keep the prior
        return spent / int(result.records)


class ArenaReaper:
    """Frees each retired arena as soon as its replacement exists (see the module docstring)."""

    def __init__(self) -> None:
        self.collections = 0

    def retired(self) -> None:
        """Call right after the variable that held the old arena names the new one."""
        gc.collect()
        self.collections += 1


def _first_record(path: Path) -> dict[str, Any] | None:
    """The record on ``path``'s first line (None: unreadable or not a record): record 0 starts the chain, and its
    ``v`` says the schema."""
    try:
        with path.open("rb") as f:
            head = f.readline(4096)
    except OSError:
        return None
    try:
        first = json.loads(head)
    except ValueError:
        return None
    return first if isinstance(first, dict) else None


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the objects that exist now for the block's duration (unless someone already froze some)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


__all__ = ["FOLLOWED_MARGIN", "MARGIN", "PRIOR_PER_RECORD_S", "SAMPLE_LINES", "ArenaReaper", "EndCheck", "frozen_heap"]
