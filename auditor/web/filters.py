"""The web view's filter language: query parameters in, a row mask out, or one line saying what is wrong.

Every parameter is hostile (it comes from any page the browser visits, or
from curl): unknown names, repeated singletons, values past their bounds and
unparseable times are refused with a ``FilterError`` whose text names the
parameter (the server answers 400 with it).  Parameters:

======== ===================================================================
reason   a reason code (repeatable: any of them)
tenant   a tenant id or name (repeatable: any of them)
kind     tx, rx, register, iommu, pin (repeatable)
status   ``ok`` or ``bad`` (records that are not canonical v1 with a sound hash)
since    ISO 8601, UTC unless a zone is given: records at or after it
until    ISO 8601: records before it
sql      free SQL over the table ``records`` of ``audit query``: a query
         returning a ``seq`` column, or a bare condition (``owner =
         'kernel' AND desc_length > 8000`` is ``SELECT seq FROM records
         WHERE ...``); at most ``MAX_SQL`` characters
======== ===================================================================

``sql`` is run by ``audit query``'s engine (auditor/session.py: the log
loaded into DuckDB, the database read-only, no file or network access, every
setting locked; auditor/web/sql.py keeps one per chain) and narrows the rows
to the records whose seq it returns, per chain, combined with the other
parameters by AND.  Bad rows never match it (DuckDB refuses a damaged log,
as ``audit query`` does: the answer says which line).

A filter is applied a block of rows at a time (``Matcher``): no request
builds an array as long as the log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from auditor.web.index import Block, Snapshot
from verifier.audit.log import KINDS, MAX_REASON, REASON_RE

#: Rows per page: at most this many (a page is read back from disk line by line).
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
#: Bars of the chart, at most.
MAX_BUCKETS = 500
#: Longest tenant name or time text taken (a writer's tenant names are short).
MAX_TEXT = 256
#: Values of one repeatable parameter, at most.
MAX_VALUES = 64
#: Longest SQL text taken.
MAX_SQL = 4096
#: What the chart can count by.
GROUPS = ("reason", "tenant", "queue", "kind")


class FilterError(ValueError):
    """A bad query parameter: the message is one line naming it."""


@dataclass(frozen=True)
class Filter:
    reasons: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    status: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    sql: str | None = None

    def matcher(self, snap: Snapshot, selected: Selected | None = None) -> Matcher:
        """What matches in ``snap``; ``selected``: the records the ``sql`` chose (auditor/web/sql.py)."""
        ids = {int(t) for t in self.tenants if t.lstrip("-").isdigit()}
        return Matcher(
            self,
            [i for i, name in enumerate(snap.reasons) if name in self.reasons],
            [i for i, name in enumerate(snap.kinds) if name in self.kinds],
            [i for i, (tid, name) in enumerate(snap.tenant_keys) if tid in ids or name in self.tenants],
            selected,
        )


class Selected(Protocol):
    """The rows an SQL filter chose, a block at a time."""

    def block_mask(self, block: Block) -> np.ndarray[Any, np.dtype[np.bool_]]: ...


@dataclass(frozen=True)
class Matcher:
    """A ``Filter`` resolved against one snapshot's names: ``mask(block)`` says which of a block's rows match."""

    filter: Filter
    reasons: list[int]
    kinds: list[int]
    tenants: list[int]
    selected: Selected | None

    def mask(self, block: Block) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Which rows of ``block`` match: every given parameter must hold (a bad row matches only status=bad)."""
        f, c, good = self.filter, block.columns, block.good
        keep = np.ones(block.stop - block.start, dtype=bool)
        if f.status is not None:
            keep &= ~good if f.status == "bad" else good
        if f.reasons or f.kinds or f.tenants or f.since_ns is not None or f.until_ns is not None:
            keep &= good  # a bad row's reason column holds its problem, not a reason; it has no tenant, kind or time
        if f.reasons:
            keep &= np.isin(c["reason"], self.reasons)
        if f.kinds:
            keep &= np.isin(c["kind"], self.kinds)
        if f.tenants:
            keep &= np.isin(c["tenant"], self.tenants)
        if f.since_ns is not None:
            keep &= c["wall"] >= f.since_ns
        if f.until_ns is not None:
            keep &= c["wall"] < f.until_ns
        if self.selected is not None:
            keep &= self.selected.block_mask(block)
        return keep


