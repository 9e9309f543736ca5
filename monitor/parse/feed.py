"""RSS 0.9x/1.0/2.0 and Atom through feedparser, accepting recoverable ("bozo") feeds."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import feedparser
import feedparser.mixin

from monitor.botcheck import challenge_name, looks_like_html
from monitor.config import Source
from monitor.errors import Blocked, ParseError
from monitor.models import Fetched, Item, Parsed
from monitor.normalise import (
    MAX_SUMMARY,
    canonical_url,
    content_hash,
    fold,
    from_struct,
    plain_text,
    primary_lang,
    repair,
)

# feedparser reads RSS under the userland namespace only when it is spelled with http://
# an & that starts none of XML's five entities or a character reference (HTML's &nbsp; included)
_BARE_AMP = re.compile(rb"&(?!#[0-9]+;|#x[0-9a-fA-F]+;|(?:amp|lt|gt|quot|apos);)")
_USERLAND_HTTPS = re.compile(rb"xmlns=([\"'])https://backend\.userland\.com/rss2\1")
# item HTML is reduced to plain text here, so feedparser's own passes over it (a sanitizer and a
# rewrite of relative links inside it, a fifth of its parse time) would be thrown away
_FEEDPARSER_OPTIONS = {"sanitize_html": False, "resolve_relative_uris": False}
_FIRST_ELEMENT = re.compile(rb"<\w")  # where feedparser's prolog (and so any DTD) ends
_LONGEST_REMEMBERED = 2048  # characters in a join's two arguments: so at most 1,024 x 2,048 kept
ENTITIES_IGNORED = "the feed declares its own XML entities (<!ENTITY>): ignored, so none can expand or read files"


def _remember_base_joins() -> None:
    """feedparser joins the feed's address with itself at every start tag to track xml:base (about a
    sixth of its parse time on a farm feed), and joins it with each link and guid. Both functions are
    pure functions of two strings, so remembering recent answers returns the same result faster.
    tests/test_parse.py checks that every fixture parses the same with and without this."""
    for name in ("make_safe_absolute_uri", "_urljoin"):
        join = getattr(feedparser.mixin, name, None)
        if callable(join) and not hasattr(join, "cache_info"):  # a feedparser without them is left as it is
            setattr(feedparser.mixin, name, _remembered(join))


def _remembered(join: Callable[..., str]) -> Callable[..., str]:
    """`join` with its recent answers kept; long arguments (a hostile feed's huge links) are never kept."""
    cached = lru_cache(maxsize=1024)(join)

    def remembered(*args: str | None) -> str:
        return cached(*args) if sum(len(a or "") for a in args) <= _LONGEST_REMEMBERED else join(*args)

    remembered.cache_info = cached.cache_info  # type: ignore[attr-defined]
    return remembered


_remember_base_joins()


def parse_feed(fetched: Fetched, source: Source) -> Parsed:
    body = _with_userland_http(fetched.body)
    body, declared_entities = _without_entity_declarations(body)
    if looks_like_html(body):
        raise _html_instead_of_feed(body)
    headers = {"content-type": fetched.content_type or "application/xml", "content-location": fetched.url}
    feed = feedparser.parse(body, response_headers=headers, **_FEEDPARSER_OPTIONS)
    if feed.get("bozo") and _BARE_AMP.search(body):
        # lenient parsing reads a bare "&lang=en" in a link as an old HTML entity; escape and retry
        repaired = feedparser.parse(_BARE_AMP.sub(b"&amp;", body), response_headers=headers, **_FEEDPARSER_OPTIONS)
        if not repaired.get("bozo"):
            repaired["bozo"], repaired["bozo_exception"] = 1, "unescaped '&' in the XML (repaired)"
            feed = repaired
    if not feed.get("version") and not feed.entries:
        reason = feed.get("bozo_exception") or "no RSS, Atom or RDF elements found"
        raise ParseError(f"not a feed: {reason}")
    feed_lang = primary_lang(feed.feed.get("language")) or primary_lang(source.lang)
    items = _unique(_item(entry, source, fetched.url, feed_lang) for entry in feed.entries)
    warning = f"recoverable feed damage: {feed.bozo_exception}" if feed.get("bozo") else None
    return Parsed(tuple(items), ENTITIES_IGNORED if declared_entities else warning)


def _without_entity_declarations(body: bytes) -> tuple[bytes, bool]:
    """Drop a DOCTYPE that declares entities. feedparser's lenient parser expands "safe" ones with no
    limit, so one 100 KB entity used 1,000 times became 100 MB (expat's own cap only covers the strict pass)."""
    first = _FIRST_ELEMENT.search(body)
    end = first.start() if first else len(body)
    if body.find(b"<!ENTITY", 0, end) < 0:
        return body, False
    start = body.find(b"<!DOCTYPE", 0, end)
    start = start if start >= 0 else body.find(b"<!ENTITY", 0, end)
    return body[:start] + body[end:], True


def _with_userland_http(body: bytes) -> bytes:
    """The rare https spelling of the userland namespace, rewritten in the head only; other bodies are not copied."""
    head = body[:4096]
    if b"https://backend.userland.com" not in head:
        return body
    return _USERLAND_HTTPS.sub(rb'xmlns="http://backend.userland.com/rss2"', head, 1) + body[4096:]


def _item(entry: Any, source: Source, base: str, feed_lang: str | None) -> Item | None:
    url = canonical_url(entry.get("link"), base)
    guid = fold(entry.get("id") or "") or url
    if not guid:
        return None  # nothing stable to recognise it by next time
    summary = _text(_longest_body(entry))[:MAX_SUMMARY]
    title = _title(entry.get("title_detail")) or summary[:120] or "(untitled)"
    lang = primary_lang(entry.get("language")) or _detail_lang(entry) or feed_lang
    published = from_struct(_first(entry, "published_parsed", "updated_parsed"))
    return Item(source.id, guid, url, title, summary, published, lang, content_hash(title, summary))


def _first(entry: Any, *keys: str) -> Any:
    # plain dict access: feedparser's own look-up maps a missing updated_parsed to published_parsed, with a warning
    return next((dict.get(entry, k) for k in keys if dict.get(entry, k)), None)


def _title(detail: Any) -> str:
    """Titles are read as HTML whatever their declared type: feeds put escaped markup in them."""
    return plain_text(detail["value"], keep_code=True) if detail and detail.get("value") else ""


def _longest_body(entry: Any) -> Any:
    candidates = [entry.get("summary_detail"), *(entry.get("content") or [])]
    candidates = [c for c in candidates if c and c.get("value")]
    return max(candidates, key=lambda c: len(c["value"]), default=None)


def _text(detail: Any) -> str:
    """Plain text of a feedparser detail dict: markup stripped only where the feed says it is HTML."""
    if not detail or not detail.get("value"):
        return ""
    if detail.get("type") in ("text/html", "application/xhtml+xml"):
        return plain_text(detail["value"])
    return repair(fold(detail["value"]))


def _detail_lang(entry: Any) -> str | None:
    for key in ("title_detail", "summary_detail"):
        lang = primary_lang((entry.get(key) or {}).get("language"))
        if lang:
            return lang
    return None


def _unique(items: Any) -> list[Item]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item is not None and item.guid not in seen:
            seen.add(item.guid)
            out.append(item)
    return out


def _html_instead_of_feed(body: bytes) -> Exception:
    check = challenge_name(body)
    if check:
        return Blocked(f"blocked by bot check ({check}): an HTML page came instead of the feed")
    alternate = re.search(rb"<link[^>]+type=[\"']application/(?:rss|atom)\+xml[\"'][^>]*>", body[:200_000], re.I)
    hint = "set `kind: html` with `selectors`, or use the site's feed address"
    if alternate:
        href = re.search(rb"href=[\"']([^\"']+)", alternate.group(0))
        if href:
            hint = f"the page names a feed at {href.group(1).decode('utf-8', 'replace')}"
    return ParseError(f"not a feed: the server sent an HTML page ({hint})")
