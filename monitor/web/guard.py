"""The outer ASGI layer: read-only (405 but for GET/HEAD), the API token, and security headers.

The token, when required, is read from `Authorization: Bearer`, `?token=` or the cookie set after a
good `?token=` (a digest of the token, not the token), so a browser keeps access while following
links. It is removed from the query string before anything below (or the access log) sees it, and
never written into a page.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.web.settings import WebSettings

COOKIE = "diplowatch_token"
OPEN_PATHS = frozenset({"/healthz"})
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
}


class Guard:
    def __init__(self, app: ASGIApp, settings: WebSettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            refuse = PlainTextResponse("read-only: only GET and HEAD are allowed\n", 405, {"Allow": "GET, HEAD"})
            await refuse(scope, receive, _with_headers(send, None))
            return
        via_query = _take_query_token(scope)
        query_ok = via_query is not None and self._matches(via_query)
        authorised = (not self.settings.token_required or scope["path"] in OPEN_PATHS or query_ok
                      or self._matches(_bearer(scope)) or self._cookie_ok(scope))
        if not authorised:
            await _unauthorised(scope, receive, send)
            return
        remember = self.settings.token_required and query_ok
        await self.app(scope, receive, _with_headers(send, self._cookie_value() if remember else None))

    def _matches(self, offered: str | None) -> bool:
        expected = self.settings.token or ""
        return offered is not None and hmac.compare_digest(offered.encode(), expected.encode())

    def _cookie_value(self) -> str:
        """What the cookie holds: a digest of the token, so the token itself never sits in a browser."""
        return hashlib.sha256(f"diplowatch:{self.settings.token}".encode()).hexdigest()

    def _cookie_ok(self, scope: Scope) -> bool:
        offered = _cookie(scope)
        return offered is not None and hmac.compare_digest(offered.encode(), self._cookie_value().encode())


def _take_query_token(scope: Scope) -> str | None:
    """Remove `token=` from the query string (so no link, feed or log repeats it); return its value."""
    raw = scope.get("query_string", b"")
    if b"token=" not in raw:
        return None
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    tokens = [v for k, v in pairs if k == "token"]
    scope["query_string"] = urlencode([(k, v) for k, v in pairs if k != "token"]).encode("latin-1")
    return tokens[-1] if tokens else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _bearer(scope: Scope) -> str | None:
    value = _header(scope, b"authorization") or ""
    scheme, _, credential = value.partition(" ")
    return credential.strip() if scheme.lower() == "bearer" and credential.strip() else None


def _cookie(scope: Scope) -> str | None:
    cookies = SimpleCookie()
    try:
        cookies.load(_header(scope, b"cookie") or "")
    except Exception:  # a malformed Cookie header is no token, never a 500
        return None
    morsel = cookies.get(COOKIE)
    return morsel.value if morsel else None


async def _unauthorised(scope: Scope, receive: Receive, send: Send) -> None:
    response = PlainTextResponse(
        "a token is required: send `Authorization: Bearer <DIPLOWATCH_API_TOKEN>` or add ?token=...\n",
        401, {"WWW-Authenticate": 'Bearer realm="diplowatch"'},
    )
    await response(scope, receive, _with_headers(send, None))


def _with_headers(send: Send, cookie: str | None) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in SECURITY_HEADERS.items():
                headers.setdefault(name, value)
            if cookie is not None:
                headers.append("Set-Cookie", f"{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/")
        await send(message)

    return wrapped
