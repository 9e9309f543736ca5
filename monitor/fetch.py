"""HTTP for one source: conditional GET, a streamed size cap, redirects, timeouts, Retry-After.

Returns a Fetched answer or raises a FetchError subclass; never parses and never writes. The size
cap counts decompressed bytes as they are inflated, so neither an endless body nor a gzip bomb is
ever held in memory past the cap.
"""

from __future__ import annotations

import asyncio
import zlib
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import ClassVar
from urllib.parse import urlsplit

import httpx

from monitor.botcheck import challenge_name
from monitor.config import Settings, Source
from monitor.errors import Blocked, FetchError, Forbidden, RateLimited
from monitor.models import Fetched, Validators

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, text/html;q=0.8, */*;q=0.5"
)
ERROR_BODY_CAP = 65536  # enough of an error page to recognise a bot check
# idle connections kept open for the next source on the same host. httpcore looks at every pooled
# connection on each request, and sources on other hosts never reuse them: with 64 kept, a 304 from
# a new host cost 2.3 ms of CPU, with 4 to 16 kept 1.5 to 1.8 ms (bench/http_clients.py's round)
KEEPALIVE = 8


class Fetcher:
    """One pooled HTTP client with concurrency bounded overall and per host. Use as `async with`."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self._overall = asyncio.Semaphore(settings.concurrency)
        self._per_host: dict[str, asyncio.Semaphore] = {}
        timeout = httpx.Timeout(
            settings.read_timeout, connect=settings.connect_timeout, pool=settings.fetch_deadline
        )
        self._client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=True,
            max_redirects=settings.max_redirects,
            limits=httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=KEEPALIVE),
            headers={"User-Agent": settings.user_agent, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"},
            transport=transport,
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.aclose()

    async def fetch(self, source: Source, validators: Validators) -> Fetched:
        host = urlsplit(source.url).hostname or ""
        per_host = self._per_host.setdefault(host, asyncio.Semaphore(self.settings.per_host))
        async with self._overall, per_host:
            try:
                async with asyncio.timeout(self.settings.fetch_deadline):
                    return await self._get(source, validators)
            except TimeoutError:
                msg = f"no complete answer within {self.settings.fetch_deadline:g}s (server too slow)"
                raise FetchError(msg) from None
            except httpx.HTTPError as e:
                raise FetchError(_describe(e)) from None
            except httpx.InvalidURL as e:  # not an HTTPError: e.g. a redirect to `javascript:alert(1)`
                raise FetchError(f"redirected to an address that is not http(s) or not valid: {e}") from None

    async def _get(self, source: Source, validators: Validators) -> Fetched:
        headers = dict(source.headers)
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        async with self._client.stream("GET", source.url, headers=headers) as response:
            if response.status_code == 304:
                return Fetched(_public(response.url), 304, validators=validators)
            if not response.is_success:
                body = await read_capped(response, ERROR_BODY_CAP, cut_ok=True)
                raise _status_error(response, body)
            body = await read_capped(response, self.settings.max_body)
            return Fetched(
                url=_public(response.url),
                status=response.status_code,
                content_type=response.headers.get("content-type", ""),
                body=body,
                validators=Validators(response.headers.get("etag"), response.headers.get("last-modified")),
            )


async def read_capped(response: httpx.Response, cap: int, cut_ok: bool = False) -> bytes:
    """Read and inflate the body, stopping as soon as more than `cap` bytes would be held."""
    inflater = _Inflater(response.headers.get("content-encoding", ""))
    chunks: list[bytes] = []
    size = 0
    async for raw in response.aiter_raw():
        piece = inflater.feed(raw, cap - size + 1)
        size += len(piece)
        chunks.append(piece)
        if size > cap:
            if cut_ok:
                break
            raise FetchError(f"answer larger than the {cap // 1024} KiB cap (max_body): not read further")
    body = b"".join(chunks)[:cap] if cut_ok else b"".join(chunks)
    if body[:2] == b"\x1f\x8b":  # some servers gzip without saying so (seen on UN feeds)
        body = _Inflater("gzip").feed(body, cap + 1)
        if len(body) > cap and not cut_ok:
            raise FetchError(f"answer larger than the {cap // 1024} KiB cap (max_body): not read further")
    return body


class _Inflater:
    """Incremental gzip/deflate decoding with an output limit per call."""

    _WBITS: ClassVar[dict[str, int]] = {
        "gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS
    }

    def __init__(self, encoding: str):
        encoding = encoding.strip().lower()
        if encoding not in ("", "identity", *self._WBITS):
            raise FetchError(f"the server used content-encoding {encoding!r}, which we did not ask for")
        wbits = self._WBITS.get(encoding)
        self._z = zlib.decompressobj(wbits) if wbits else None

    def feed(self, data: bytes, limit: int) -> bytes:
        if self._z is None:
            return data
        try:
            return self._z.decompress(data, max(limit, 1))
        except zlib.error as e:
            raise FetchError(f"the compressed answer is damaged: {e}") from None


def _status_error(response: httpx.Response, body: bytes) -> FetchError:
    status = response.status_code
    check = challenge_name(body)
    if check:
        return Blocked(f"blocked by bot check ({check}, HTTP {status})", status)
    if status in (401, 403):
        hint = "the site refuses this client; it may need `headers:` or be unreachable by scripts"
        return Forbidden(f"forbidden (HTTP {status}): {hint}", status)
    if status in (429, 503):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        later = f", asked to retry after {retry_after:g}s" if retry_after is not None else ""
        return RateLimited(f"HTTP {status} {response.reason_phrase}{later}", status, retry_after)
    if status in (404, 410):
        return FetchError(f"not found (HTTP {status}): the address may have moved", status)
    return FetchError(f"HTTP {status} {response.reason_phrase}", status)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _public(url: httpx.URL) -> str:
    """The answer's address without the credentials a source URL may carry (parsers resolve links with it)."""
    return str(url.copy_with(userinfo=b"")) if url.userinfo else str(url)


def _describe(error: httpx.HTTPError) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, httpx.TooManyRedirects):
        return "too many redirects (a redirect loop?)"
    if isinstance(error, httpx.UnsupportedProtocol):
        return f"redirected to an address that is not http(s): {text}"
    if isinstance(error, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(error, httpx.ReadTimeout):
        return "the server stopped answering (read timeout)"
    if isinstance(error, httpx.ConnectError):
        if "name or service not known" in text.lower() or "nodename nor servname" in text.lower():
            return f"cannot resolve the host name ({text})"
        return f"cannot connect: {text}"
    if isinstance(error, httpx.RemoteProtocolError) and "disconnected" in text.lower():
        return "the server closed the connection without answering"
    if isinstance(error, httpx.RemoteProtocolError):
        return f"the server broke the HTTP protocol: {text}"
    if isinstance(error, httpx.ReadError | httpx.WriteError):
        return f"the server closed the connection mid-answer ({text or 'connection reset'})"
    return f"{type(error).__name__}: {text}"
