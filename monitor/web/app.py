"""The ASGI application: per-app state (connections, templates, summaries), error pages, the routes.

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
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

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
T = TypeVar("T")
CACHE_SECONDS = 60.0  # how long whole-database summaries (form choices, stats, timeline) are reused
CACHE_KEYS = 256


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
class Summaries:
    """Answers that read the whole database (seconds at a million items), reused for CACHE_SECONDS.

    Only for summaries, whose being a minute old harms no one; search results are never cached.
    """

    seconds: float = CACHE_SECONDS
    _values: dict[Hashable, tuple[float, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            hit = self._values.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.seconds:
            return hit[1]
        value = compute()
        with self._lock:
            if len(self._values) >= CACHE_KEYS:
                self._values.clear()
            self._values[key] = (time.monotonic(), value)
        return value


@dataclass
class Web:
    """Everything a request handler needs, hung on `app.state.web`."""

    settings: WebSettings
    pool: StorePool
    templates: Environment
    summaries: Summaries = field(default_factory=Summaries)

    def choices(self, store: Store) -> dict[str, list[str]]:
        """The search form's known rules, topics, sources, countries, organisations."""
        return self.summaries.get("choices", lambda: filter_choices(store))

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
