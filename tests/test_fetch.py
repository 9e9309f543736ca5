"""fetch.py against a real HTTP server on 127.0.0.1 (pytest-httpserver) and raw sockets."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import zlib
from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from monitor.config import Settings, Source
from monitor.errors import Blocked, FetchError, Forbidden, RateLimited
from monitor.fetch import Fetcher, parse_retry_after
from monitor.models import Fetched, Validators

FEED = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"


def fetch(url: str, validators: Validators | None = None, **settings: object) -> Fetched:
    async def go() -> Fetched:
        async with Fetcher(Settings(**{"read_timeout": 2, "connect_timeout": 2, **settings})) as fetcher:
            return await fetcher.fetch(Source(id="s", url=url), validators or Validators())

    return asyncio.run(go())


def test_sends_user_agent_and_reads_validators(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed", headers={"User-Agent": Settings().user_agent}).respond_with_data(
        FEED, content_type="application/rss+xml",
        headers={"ETag": '"v1"', "Last-Modified": "Sat, 21 Nov 2026 10:00:00 GMT"})
    got = fetch(httpserver.url_for("/feed"))
    assert got.status == 200 and got.body == FEED
    assert got.validators == Validators('"v1"', "Sat, 21 Nov 2026 10:00:00 GMT")


def test_conditional_get_gets_304(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed", headers={"If-None-Match": '"v1"', "If-Modified-Since": "yesterday"}
                              ).respond_with_data("", status=304)
    got = fetch(httpserver.url_for("/feed"), Validators('"v1"', "yesterday"))
    assert got.not_modified and got.body == b""


def test_gzip_body_is_inflated(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed").respond_with_data(gzip.compress(FEED), headers={"Content-Encoding": "gzip"})
    assert fetch(httpserver.url_for("/feed")).body == FEED


def test_gzip_without_header_is_inflated(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed").respond_with_data(gzip.compress(FEED), content_type="application/rss+xml")
    assert fetch(httpserver.url_for("/feed")).body == FEED


def test_oversized_body_is_cut(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/big").respond_with_data(b"x" * 300_000)
    with pytest.raises(FetchError, match="cap"):
        fetch(httpserver.url_for("/big"), max_body=100_000)


def test_gzip_bomb_is_cut_without_inflating_it(httpserver: HTTPServer) -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    body = bomb.compress(b"\0" * 50_000_000) + bomb.flush()  # 50 MB of zeros in ~50 KB
    httpserver.expect_request("/bomb").respond_with_data(body, headers={"Content-Encoding": "gzip"})
    with pytest.raises(FetchError, match="cap"):
        fetch(httpserver.url_for("/bomb"), max_body=1_000_000)


@pytest.mark.parametrize(("status", "error", "words"), [
    (403, Forbidden, "forbidden (HTTP 403)"),
    (401, Forbidden, "forbidden (HTTP 401)"),
    (404, FetchError, "not found (HTTP 404)"),
    (410, FetchError, "not found (HTTP 410)"),
    (500, FetchError, "HTTP 500"),
])
def test_http_errors_are_named(httpserver: HTTPServer, status: int, error: type, words: str) -> None:
    httpserver.expect_request("/x").respond_with_data("nope", status=status)
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        fetch(httpserver.url_for("/x"))


def test_429_carries_retry_after(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_data("slow down", status=429, headers={"Retry-After": "120"})
    with pytest.raises(RateLimited) as caught:
        fetch(httpserver.url_for("/x"))
    assert caught.value.retry_after == 120


def test_challenge_page_with_503_is_blocked(httpserver: HTTPServer) -> None:
    page = "<html><head><title>Just a moment...</title></head><body>cf_chl_opt</body></html>"
    httpserver.expect_request("/x").respond_with_data(page, status=503, content_type="text/html")
    with pytest.raises(Blocked, match="Cloudflare"):
        fetch(httpserver.url_for("/x"))


def test_redirect_loop(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/a").respond_with_response(Response(status=302, headers={"Location": "/b"}))
    httpserver.expect_request("/b").respond_with_response(Response(status=302, headers={"Location": "/a"}))
    with pytest.raises(FetchError, match="redirect"):
        fetch(httpserver.url_for("/a"))


def test_redirect_to_other_scheme(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/a").respond_with_response(Response(status=302, headers={"Location": "file:///etc/passwd"}))
    with pytest.raises(FetchError, match="not http"):
        fetch(httpserver.url_for("/a"))


def test_redirect_followed_and_final_url_kept(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/old").respond_with_response(Response(status=301, headers={"Location": "/new"}))
    httpserver.expect_request("/new").respond_with_data(FEED)
    assert fetch(httpserver.url_for("/old")).url.endswith("/new")


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(FetchError, match="cannot connect"):
            fetch(f"http://127.0.0.1:{port}/feed")


def test_unresolvable_host() -> None:
    with pytest.raises(FetchError, match="cannot"):
        fetch("http://no-such-host.invalid/feed")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/feed"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_server_that_never_answers_times_out(silent_server: str) -> None:
    with pytest.raises(FetchError, match=r"read timeout|too slow"):
        fetch(silent_server, read_timeout=0.5)


def test_trickling_server_hits_the_deadline(httpserver: HTTPServer) -> None:
    release = threading.Event()

    def trickle(request: Request) -> Response:
        def body() -> Iterator[bytes]:
            for _ in range(100):
                yield b" "
                release.wait(0.2)  # a byte every 0.2 s: every read is quick, the whole is slow
        return Response(body(), content_type="application/rss+xml")

    httpserver.expect_request("/slow").respond_with_handler(trickle)
    try:
        with pytest.raises(FetchError, match="too slow"):
            fetch(httpserver.url_for("/slow"), fetch_deadline=1)
    finally:
        release.set()


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), (None, None), ("soon", None)])
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize(("per_host", "concurrency", "expected_max"), [(2, 10, 2), (10, 3, 3), (8, 8, 8)])
def test_concurrency_is_bounded(threaded_server: HTTPServer, per_host: int, concurrency: int,
                                expected_max: int) -> None:
    httpserver = threaded_server
    lock = threading.Lock()
    state = {"now": 0, "max": 0}
    gate = threading.Event()

    def handler(request: Request) -> Response:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        gate.wait(0.3)
        with lock:
            state["now"] -= 1
        return Response(FEED)

    httpserver.expect_request("/f").respond_with_handler(handler)

    async def go() -> None:
        async with Fetcher(Settings(per_host=per_host, concurrency=concurrency)) as fetcher:
            await asyncio.gather(*[fetcher.fetch(Source(id=f"s{i}", url=httpserver.url_for("/f")), Validators())
                                   for i in range(8)])

    asyncio.run(go())
    assert state["max"] == expected_max  # reached, never exceeded
