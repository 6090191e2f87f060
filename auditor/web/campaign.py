"""The campaign view of ``nic-sandbox fuzz --serve``: what syz-manager shows a syzkaller user, for one campaign.

A ``CampaignBoard`` holds what the page shows -- per attack class the
descriptors generated, the audit records (refusals), the descriptors accepted
with no escape, the escape findings, the batches and the rate now; the
totals; the lines of ``verifier/`` reached; every distinct escape with its
reproducer -- and a bounded time series for the charts.  It is fed plain
values (``apply`` takes the messages the command line sends; auditor/ and
fuzz/ import nothing of each other, sandbox/ wires them), from any thread;
readers get JSON-ready dicts.

Time series: a sample (cumulative counts per class, escapes, coverage) at
most every ``interval`` seconds, starting at ``SAMPLE_S``.  When
``MAX_SAMPLES`` are held every other one is dropped and the interval
doubled, as RRD archives and syz-manager's graphs thin old points: a day-long
campaign keeps the same few hundred points as a minute-long one.  Counts
are cumulative, so a rate between two kept samples stays exact after
thinning (it is an average over a wider interval).

Reproducers: the board knows each escape's case file by the path the
command line gave it and serves it by *index* (``case_bytes(n)``); nothing
from a URL ever names a file.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The counts kept per class, as ``ClassStats.as_dict`` (fuzz/campaign.py) names them.
COUNTS = ("generated", "rejected", "accepted_and_safe", "escapes", "batches")
#: First spacing of samples, in seconds (doubled at each thinning).
SAMPLE_S = 1.0
#: Samples held at most; at this many, every other one goes.
MAX_SAMPLES = 480
#: "Rate now": descriptors per second over about this many seconds.
RATE_WINDOW_S = 5.0
#: Distinct escapes listed at most (distinct is per class and oracle kind: a few dozen in practice).
MAX_ESCAPES = 1000
#: Largest case file served (fuzz/case.py refuses to load larger ones).
MAX_CASE_BYTES = 32 << 20
#: Series drawn per class in the rate chart; the rest are summed as "(other)".
TOP_CLASSES = 8
#: Text fields from the command line are cut to this (they are shown, never interpreted).
MAX_TEXT = 2000
#: ``ending``: the campaign stopped sending batches and is minimising its reproducers and checking its log.
STATES = ("starting", "running", "ending", "done", "interrupted")


class BoardError(ValueError):
    """A message the board does not take (unknown operation or a value of the wrong kind)."""


@dataclass
class BoardEscape:
    """One distinct escape (class and oracle kind): what the oracle saw and where its reproducer is."""

    n: int
    cls: str
    kind: str
    what: str
    seconds: float
    case: str | None = None  # the case file's path, as the command line wrote it
    replay: str | None = None  # the command that replays it
    minimised: bool = False
    reproduces: bool | None = None  # known once the campaign has ended and replayed it alone

    def as_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "class": self.cls,
            "kind": self.kind,
            "what": self.what,
            "seconds": round(self.seconds, 3),
            "case": self.case,
            "file": None if self.case is None else download_name(self.case),
            "download": None if self.case is None else f"api/campaign/case/{self.n}",
            "replay": self.replay,
            "minimised": self.minimised,
            "reproduces": self.reproduces,
        }


@dataclass
class _Sample:
    t: float
    generated: list[int]  # per class, in the board's class order
    escapes: int
    coverage: int | None


@dataclass
class _State:
    state: str = "starting"
    protection: str = ""
    seed: int = 0
    jobs: int = 1
    out: str = ""
    audit_logs: list[str] = field(default_factory=list)
    iterations_planned: int | None = None
    seconds_planned: float | None = None
    classes: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    elapsed: float = 0.0
    iterations: int = 0
    coverage: int | None = None
    escapes: list[BoardEscape] = field(default_factory=list)
    audit_problems: list[str] = field(default_factory=list)
    report: str | None = None
    note: str | None = None


def download_name(path: str) -> str:
    """The file name offered for a download: the case's own name, reduced to characters safe in a header."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).name)[:200]
    return name if name.endswith(".json") else name + ".json"


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise BoardError(f"{what}: text expected")
    return value[:MAX_TEXT]


