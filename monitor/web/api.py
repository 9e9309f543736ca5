"""The JSON API: the same filters as the search page, paginated by limit/offset with a `next` link."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from monitor.models import iso, utcnow
from monitor.store import Store
from monitor.store.queries import MatchView, item_detail, stats
from monitor.web.app import web
from monitor.web.filters import offset_number, page_number, parse_filters
from monitor.web.pages import timeline_chart, timeline_params
from monitor.web.results import fetch_page
from monitor.web.sources import source_rows

DEFAULT_LIMIT, MAX_LIMIT = 50, 500
MAX_OFFSET = 10_000  # deeper than this, narrow the filters (since/until) or use `diplowatch export`


def routes() -> list[BaseRoute]:
    return [
        Route("/api/items", items, methods=["GET"]),
        Route("/api/items/{item_id:int}", item, methods=["GET"]),
        Route("/api/sources", sources, methods=["GET"]),
        Route("/api/stats", statistics, methods=["GET"]),
        Route("/api/timeline", timeline, methods=["GET"]),
    ]


def items(request: Request) -> JSONResponse:
    filters = parse_filters(request.query_params)
    limit = page_number(request.query_params, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    offset = offset_number(request.query_params, MAX_OFFSET)
    with web(request).pool.store() as store:
        page = fetch_page(store, filters, limit, offset)
    following = offset + limit
    next_url = None
    if page.more and following <= MAX_OFFSET:
        next_url = f"{request.url.path}?{filters.query_string(limit=limit, offset=following)}"
    rows = [_with_matches(row, page.matches.get(row["id"], [])) for row in page.rows]
    return JSONResponse({"items": rows, "limit": limit, "offset": offset, "next": next_url})


def _with_matches(row: dict[str, Any], matches: list[MatchView]) -> dict[str, Any]:
    return {**row, "matches": [_match(m) for m in matches]}


def _match(m: MatchView) -> dict[str, Any]:
    return {"rule": m.rule, "topic": m.topic, "snippet": m.snippet, "marks": [list(s) for s in m.marks],
            "terms": list(m.terms), "matched_at": m.matched_at}


def item(request: Request) -> JSONResponse:
    with web(request).pool.store() as store:
        detail = item_detail(store, request.path_params["item_id"])
    if detail is None:
        raise HTTPException(404)
    body = {key: value for key, value in detail.item.items() if key != "sort_time"}
    body["matches"] = [_match(m) for m in detail.matches]
    body["entities"] = {kind: list(values) for kind, values in detail.entities.items()}
    body["versions"] = [asdict(v) for v in detail.versions[:-1]]  # earlier texts, oldest first
    return JSONResponse(body)


def sources(request: Request) -> JSONResponse:
    state = web(request)
    with state.pool.store() as store:
        rows = source_rows(store, state.settings.config)
    return JSONResponse({"sources": rows})


def statistics(request: Request) -> JSONResponse:
    state = web(request)
    with state.pool.store() as store:
        body = state.summaries.get("stats", lambda: _stats(store))
    return JSONResponse(body)


def _stats(store: Store) -> dict[str, Any]:
    now = utcnow()
    return {**stats(store, iso(now - timedelta(days=7)) or ""), "generated_at": iso(now)}


def timeline(request: Request) -> JSONResponse:
    by, weeks = timeline_params(request)
    chart = timeline_chart(request, by, weeks)
    series = [
        {"name": s.name, "total": s.total, "counts": [row[i] for _, row in chart.table]}
        for i, s in enumerate(chart.series)
    ]
    return JSONResponse({"by": by, "weeks": list(chart.weeks), "series": series})
