"""``audit serve``: the web view's application (Starlette), over a ``LogIndex`` and a ``ChainWatch``.

JSON API (all GET; bad parameters answer 400 with ``{"error": "<one line>"}``):

============================= ==================================================================
``/api/about``                what this server shows: ``{"audit": bool, "campaign": bool}``
``/api/status``               rows indexed, bad rows, pending bytes, files, the chain's verdict, generation
``/api/facets``               reasons, tenants, kinds and queues with their counts (the filter's choices)
``/api/records``              a page of rows: filter (auditor/web/filters.py) + ``offset``, ``limit``, ``order``
``/api/chart``                counts per time bucket and group (``by`` reason|tenant|queue|kind, ``buckets``)
``/api/record/{row}``         one row in full: the record, its descriptor decoded again, its neighbours
``/api/campaign``             ``fuzz --serve``: per-class counts and rates, totals, escapes (campaign.py)
``/api/campaign/series``      descriptors/s per class, escapes and coverage over time
``/api/campaign/case/{n}``    escape ``n``'s reproducer, as a download (by index: no path in a URL)
============================= ==================================================================

The campaign routes answer 404 under ``audit serve``; under ``fuzz --serve``
the audit routes show the campaign's own audit log, once its files exist
(``--jobs`` workers create theirs as they start: 503 until then), or 404
with ``--no-audit-log``.

The page (``/``, auditor/web/static/) polls ``/api/status`` once a second
and reloads what changed when ``generation`` moves: new records appear
without reloading the page.  Polling rather than Server-Sent Events: one
small request a second is nothing for a local view, it holds no connection
open (so Ctrl-C stops the server at once), and it passes any proxy.

A follower thread indexes the files as they grow (every ``FOLLOW_S``); the
chain is re-verified beside it (auditor/web/chain.py).  Nothing read from a
record is ever executed or put into HTML: the API returns JSON and the page
writes text nodes only.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from auditor.web import filters
from auditor.web.campaign import CampaignBoard
from auditor.web.chain import ChainWatch
from auditor.web.decode import decode
from auditor.web.filters import FilterError
from auditor.web.guard import Guard
from auditor.web.index import BAD_LABEL, LogIndex, Row, Snapshot, queue_label
from auditor.web.sql import NotReady, Selection, SqlFilter
from verifier.audit.log import AuditError, format_wall
from verifier.audit.read import PathLike

#: How often the follower looks for new lines, in seconds (``audit follow`` polls every 0.05 s; a page every 1 s).
FOLLOW_S = 0.25
#: How often the first indexing pass of a large log reports, in seconds.
PROGRESS_S = 5.0
#: Rows either side of a record on its page.
NEIGHBOURS = 3
#: Series drawn in the chart; the rest are summed as "other".
TOP_SERIES = 8
#: Characters of a detail value or a bad line shown in a table row.
CELL_CHARS = 300

STATIC = ("auditor.web", "static")


def where_text(r: dict[str, Any]) -> str:
    """``nic0/tx0[17]`` for a descriptor, ``nic0 register``, ``nic0 iommu``, ``- pin``: as ``audit show``."""
    if r["kind"] in ("tx", "rx") and r["queue"] is not None:
        return queue_label(r) + ("" if r["ring_index"] is None else f"[{r['ring_index']}]")
    return f"{r['nic'] or '-'} {r['kind']}"


def _show(key: str, value: object) -> str:
    """A descriptor field as ``audit show`` prints it: addresses in hex (a hostile record may hold any JSON there)."""
    if key == "addr" and type(value) is int:
        return hex(value)
    return str(value)


def _cut(text: str) -> str:
    return text if len(text) <= CELL_CHARS else text[:CELL_CHARS] + "…"


def row_json(row: Row) -> dict[str, Any]:
    """A table row: good rows decoded, bad rows with their problem and the start of the line."""
    out: dict[str, Any] = {"row": row.row, "file": row.file, "line": row.line, "status": row.status}
    if row.record is None:
        out.update(problem=row.problem, raw=_cut(row.raw or ""), reason=BAD_LABEL)
        return out
    r = row.record
    desc = r["desc"]
    out.update(
        seq=r["seq"],
        wall=r["wall"],
        tenant=f"{r['tenant_name']}({r['tenant']})",
        where=where_text(r),
        kind=r["kind"],
        reason=r["reason"],
        desc=_cut(" ".join(f"{k}={_show(k, v)}" for k, v in desc.items() if k in ("addr", "length", "len", "cmd")))
        if isinstance(desc, dict)
        else (r["desc_hex"] or "-"),
        detail=_cut(" ".join(f"{k}={v}" for k, v in r["detail"].items())),
        protection=r["protection"],
    )
    return out


def _nice_bucket(span_ns: int, buckets: int) -> int:
    """A 1-2-5 bucket width in ns giving at most ``buckets`` bars over ``span_ns`` (at least 1 µs)."""
    target = max(1000, -(-span_ns // buckets))
    scale = 10 ** (len(str(target)) - 1)
    for step in (1, 2, 5, 10):
        if step * scale >= target:
            return step * scale
    return 10 * scale


class AuditView:
    """The state behind the routes: the index, the chain watch and the follower thread."""

    def __init__(self, names: Iterable[PathLike], progress: Callable[[str], None] | None = None) -> None:
        self.names = list(names)
        self.progress = progress
        self.index = LogIndex(self.names)
        self.chain = ChainWatch(self.names)
        self.sql = SqlFilter(self.names)
        self.indexed_once = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="audit-serve-follow", daemon=True)

    def start(self) -> None:
        self._thread.start()  # the chain watch starts after the first pass: the two would share one GIL

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.chain.stop()
        self.sql.close()
        self.index.close()

    def _follow(self) -> None:
        started = last_said = time.monotonic()
        while not self._stop.is_set():
            if self.index.refresh():
                self.chain.poke()
                if self.progress is not None and not self.indexed_once and time.monotonic() - last_said >= PROGRESS_S:
                    last_said = time.monotonic()
                    self.progress(f"indexing: {self.index.progress().rows:,} rows so far")
                continue  # more may be waiting (refresh reads a bounded amount per file): no pause until caught up
            if not self.indexed_once:  # a pass that found nothing new: every file read to its end
                if self.progress is not None:
                    p = self.index.progress()
                    self.progress(f"indexed {p.rows:,} rows ({p.bad:,} bad) in {time.monotonic() - started:.1f} s")
                self.indexed_once = True
                self.chain.start()
            self._stop.wait(FOLLOW_S)

    # -- endpoints -----------------------------------------------------------------------
    def status(self, request: Request) -> dict[str, Any]:
        filters.check_names(request.query_params, ("token",))
        p = self.index.progress()
        return {
            "rows": p.rows,
            "bad": p.bad,
            "pending_bytes": p.pending_bytes,
            "files": p.files,
            "notes": p.notes,
            "generation": self.index.generation,
            "indexing": not self.indexed_once,
            "chain": self.chain.status.as_json(),
        }

    def facets(self, request: Request) -> dict[str, Any]:
        filters.check_names(request.query_params, ("token",))
        snap = self.index.snapshot()
        names = {"reason": snap.reasons, "tenant": snap.tenants, "kind": snap.kinds, "queue": snap.queues}
        counts = {column: np.zeros(len(names[column]), np.int64) for column in names}
        bad = 0
        for block in snap.blocks:  # a block at a time: no temporary as long as the log
            good = block.good
            bad += int(good.size - np.count_nonzero(good))
            for column, total in counts.items():
                total += np.bincount(block.columns[column][good], minlength=total.size)[: total.size]

        def counted(column: str, names: list[str]) -> list[tuple[int, str, int]]:
            return sorted(((i, names[i], int(n)) for i, n in enumerate(counts[column])), key=lambda t: (-t[2], t[1]))

        return {
            "rows": snap.rows,
            "bad": bad,
            "reasons": [{"name": name, "count": n} for _, name, n in counted("reason", snap.reasons)],
            "tenants": [
                {"label": name, "id": snap.tenant_keys[i][0], "name": snap.tenant_keys[i][1], "count": n}
                for i, name, n in counted("tenant", snap.tenants)
            ],
            "kinds": [{"name": name, "count": n} for _, name, n in counted("kind", snap.kinds)],
            "queues": [{"name": name, "count": n} for _, name, n in counted("queue", snap.queues)],
        }

    def records(self, request: Request) -> dict[str, Any]:
        params = _multi(request)
        filters.check_names(params, (*filters.FILTER_NAMES, "offset", "limit", "order", "token"))
        chosen = filters.parse_filter(params)
        page = filters.parse_page(params)
        snap = self.index.snapshot()
        selected = self._selected(chosen, snap)
        match = chosen.matcher(snap, selected)
        counts = [int(np.count_nonzero(match.mask(block))) for block in snap.blocks]
        shown = _page(snap, match, counts, page)
        out = {
            "total": sum(counts),
            "rows_in_log": snap.rows,
            "offset": page.offset,
            "limit": page.limit,
            "order": "desc" if page.newest_first else "asc",
            "rows": [row_json(r) for r in self.index.rows(shown)],
        }
        if selected is not None:
            out["sql_records"] = selected.records  # what the SQL ran over (a live log may have grown since)
        return out

    def _selected(self, chosen: filters.Filter, snap: Snapshot) -> Selection | None:
        return None if chosen.sql is None else self.sql.select(chosen.sql, snap, snap.keys)

    def chart(self, request: Request) -> dict[str, Any]:
        params = _multi(request)
        filters.check_names(params, (*filters.FILTER_NAMES, "by", "buckets", "token"))
        chosen = filters.parse_filter(params)
        by, buckets = filters.parse_chart(params)
        snap = self.index.snapshot()
        match = chosen.matcher(snap, self._selected(chosen, snap))
        names = _group_names(snap, by)
        # Two passes, a block at a time: the time span and each group's total, then the counts per bucket.
        totals = np.zeros(len(names), np.int64)
        low, high, seen = None, None, 0
        for block in snap.blocks:
            keep = match.mask(block) & block.good
            if not keep.any():
                continue
            walls = block.columns["wall"][keep]
            low = int(walls.min()) if low is None else min(low, int(walls.min()))
            high = int(walls.max()) if high is None else max(high, int(walls.max()))
            totals += np.bincount(block.columns[by][keep], minlength=totals.size)[: totals.size]
            seen += int(walls.size)
        if low is None or high is None:
            return {"by": by, "total": 0, "start": None, "bucket_ns": None, "buckets": 0, "series": []}
        bucket_ns = _nice_bucket(high - low + 1, buckets)
        start = low - low % bucket_ns
        nbuckets = (high - start) // bucket_ns + 1
        order = [int(k) for k in np.argsort(-totals, kind="stable") if totals[k] > 0]
        lines = min(len(order), TOP_SERIES) + (len(order) > TOP_SERIES)  # the top series, then "(other)"
        line_of = np.full(max(len(names), 1), TOP_SERIES, np.int64)
        line_of[order[:TOP_SERIES]] = np.arange(min(len(order), TOP_SERIES))
        grid = np.zeros(lines * nbuckets, np.int64)
        for block in snap.blocks:
            keep = match.mask(block) & block.good
            if not keep.any():
                continue
            which = (block.columns["wall"][keep] - start) // bucket_ns
            grid += np.bincount(line_of[block.columns[by][keep]] * nbuckets + which, minlength=grid.size)
        table = grid.reshape(lines, nbuckets)
        series = [
            {"key": names[k], "total": int(totals[k]), "counts": table[i].tolist()}
            for i, k in enumerate(order[:TOP_SERIES])
        ]
        if len(order) > TOP_SERIES:
            rest = int(totals[order[TOP_SERIES:]].sum())
            series.append({"key": "(other)", "total": rest, "counts": table[TOP_SERIES].tolist()})
        return {
            "by": by,
            "total": seen,
            "start": format_wall(start),
            "start_ns": start,
            "bucket_ns": bucket_ns,
            "buckets": nbuckets,
            "series": series,
        }

    def record(self, request: Request) -> dict[str, Any]:
        filters.check_names(request.query_params, ("token",))
        text = request.path_params["row"]
        if not (text.isascii() and text.isdigit()) or len(text) > 12:
            raise FilterError(f"row: a row number, not {text[:40]!r}")
        row = int(text)
        total = self.index.snapshot().rows
        if row >= total:
            raise LookupError(f"row {row}: no such row (the log has {total:,} rows)")
        one = self.index.read(row)
        near = range(max(0, row - NEIGHBOURS), min(total, row + NEIGHBOURS + 1))
        return {
            **row_json(one),
            "record": one.record,
            "raw": one.raw,
            "descriptor": None if one.record is None else decode(one.record),
            "neighbours": [row_json(r) for r in self.index.rows(i for i in near if i != row)],
            "rows_in_log": total,
        }


def _page(snap: Snapshot, match: filters.Matcher, counts: list[int], page: filters.Page) -> list[int]:
    """The rows of ``page`` among the matches (``counts[b]`` in block ``b``): masks only of the blocks it spans."""
    order = range(len(snap.blocks) - 1, -1, -1) if page.newest_first else range(len(snap.blocks))
    skip, want, out = page.offset, page.limit, []
    for b in order:
        if want == 0:
            break
        if skip >= counts[b]:
            skip -= counts[b]
            continue
        block = snap.blocks[b]
        rows = np.flatnonzero(match.mask(block)) + block.start
        if page.newest_first:
            rows = rows[::-1]
        taken = rows[skip : skip + want]
        out += taken.tolist()
        want -= len(taken)
        skip = 0
    return out


class NotYet(RuntimeError):
    """The campaign's audit log does not exist yet (answered 503: the page tries again a second later)."""


