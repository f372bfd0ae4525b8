"""The dashboard's plain HTTP endpoints: the page, ``/stats``, ``/history`` and ``/trace``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ._hub import Hub
from ._query import FILTER_PARAMS, EventQuery, QueryError, check_params, parse_int
from ._security import TOKEN_COOKIE
from ._serialize import to_jsonable
from ._sse import json_response
from ._trace import build_trace

__all__ = ["HISTORY_MAX", "TRACE_MAX", "history", "index", "stats", "trace"]

HISTORY_MAX: Final = 1000
"""The largest ``limit`` of ``/history``."""

TRACE_MAX: Final = 2000
"""The most events a ``/trace`` answer holds (the newest are kept)."""

_HISTORY_DEFAULT: Final = 100
_dumps = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode

Endpoint = Callable[[Request], Any]


def index(hub: Hub) -> Endpoint:
    """``GET /``: the page; ``?token=`` is traded for a cookie and dropped from the URL."""

    async def endpoint(request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None and hub.token.required and hub.token.check(token):
            # Trade the token in the address bar for a cookie, then drop it
            # from the URL (and so from the history and the Referer).
            url = request.url.remove_query_params("token")
            redirect = RedirectResponse(str(url), status_code=303)
            redirect.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
            return redirect
        return Response(
            hub.index_html,
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )

    return endpoint


def stats(hub: Hub) -> Endpoint:
    """``GET /stats``: ``bus.stats()``, the dashboard's counters and the health sources."""

    async def endpoint(request: Request) -> Response:
        try:
            check_params(request.query_params, ("token",))
        except QueryError as exc:
            return json_response(exc.body(), 400)
        data = to_jsonable(hub.bus.stats())
        data["dashboard"] = hub.stats()
        data["health"] = hub.health()
        return json_response(data)

    return endpoint


def _page(
    matched: list[Any], after: int | None, before: int | None, limit: int
) -> tuple[list[Any], dict[str, int] | None]:
    has_more = len(matched) > limit
    if after is not None and before is None:
        page = matched[:limit]
        return page, ({"after": page[-1].seq} if has_more else None)
    page = matched[len(matched) - limit :]
    return page, ({"before": page[0].seq} if has_more else None)


def history(hub: Hub) -> Endpoint:
    """``GET /history``: retained events, filtered and paged."""

    async def endpoint(request: Request) -> Response:
        params = request.query_params
        try:
            check_params(params, (*FILTER_PARAMS, "limit", "before", "after", "token"))
            query = EventQuery(params, hub.bus, hub.options.event_types)
            before = parse_int(params.get("before"), "before")
            after = parse_int(params.get("after"), "after")
            limit = parse_int(params.get("limit"), "limit", minimum=1, maximum=HISTORY_MAX)
        except QueryError as exc:
            return json_response(exc.body(), 400)
        limit = limit or _HISTORY_DEFAULT
        bus = hub.bus
        last_seq = bus.last_seq
        retained = bus.history(correlation_id=query.correlation_id)
        matched = [
            e
            for e in retained
            if (after is None or e.seq > after)
            and (before is None or e.seq < before)
            and query.matches(e)
        ]
        page, nxt = _page(matched, after, before, limit)
        to_json = hub.encoder.to_json
        meta = {
            "count": len(page),
            "has_more": len(matched) > limit,
            "next": nxt,
            "last_seq": last_seq,
            "oldest_seq": retained[0].seq if retained else None,
            "incarnation": hub.incarnation,
        }
        body = '{"events":[' + ",".join(to_json(e) for e in page) + "]," + _dumps(meta)[1:]
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    return endpoint


def trace(hub: Hub) -> Endpoint:
    """``GET /trace``: one run as a causation tree (see :func:`build_trace`)."""

    async def endpoint(request: Request) -> Response:
        params = request.query_params
        try:
            check_params(params, ("correlation_id", "event", "token"))
            run, events = _run_of(hub, params.get("correlation_id"), params.get("event"))
        except QueryError as exc:
            return json_response(exc.body(), 400)
        if events is None:
            return json_response({"error": run, "status": 404}, 404)
        data = build_trace(events[-TRACE_MAX:], lambda e: json.loads(hub.encoder.to_json(e)))
        correlation_id = run if params.get("correlation_id") else _correlation(events)
        lost = None if correlation_id is None else hub.bus.run_trimmed_upto(correlation_id)
        data["correlation_id"] = correlation_id
        # Older events of the run are gone: cut here (TRACE_MAX) or by the history's limits.
        data["truncated"] = len(events) > TRACE_MAX or lost is not None
        data["lost_upto_seq"] = lost
        return json_response(data)

    return endpoint


def _correlation(events: list[Any]) -> str | None:
    return events[0].correlation_id if events else None


def _run_of(
    hub: Hub, correlation_id: str | None, event_id: str | None
) -> tuple[str, list[Any] | None]:
    """The run's events, or an error text and ``None`` when nothing matches."""
    if (correlation_id is None) == (event_id is None):
        raise QueryError(
            "correlation_id",
            "give exactly one of correlation_id (a run) or event (an event id)",
            ["correlation_id", "event"],
        )
    bus = hub.bus
    if correlation_id is not None:
        events = bus.history(correlation_id=correlation_id)
        if not events:
            return f"no retained events of run {correlation_id[:80]!r}", None
        return correlation_id, events
    retained = bus.history()
    found = next((e for e in retained if e.id == event_id), None)
    if found is None:
        return f"no retained event with id {str(event_id)[:80]!r}", None
    if found.correlation_id is not None:
        return found.correlation_id, bus.history(correlation_id=found.correlation_id)
    return str(event_id), _causal_family(retained, found)


def _causal_family(retained: list[Any], found: Any) -> list[Any]:
    """The events of the causation tree that holds ``found`` (for uncorrelated events)."""
    by_id = {e.id: e for e in retained}
    root = found
    seen = {root.id}
    while root.parent_id in by_id and root.parent_id not in seen:
        root = by_id[root.parent_id]
        seen.add(root.id)
    family = {root.id}
    for e in retained:  # oldest first: a child comes after its parent
        if e.parent_id in family:
            family.add(e.id)
    return [e for e in retained if e.id in family]
