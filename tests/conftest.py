"""Shared test helpers: config files, the CLI as a real subprocess, deadlines instead of sleeps."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SHARED_FEEDS = REPO.parent / "shared" / "corpus" / "feeds"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run long soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow soak test: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def write_config(path: Path, sources: list[dict[str, Any]], extra: str = "",
                 settings: dict[str, Any] | None = None) -> Path:
    """A sources.yaml for `sources` (dicts of id, url and optional keys), plus raw YAML `extra`."""
    settings = {"connect_timeout": "2s", "read_timeout": "2s", "fetch_deadline": "5s", **(settings or {})}
    lines = ["settings:", *(f"  {k}: {_yaml_value(v)}" for k, v in settings.items()),
             "sources:" if sources else "sources: []"]
    for source in sources:
        first = True
        for key, value in source.items():
            lines.append(f"  {'- ' if first else '  '}{key}: {_yaml_value(value)}")
            first = False
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def _yaml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    return str(value)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run `python -m monitor ARGS` as a real subprocess and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll `condition` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: wait() is the interval between polls
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        pause.wait(interval)
    raise AssertionError(f"condition not met within {timeout}s")


class FeedFarm:
    """Serves files from memory with ETag/Last-Modified and honours conditional GET, like a real site."""

    def __init__(self, server: Any):
        self.server = server
        self.hits: dict[str, int] = {}
        self.not_modified = 0

    def add(self, path: str, body: bytes, content_type: str = "application/rss+xml") -> str:
        import hashlib

        from werkzeug import Request, Response

        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'

        def handler(request: Request) -> Response:
            self.hits[path] = self.hits.get(path, 0) + 1
            if request.headers.get("If-None-Match") == etag:
                self.not_modified += 1
                return Response(status=304, headers={"ETag": etag})
            return Response(body, content_type=content_type,
                            headers={"ETag": etag, "Last-Modified": "Sat, 21 Nov 2026 10:00:00 GMT"})

        self.server.expect_request(path).respond_with_handler(handler)
        return self.server.url_for(path)


@pytest.fixture
def farm(httpserver: Any) -> FeedFarm:
    return FeedFarm(httpserver)


@pytest.fixture
def threaded_server() -> Any:
    """A real HTTP server on 127.0.0.1 that answers requests concurrently (pytest-httpserver's is serial)."""
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()