class LateAudit:
    """The audit view of a campaign's log, built on the first request that finds every file of it there.

    ``fuzz --jobs N`` workers open their logs as they start, after the server
    does; ``audit serve`` builds its view at once instead (a missing file is
    then a usage error).  ``names`` empty: the campaign keeps no audit log.
    """

    def __init__(
        self, names: Iterable[PathLike], progress: Callable[[str], None] | None = None, now: bool = False
    ) -> None:
        self.names = list(names)
        self.progress = progress
        self._lock = threading.Lock()
        self._stopped = False
        #: built at once when ``now`` (``audit serve``: a missing or foreign file is the caller's error, at once)
        self._view: AuditView | None = AuditView(self.names, progress) if now else None

    def start(self) -> None:
        """Start the view built at once (a late one starts when it is built)."""
        if self._view is not None:
            self._view.start()

    def get(self) -> AuditView:
        if not self.names:
            raise LookupError("no audit log: the campaign runs with --no-audit-log")
        with self._lock:
            if self._view is None:
                if self._stopped:
                    raise NotYet("the server is stopping")
                try:
                    view = AuditView(self.names, self.progress)
                except FileNotFoundError as e:
                    raise NotYet(f"waiting for the campaign's audit log ({e})") from None
                except AuditError as e:
                    raise NotYet(f"the campaign's audit log cannot be read: {e}") from None
                view.start()
                self._view = view
            return self._view

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            view = self._view
        if view is not None:
            view.stop()


