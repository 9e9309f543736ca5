"""Turn what a parser read into the normalised fields of an Item: canonical URL, plain text, UTC.

Pure functions; no I/O.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import ftfy
from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, NavigableString, Script, Stylesheet

TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|dclid|yclid|msclkid|mc_cid|mc_eid|_ga|_gl|igshid|at_\w+)$", re.I)
_SPACE = re.compile(r"\s+")
# a UTF-8 lead byte read as Latin-1/cp1252, followed by what a continuation byte becomes
_MOJIBAKE = re.compile(
    "[ÃÂÐÑâ][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e"
    "\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_SUMMARY = 20_000


def canonical_url(link: str | None, base: str) -> str:
    """Absolute, no fragment, no tracking parameters, lower-case scheme and host, no default port."""
    if not link or not link.strip():
        return ""
    parts = urlsplit(urljoin(base, link.strip()))
    if parts.scheme.lower() not in ("http", "https"):
        return ""
    host = (parts.hostname or "").lower()
    if parts.port and parts.port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}:{parts.port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not TRACKING.match(k)])
    return urlunsplit((parts.scheme.lower(), host, parts.path or "/", query, ""))


def fold(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def repair(text: str) -> str:
    """Fix mojibake such as "GuaidÃ³" -> "Guaidó" (ftfy), only where its tell-tale pairs appear."""
    return ftfy.fix_encoding(text) if _MOJIBAKE.search(text) else text


_BLOCKS = ["p", "div", "br", "li", "ul", "ol", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6",
           "blockquote", "section", "article", "header", "footer", "table", "hr", "pre", "figure", "figcaption"]


def plain_text(markup: str, keep_code: bool = False) -> str:
    """HTML -> plain text: tags dropped, entities decoded, block elements kept apart by a space.

    Script and style contents are dropped from bodies; in a title (`keep_code`) their text is kept
    as plain text, so a hostile title is shown harmlessly rather than lost.
    """
    if "<" not in markup and "&" not in markup:
        return repair(fold(markup))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        soup = BeautifulSoup(markup, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        if keep_code:
            tag.replace_with(NavigableString(tag.get_text(types=(Script, Stylesheet, NavigableString))))
        else:
            tag.decompose()
    for tag in soup(_BLOCKS):
        tag.insert_before(" ")
        tag.insert_after(" ")
    return repair(fold(soup.get_text()))


def primary_lang(tag: str | None) -> str | None:
    """`en-US` -> `en`; empty or odd values -> None."""
    if not tag:
        return None
    primary = re.split(r"[-_]", tag.strip())[0].lower()
    return primary if re.fullmatch(r"[a-z]{2,3}", primary) else None


def from_struct(parsed: tuple | None) -> datetime | None:
    """feedparser's UTC struct_time -> aware datetime (None when absent or out of range)."""
    if not parsed:
        return None
    try:
        return datetime(*parsed[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def content_hash(title: str, summary: str) -> str:
    return hashlib.sha256(f"{title}\n{summary}".encode()).hexdigest()[:20]