@dataclass(frozen=True)
class Page:
    offset: int
    limit: int
    newest_first: bool


Params = Mapping[str, Sequence[str]]


def _one(params: Params, name: str) -> str | None:
    values = params.get(name, ())
    if len(values) > 1:
        raise FilterError(f"{name}: given {len(values)} times, takes one value")
    return values[0] if values else None


def _int(params: Params, name: str, default: int, low: int, high: int) -> int:
    text = _one(params, name)
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 12:  # "²".isdigit() is True, int("²") fails
        raise FilterError(f"{name}: a whole number from {low} to {high}, not {text[:40]!r}")
    value = int(text)
    if not low <= value <= high:
        raise FilterError(f"{name}: {value} is not in {low}..{high}")
    return value


def time_ns(name: str, text: str) -> int:
    """Nanoseconds since the epoch from ISO 8601 (``2024-05-01T12:00:00Z``; no zone means UTC)."""
    if len(text) > MAX_TEXT:
        raise FilterError(f"{name}: an ISO-8601 time, not {len(text):,} characters")
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FilterError(f"{name}: an ISO-8601 time such as 2024-05-01T12:00:00Z, not {text[:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def check_names(params: Params, allowed: Sequence[str]) -> None:
    for name in params:
        if name not in allowed:
            raise FilterError(f"unknown parameter {name[:40]!r} (this endpoint takes: {', '.join(allowed)})")


FILTER_NAMES = ("reason", "tenant", "kind", "status", "since", "until", "sql")


def parse_filter(params: Params) -> Filter:
    """The ``Filter`` the parameters ask for (other parameters are the caller's to check)."""
    for name in ("reason", "tenant", "kind"):
        if len(params.get(name, ())) > MAX_VALUES:
            raise FilterError(f"{name}: at most {MAX_VALUES} values")
    sql = _one(params, "sql") or None
    if sql is not None and len(sql) > MAX_SQL:
        raise FilterError(f"sql: at most {MAX_SQL:,} characters, not {len(sql):,}")
    if sql is not None and not sql.strip():
        sql = None
    reasons = tuple(r for r in params.get("reason", ()) if r)
    for reason in reasons:
        if len(reason) > MAX_REASON or not REASON_RE.match(reason):
            raise FilterError(f"reason: a reason code such as ADDR_NOT_PINNED, not {reason[:40]!r}")
    tenants = tuple(t for t in params.get("tenant", ()) if t)
    for tenant in tenants:
        if len(tenant) > MAX_TEXT:
            raise FilterError(f"tenant: a tenant id or name, not {len(tenant):,} characters")
    kinds = tuple(k for k in params.get("kind", ()) if k)
    for kind in kinds:
        if kind not in KINDS:
            raise FilterError(f"kind: one of {', '.join(KINDS)}, not {kind[:40]!r}")
    status = _one(params, "status") or None
    if status not in (None, "ok", "bad"):
        raise FilterError(f"status: ok or bad, not {status[:40]!r}")
    since, until = _one(params, "since") or None, _one(params, "until") or None
    since_ns = None if since is None else time_ns("since", since)
    until_ns = None if until is None else time_ns("until", until)
    if since_ns is not None and until_ns is not None and until_ns <= since_ns:
        raise FilterError("until: must be later than since")
    return Filter(reasons, tenants, kinds, status, since_ns, until_ns, sql)


def parse_page(params: Params) -> Page:
    order = _one(params, "order") or "desc"
    if order not in ("asc", "desc"):
        raise FilterError(f"order: asc or desc, not {order[:40]!r}")
    return Page(
        _int(params, "offset", 0, 0, 10**12), _int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT), order == "desc"
    )


def parse_chart(params: Params) -> tuple[str, int]:
    by = _one(params, "by") or "reason"
    if by not in GROUPS:
        raise FilterError(f"by: one of {', '.join(GROUPS)}, not {by[:40]!r}")
    return by, _int(params, "buckets", 60, 1, MAX_BUCKETS)
