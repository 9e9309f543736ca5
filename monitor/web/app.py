"""The ASGI application: settings, per-app state, error pages, and the routes of pages/api/feeds/ops.

Read-only by construction: connections are opened with `PRAGMA query_only`, and the guard answers
405 to anything but GET and HEAD. Request handlers are plain functions that Starlette runs in its
thread pool; each borrows one connection from the pool for the length of the request.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from monitor.errors import QueryError, StoreError
from monitor.store import Store
from monitor.store.queries import filter_choices
from monitor.web.filters import BadFilter
from monitor.web.highlight import segments
from monitor.web.settings import WebSettings

log = logging.getLogger(__name__)
CHOICES_TTL = 60.0  # seconds the search form's lists of rules/topics/countries are reused


class StorePool:
    """Read-only connections, one per concurrent request, reused between requests."""

    def __init__(self, path: Path):
        self.path = path
        self._idle: queue.SimpleQueue[Store] = queue.SimpleQueue()
        self._opened: list[Store] = []
        self._lock = threading.Lock()

    @contextmanager
    def store(self) -> Iterator[Store]:
        try:
            store = self._idle.get_nowait()
        except queue.Empty:
            store = self._open()
        try:
            yield store
        finally:
            self._idle.put(store)

    def _open(self) -> Store:
        store = Store.open(self.path, readonly=True)
        store.db.conn.execute("PRAGMA query_only = ON")
        with self._lock:
            self._opened.append(store)
        return store

    def close(self) -> None:
        with self._lock:
            for store in self._opened:
                store.close()
            self._opened.clear()


@dataclass
class Choices:
    """The search form's known values, re-read at most every CHOICES_TTL seconds."""

    values: dict[str, list[str]] = field(default_factory=dict)
    read_at: float = float("-inf")

    def get(self, store: Store) -> dict[str, list[str]]:
        if time.monotonic() - self.read_at > CHOICES_TTL:
            self.values, self.read_at = filter_choices(store), time.monotonic()
        return self.values


@dataclass
class Web:
    """Everything a request handler needs, hung on `app.state.web`."""

    settings: WebSettings
    pool: StorePool
    templates: Environment
    choices: Choices = field(default_factory=Choices)

    def render(self, request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        page = self.templates.get_template(name).render({"root": request.scope.get("root_path", ""), "nav": "",
                                                         **context})
        return HTMLResponse(page, status_code=status)


def web(request: Request) -> Web:
    return request.app.state.web


def template_environment() -> Environment:
    env = Environment(loader=PackageLoader("monitor.web", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["day"] = lambda value: (value or "")[:10]
    env.filters["moment"] = lambda value: (value or "").replace("T", " ").replace("Z", " UTC")
    env.filters["segments"] = segments
    env.filters["web_url"] = lambda url: str(url or "").lower().startswith(("http://", "https://"))
    return env


def create_app(settings: WebSettings) -> Starlette:
    from monitor.web import api, feeds, ops, pages
    from monitor.web.guard import Guard

    state = Web(settings, StorePool(settings.db_path), template_environment())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        state.pool.close()

    app = Starlette(
        routes=[*pages.routes(), *api.routes(), *feeds.routes(), *ops.routes()],
        middleware=[Middleware(Guard, settings=settings)],
        exception_handlers={HTTPException: _http_error, BadFilter: _bad_request, QueryError: _bad_request,
                            StoreError: _unavailable, sqlite3.Error: _unavailable},
        lifespan=lifespan,
    )
    app.state.web = state
    return app


# -- errors: JSON under /api/, plain text under /feeds/, a page elsewhere -------------------------


def error_response(request: Request, status: int, message: str) -> Response:
    path = request.url.path
    if path.startswith("/api/"):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    if path.startswith("/feeds/") or path in ("/metrics", "/healthz"):
        return PlainTextResponse(message + "\n", status_code=status)
    return web(request).render(request, "error.html", {"status": status, "message": message}, status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "nothing here: no such page or item"}
    return error_response(request, exc.status_code, messages.get(exc.status_code, exc.detail))


async def _bad_request(request: Request, exc: Exception) -> Response:
    return error_response(request, 400, str(exc))


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.error("%s: database unavailable: %s", request.url.path, exc)
    return error_response(request, 503, "the database is unavailable right now; try again shortly")
