"""Atom feeds of a topic or of any saved search, so analysts can follow them in their feed reader."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from monitor.models import iso, utcnow
from monitor.web.app import web
from monitor.web.filters import Filters, parse_filters
from monitor.web.results import fetch_page

FEED_SIZE = 50
ATOM = "application/atom+xml; charset=utf-8"
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def routes() -> list[BaseRoute]:
    return [
        Route("/feeds/topic/{topic}.atom", topic_feed, methods=["GET"]),
        Route("/feeds/search.atom", search_feed, methods=["GET"]),
    ]


def topic_feed(request: Request) -> Response:
    topic = request.path_params["topic"]
    return _feed(request, Filters(topic=(topic,)), f"diplowatch: {topic}")


def search_feed(request: Request) -> Response:
    filters = parse_filters(request.query_params)
    described = ", ".join(f"{k}={v}" for k, v in filters.pairs()) or "everything"
    return _feed(request, filters, f"diplowatch: {described}")


def _feed(request: Request, filters: Filters, title: str) -> Response:
    state = web(request)
    with state.pool.store() as store:
        page = fetch_page(store, filters, FEED_SIZE)
    base = str(request.base_url).rstrip("/")
    entries = [_entry(row, base) for row in page.rows]
    body = state.templates.get_template("feed.atom").render(
        title=title, self_url=str(request.url), alternate=f"{base}/?{filters.query_string()}",
        feed_id=f"urn:diplowatch:feed:{hashlib.sha256(str(request.url).encode()).hexdigest()[:32]}",
        updated=max((e["updated"] for e in entries), default=iso(utcnow())), entries=entries,
    )
    return _conditional(request, _NOT_XML.sub("", body))


def _entry(row: dict[str, Any], base: str) -> dict[str, Any]:
    guid = hashlib.sha256(f"{row['source']}\n{row['guid']}".encode()).hexdigest()[:32]
    return {**row, "entry_id": f"urn:diplowatch:item:{guid}", "page": f"{base}/items/{row['id']}",
            "updated": row["updated"] or row["first_seen"]}


def _conditional(request: Request, body: str) -> Response:
    etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, media_type=ATOM, headers={"ETag": etag})
