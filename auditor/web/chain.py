"""The chain's status for the web view: ``verify`` (verifier/audit/read.py), re-run as the log grows.

The page shows the same verdict as ``nic-sandbox audit verify`` (intact, or
every problem with its file, line and seq), never a verdict of its own.  A
full walk costs time proportional to the log, so on a live log it is re-run
only when the index has grown, and at most every ``max(MIN_INTERVAL_S,
2 x the last walk)``: on a large log the status lags the table by a walk,
and says when it was made and over how many lines.  Per-worker logs of a
parallel campaign are separate chains (verifier/audit/sets.py): each is
verified on its own and the page shows one verdict per chain.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from verifier.audit.log import AuditError
from verifier.audit.read import PathLike, verify
from verifier.audit.sets import log_sets

#: Shortest time between two walks of a live log, in seconds.
MIN_INTERVAL_S = 1.0
#: Problems sent to the page per chain (``verify`` keeps the first 1,000; the rest are counted).
PROBLEMS_SHOWN = 50


@dataclass
class ChainStatus:
    """What the page shows: ``state`` is ``checking`` (no walk finished yet), ``ok``, ``tampered`` or ``error``."""

    state: str = "checking"
    chains: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    checked_at: float | None = None  # time.time() when the last walk ended
    seconds: float | None = None  # how long it took

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "chains": self.chains,
            "error": self.error,
            "checked_at": self.checked_at,
            "seconds": self.seconds,
        }


def check(names: Iterable[PathLike]) -> ChainStatus:
    """One walk of every chain of ``names``."""
    started = time.monotonic()
    try:
        sets = log_sets(list(names))
        chains = []
        for files in sets:
            result = verify(files)
            chains.append(
                {
                    "log": str(files[-1]) if files else "",
                    "ok": result.ok,
                    "lines": result.lines,
                    "records": result.records,
                    "first_seq": result.first_seq,
                    "head": result.head,
                    "files": list(result.files),
                    "problems": [
                        {"seq": p.seq, "problem": p.what, "where": p.where} for p in result.problems[:PROBLEMS_SHOWN]
                    ],
                    "more_problems": result.more_problems + max(0, len(result.problems) - PROBLEMS_SHOWN),
                    "notes": list(result.notes),
                }
            )
    except (OSError, AuditError) as e:  # a foreign file appeared, a file vanished mid-walk
        return ChainStatus("error", [], str(e), time.time(), time.monotonic() - started)
    state = "ok" if all(c["ok"] for c in chains) else "tampered"
    return ChainStatus(state, chains, None, time.time(), time.monotonic() - started)


class ChainWatch:
    """Re-verifies ``names`` in a thread of its own whenever ``poke`` says the log grew."""

    def __init__(self, names: Iterable[PathLike]) -> None:
        self.names = list(names)
        self.status = ChainStatus()
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-serve-verify", daemon=True)

    def start(self) -> None:
        self._wanted.set()
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def poke(self) -> None:
        self._wanted.set()

    def stop(self) -> None:
        self._stop.set()
        self._wanted.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wanted.wait()
            if self._stop.is_set():
                return
            self._wanted.clear()
            self.status = check(self.names)
            self._stop.wait(max(MIN_INTERVAL_S, 2 * (self.status.seconds or 0.0)))