def _count(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise BoardError(f"{what}: a count expected")
    return value


class CampaignBoard:
    """The state of one campaign for the web view: fed by ``start``/``update``/``escape``/``finish`` (or ``apply``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._s = _State()
        self._samples: list[_Sample] = []
        self._interval = SAMPLE_S
        self._recent: deque[tuple[float, list[int]]] = deque()
        self._keys: dict[tuple[str, str], BoardEscape] = {}
        self.generation = 0  # bumped on every change: the page reloads what moved

    # -- feeding ---------------------------------------------------------------------------
    def apply(self, message: Mapping[str, Any]) -> None:
        """One message from the command line: ``{"op": "start"|"update"|"escape"|"ending"|"finish", ...arguments}``."""
        op = message.get("op")
        handlers: dict[str, Callable[..., object]] = {
            "start": self.start,
            "update": self.update,
            "escape": self.escape,
            "ending": self.ending,
            "finish": self.finish,
        }
        handler = handlers.get(op if isinstance(op, str) else "")
        if handler is None:
            raise BoardError(f"unknown operation {op!r}")
        args = {k: v for k, v in message.items() if k != "op"}
        try:
            handler(**args)
        except TypeError as e:
            raise BoardError(f"{op}: {e}") from None

    def start(
        self,
        protection: str,
        seed: int,
        classes: Sequence[str],
        jobs: int = 1,
        out: str = "",
        audit_logs: Sequence[str] = (),
        iterations: int | None = None,
        seconds: float | None = None,
    ) -> None:
        """The campaign as asked: mode, seed, classes (the table's rows, in order), budget, where it writes."""
        with self._lock:
            s = self._s
            s.protection, s.seed, s.jobs = _text(protection, "protection"), int(seed), int(jobs)
            s.out = _text(out, "out")
            s.audit_logs = [_text(a, "audit log") for a in audit_logs]
            s.iterations_planned, s.seconds_planned = iterations, seconds
            s.classes = [_text(c, "class") for c in classes]
            s.counts = {c: dict.fromkeys(COUNTS, 0) for c in s.classes}
            s.state = "running"
            self.generation += 1

    def update(
        self,
        elapsed: float,
        iterations: int,
        classes: Mapping[str, Mapping[str, int]],
        coverage: int | None = None,
    ) -> None:
        """The running totals: per class the cumulative ``COUNTS``; ``elapsed`` seconds since the start."""
        with self._lock:
            s = self._s
            for name, counts in classes.items():
                if name not in s.counts:
                    continue  # a class the campaign did not announce: not shown
                s.counts[name] = {k: _count(counts.get(k, 0), f"{name}.{k}") for k in COUNTS}
            s.elapsed = max(s.elapsed, float(elapsed))
            s.iterations = _count(iterations, "iterations")
            s.coverage = None if coverage is None else _count(coverage, "coverage")
            generated = [s.counts[c]["generated"] for c in s.classes]
            self._recent.append((s.elapsed, generated))
            while len(self._recent) > 2 and self._recent[1][0] <= s.elapsed - RATE_WINDOW_S:
                self._recent.popleft()
            if not self._samples or s.elapsed - self._samples[-1].t >= self._interval:
                self._sample(generated)
            self.generation += 1

    def _sample(self, generated: list[int]) -> None:
        s = self._s
        escapes = sum(c["escapes"] for c in s.counts.values())
        self._samples.append(_Sample(s.elapsed, generated, escapes, s.coverage))
        if len(self._samples) >= MAX_SAMPLES:
            self._samples = self._samples[::2]
            self._interval *= 2

    def escape(
        self, cls: str, kind: str, what: str, seconds: float, case: str | None = None, replay: str | None = None
    ) -> int:
        """A distinct escape found (again: its case path and command are updated); returns its index."""
        with self._lock:
            key = (_text(cls, "class"), _text(kind, "kind"))
            found = self._keys.get(key)
            if found is None:
                if len(self._s.escapes) >= MAX_ESCAPES:
                    return -1
                found = BoardEscape(len(self._s.escapes), key[0], key[1], _text(what, "what"), float(seconds))
                self._s.escapes.append(found)
                self._keys[key] = found
            if case is not None:
                found.case = _text(case, "case")
            if replay is not None:
                found.replay = _text(replay, "replay")
            self.generation += 1
            return found.n

    def ending(self, note: str) -> None:
        """No more batches: the campaign minimises its reproducers and checks its log (``note`` says so)."""
        with self._lock:
            self._s.state = "ending"
            self._s.note = _text(note, "note")
            self.generation += 1

    def finish(
        self,
        state: str,
        escapes: Sequence[Mapping[str, Any]] = (),
        audit_problems: Sequence[str] = (),
        report: str | None = None,
        note: str | None = None,
    ) -> None:
        """The campaign ended (``done`` or ``interrupted``): the final cases (minimised, replayed alone), the end
        check's problems, the report written."""
        if state not in STATES[3:]:
            raise BoardError(f"finish: state {state!r} (done or interrupted)")
        for e in escapes:
            n = self.escape(e["cls"], e["kind"], e["what"], e["seconds"], e.get("case"), e.get("replay"))
            with self._lock:
                if 0 <= n < len(self._s.escapes):
                    self._s.escapes[n].minimised = bool(e.get("minimised", False))
                    reproduces = e.get("reproduces")
                    self._s.escapes[n].reproduces = None if reproduces is None else bool(reproduces)
        with self._lock:
            s = self._s
            s.state = state
            s.audit_problems = [_text(p, "audit problem") for p in audit_problems]
            s.report = None if report is None else _text(report, "report")
            s.note = None if note is None else _text(note, "note")
            self._sample([s.counts[c]["generated"] for c in s.classes])
            self.generation += 1

    # -- reading ---------------------------------------------------------------------------
    def _rates_now(self) -> tuple[float, list[float]]:
        if len(self._recent) < 2:
            return 0.0, [0.0] * len(self._s.classes)
        (t0, g0), (t1, g1) = self._recent[0], self._recent[-1]
        dt = t1 - t0
        if dt <= 0:
            return 0.0, [0.0] * len(g1)
        per = [(b - a) / dt for a, b in zip(g0, g1, strict=True)]
        return sum(per), per

    def snapshot(self) -> dict[str, Any]:
        """``/api/campaign``: the table, the totals and the escapes."""
        with self._lock:
            s = self._s
            total_now, per_now = self._rates_now() if s.state == "running" else (0.0, [0.0] * len(s.classes))
            rows = [
                {"name": c, **s.counts[c], "rate_now": round(r, 1)} for c, r in zip(s.classes, per_now, strict=True)
            ]
            totals = {k: sum(s.counts[c][k] for c in s.classes) for k in COUNTS}
            return {
                "state": s.state,
                "generation": self.generation,
                "protection": s.protection,
                "seed": s.seed,
                "jobs": s.jobs,
                "out": s.out,
                "audit_logs": s.audit_logs,
                "budget": {"iterations": s.iterations_planned, "seconds": s.seconds_planned},
                "elapsed": round(s.elapsed, 3),
                "iterations": s.iterations,
                "totals": {
                    **totals,
                    "rate_now": round(total_now, 1),
                    "rate_mean": round(totals["generated"] / s.elapsed, 1) if s.elapsed > 0 else 0.0,
                },
                "classes": rows,
                "coverage": s.coverage,
                "escapes": [e.as_json() for e in s.escapes],
                "audit_problems": list(s.audit_problems),
                "report": s.report,
                "note": s.note,
            }

    def series(self) -> dict[str, Any]:
        """``/api/campaign/series``: per interval between samples, descriptors/s in all and per class (the top
        ``TOP_CLASSES`` by descriptors, the rest as "(other)"); escapes and coverage at each sample."""
        with self._lock:
            samples = list(self._samples)
            classes = list(self._s.classes)
            interval = self._interval
        t = [round(x.t, 6) for x in samples]
        rates: list[list[float]] = []  # per interval, per class
        prev_t, prev = 0.0, [0] * len(classes)
        for x in samples:
            dt = x.t - prev_t
            rates.append([(b - a) / dt if dt > 0 else 0.0 for a, b in zip(prev, x.generated, strict=True)])
            prev_t, prev = x.t, x.generated
        last = samples[-1].generated if samples else [0] * len(classes)
        order = sorted(range(len(classes)), key=lambda i: (-last[i], i))
        top = [i for i in order if last[i] > 0][:TOP_CLASSES]
        rest = [i for i in order if last[i] > 0][TOP_CLASSES:]
        series = [{"key": classes[i], "total": last[i], "rates": [round(r[i], 1) for r in rates]} for i in top]
        if rest:
            series.append(
                {
                    "key": "(other)",
                    "total": sum(last[i] for i in rest),
                    "rates": [round(sum(r[i] for i in rest), 1) for r in rates],
                }
            )
        return {
            "interval": interval,
            "t": t,
            "rate": [round(sum(r), 1) for r in rates],
            "classes": series,
            "escapes": [x.escapes for x in samples],
            "coverage": [x.coverage for x in samples],
        }

    def case_bytes(self, n: int) -> tuple[str, bytes]:
        """Escape ``n``'s reproducer as stored now (raw while the campaign runs, minimised after): (file name, bytes).

        Raises ``LookupError`` for an escape that does not exist or has no case (yet), ``OSError`` if unreadable.
        """
        with self._lock:
            if not 0 <= n < len(self._s.escapes):
                raise LookupError(f"escape {n}: no such escape ({len(self._s.escapes)} so far)")
            path = self._s.escapes[n].case
        if path is None:
            raise LookupError(f"escape {n}: its reproducer is not written yet")
        with open(path, "rb") as f:
            data = f.read(MAX_CASE_BYTES + 1)
        if len(data) > MAX_CASE_BYTES:
            raise LookupError(f"escape {n}: the reproducer is larger than {MAX_CASE_BYTES} bytes")
        return download_name(path), data
