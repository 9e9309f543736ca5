"""The HTML pages: search, one item, the timeline, the sources. Server-rendered, no script."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from monitor.errors import QueryError
from monitor.models import utcnow
from monitor.store.queries import TIMELINE_KINDS, item_detail, weekly_matches
from monitor.web.app import web
from monitor.web.chart import monday, week_range, weekly_chart
from monitor.web.diff import revisions
from monitor.web.filters import BadFilter, Filters, page_number, parse_filters
from monitor.web.highlight import highlighted, term_pattern
from monitor.web.results import fetch_page, result_views
from monitor.web.sources import source_rows

PAGE_SIZE = 25
MAX_PAGE = 400  # 10,000 results deep; past that, narrow the filters or use `diplowatch export`
DEFAULT_WEEKS, MAX_WEEKS = 26, 260


def routes() -> list[BaseRoute]:
    return [
        Route("/", search_page, methods=["GET"], name="search"),
        Route("/items/{item_id:int}", item_page, methods=["GET"], name="item"),
        Route("/timeline", timeline_page, methods=["GET"], name="timeline"),
        Route("/sources", sources_page, methods=["GET"], name="sources"),
    ]


def search_page(request: Request) -> Response:
    state = web(request)
    context: dict[str, Any] = {"nav": "search", "filters": Filters(), "results": [], "page": 1, "more": False,
                               "error": None}
    try:
        context["filters"] = filters = parse_filters(request.query_params)
        context["page"] = page = page_number(request.query_params, maximum=MAX_PAGE)
    except BadFilter as e:
        return _search_error(request, context, str(e))
    with state.pool.store() as store:
        context["choices"] = state.choices(store)
        try:
            result = fetch_page(store, filters, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        except QueryError as e:
            return _search_error(request, context, str(e))
    context.update(results=result_views(result, filters.q), more=result.more, first=result.offset + 1)
    return state.render(request, "search.html", context)


def _search_error(request: Request, context: dict[str, Any], message: str) -> Response:
    state = web(request)
    if "choices" not in context:
        with state.pool.store() as store:
            context["choices"] = state.choices(store)
    context["error"] = message
    return state.render(request, "search.html", context, status=400)


def item_page(request: Request) -> Response:
    state = web(request)
    with state.pool.store() as store:
        detail = item_detail(store, request.path_params["item_id"])
    if detail is None:
        raise HTTPException(404)
    pattern = term_pattern(request.query_params.get("q", "")[:500])
    item = detail.item
    return state.render(request, "item.html", {
        "nav": "item", "detail": detail, "item": item, "revisions": revisions(detail.versions),
        "title": highlighted(item["title"], pattern), "summary": highlighted(item["summary"], pattern),
    })


def timeline_page(request: Request) -> Response:
    state = web(request)
    by, weeks = timeline_params(request)
    chart = timeline_chart(request, by, weeks)
    return state.render(request, "timeline.html", {
        "nav": "timeline", "chart": chart, "by": by, "weeks": weeks, "kinds": TIMELINE_KINDS,
        "week_choices": (8, 13, 26, 52, 104),
    })


def timeline_params(request: Request) -> tuple[str, int]:
    by = request.query_params.get("by", "topic")
    if by not in TIMELINE_KINDS:
        raise BadFilter(f"by: {by!r} is not one of {', '.join(TIMELINE_KINDS)}")
    return by, page_number(request.query_params, "weeks", DEFAULT_WEEKS, MAX_WEEKS)


def timeline_chart(request: Request, by: str, weeks: int) -> Any:
    today = utcnow().date()
    span = week_range(today, weeks)
    until = (monday(today) + timedelta(days=7)).isoformat()
    state = web(request)
    with state.pool.store() as store:
        counts = state.summaries.get(("timeline", by, span[0], until),
                                     lambda: weekly_matches(store, by, span[0], until))
    return weekly_chart(counts, span)


def sources_page(request: Request) -> Response:
    state = web(request)
    with state.pool.store() as store:
        rows = source_rows(store, state.settings.config)
    return state.render(request, "sources.html", {"nav": "sources", "sources": rows})