def _group_names(snap: Snapshot, by: str) -> list[str]:
    return {"reason": snap.reasons, "tenant": snap.tenants, "queue": snap.queues, "kind": snap.kinds}[by]


def _multi(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        out.setdefault(key, []).append(value)
    return out


def _json(handler: Any) -> Any:
    def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(handler(request))
        except FilterError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        except NotReady as e:  # the SQL filter's first load of a large log: accepted, not done; the page asks again
            return JSONResponse({"error": str(e), "retry": True}, status_code=202, headers={"Retry-After": "1"})
        except LookupError as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        except NotYet as e:
            return JSONResponse({"error": str(e)}, status_code=503, headers={"retry-after": "1"})
        except (
            OSError
        ) as e:  # a file of the log vanished or became unreadable under us: this answer fails, not the server
            return JSONResponse({"error": f"cannot read the log: {e.strerror or e}"}, status_code=500)

    return endpoint


def make_app(
    names: Iterable[PathLike],
    token: str | None = None,
    loopback: bool = True,
    progress: Callable[[str], None] | None = None,
    board: CampaignBoard | None = None,
) -> Guard:
    """The web view of the logs ``names`` (raises ``AuditFormatError`` for a file that is not an audit log).

    The follower and the chain watch run while the application's lifespan
    does (uvicorn, or ``with TestClient(app)``).  ``progress``: told how the
    first indexing pass goes (every ``PROGRESS_S``, and when it is done).
    ``board``: a running campaign's (``fuzz --serve``): its view is served
    too, and the logs are the campaign's own, served once they exist
    (``LateAudit``; ``names`` may then be empty).
    """
    late = LateAudit(names, progress, now=board is None)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        late.start()
        try:
            yield
        finally:
            late.stop()

    static = StaticFiles(packages=[STATIC])
    index_html = os.path.join(static.get_directories(packages=[STATIC])[0], "index.html")

    def page(request: Request) -> Response:
        return FileResponse(index_html, media_type="text/html")

    def audit(name: str) -> Any:
        return _json(lambda request: getattr(late.get(), name)(request))

    def about(request: Request) -> dict[str, Any]:
        filters.check_names(request.query_params, ("token",))
        return {"audit": bool(late.names), "campaign": board is not None}

    def the_board() -> CampaignBoard:
        if board is None:
            raise LookupError("no campaign: this server was started by 'audit serve', not 'fuzz --serve'")
        return board

    def campaign(request: Request) -> dict[str, Any]:
        filters.check_names(request.query_params, ("token",))
        return the_board().snapshot()

    def series(request: Request) -> dict[str, Any]:
        filters.check_names(request.query_params, ("token",))
        return the_board().series()

    def case(request: Request) -> Response:
        try:
            filters.check_names(request.query_params, ("token",))
            n = _index(request.path_params["n"])
            name, data = the_board().case_bytes(n)
        except FilterError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        except LookupError as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        except OSError as e:
            return JSONResponse({"error": f"cannot read the reproducer: {e.strerror or e}"}, status_code=500)
        return Response(
            data,
            media_type="application/json",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/about", _json(about)),
            Route("/api/status", audit("status")),
            Route("/api/facets", audit("facets")),
            Route("/api/records", audit("records")),
            Route("/api/chart", audit("chart")),
            Route("/api/record/{row}", audit("record")),
            Route("/api/campaign", _json(campaign)),
            Route("/api/campaign/series", _json(series)),
            Route("/api/campaign/case/{n}", case),
            Mount("/static", app=static, name="static"),
        ],
        lifespan=lifespan,
    )
    return Guard(app, token=token, loopback=loopback)


def _index(text: str) -> int:
    """A path's index: decimal digits only, short (a URL is hostile)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise FilterError(f"index: a number, not {text[:40]!r}")
    return int(text)
