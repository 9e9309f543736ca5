"""HTML listing pages (a ministry's news list) read with the source's CSS selectors."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from typing import Any

from bs4 import BeautifulSoup, Tag

from monitor.botcheck import challenge_name
from monitor.config import Selectors, Source
from monitor.errors import Blocked, ParseError
from monitor.models import Fetched, Item, Parsed
from monitor.normalise import MAX_SUMMARY, canonical_url, content_hash, fold, primary_lang, repair


def parse_listing(fetched: Fetched, source: Source) -> Parsed:
    selectors = source.selectors
    if selectors is None:
        raise ParseError("an HTML page needs `selectors` in the source's configuration")
    soup = BeautifulSoup(fetched.body, "html.parser")
    base_tag = soup.find("base", href=True)
    base = canonical_url(base_tag["href"], fetched.url) if isinstance(base_tag, Tag) else fetched.url
    lang = primary_lang(source.lang) or _page_lang(soup)
    elements = soup.select(selectors.item)
    if not elements:
        check = challenge_name(fetched.body)
        if check:
            raise Blocked(f"blocked by bot check ({check}): a challenge page came instead of the listing")
        raise ParseError(f"the page has no element matching the item selector {selectors.item!r}")
    items, seen = [], set()
    for element in elements:
        item = _item(element, selectors, source, base, lang)
        if item and item.guid not in seen:
            seen.add(item.guid)
            items.append(item)
    return Parsed(tuple(items))


def _item(element: Tag, sel: Selectors, source: Source, base: str, lang: str | None) -> Item | None:
    link = element if element.name == "a" and element.get("href") else element.select_one(sel.link)
    url = canonical_url(link.get("href") if link else None, base)
    if not url:
        return None
    title = _text(element.select_one(sel.title) if sel.title else link)
    summary = _text(element.select_one(sel.summary))[:MAX_SUMMARY] if sel.summary else ""
    published = _date(element.select_one(sel.date) if sel.date else None, lang)
    title = title or summary[:120] or "(untitled)"
    return Item(source.id, url, url, title, summary, published, lang, content_hash(title, summary))


def _text(node: Any) -> str:
    return repair(fold(node.get_text(" "))) if node else ""


def _page_lang(soup: BeautifulSoup) -> str | None:
    html = soup.find("html")
    return primary_lang(html.get("lang")) if isinstance(html, Tag) else None


def _date(node: Tag | None, lang: str | None) -> datetime | None:
    """A date as a listing shows it ("14 марта 2026", "2026-03-14", "2026年3月14日") -> UTC."""
    if node is None:
        return None
    text = node.get("datetime") or node.get("content") or node.get_text(" ")
    text = fold(str(text))
    if not text:
        return None
    import dateparser  # slow to import; only listing pages need it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settings = {"TIMEZONE": "UTC", "RETURN_AS_TIMEZONE_AWARE": True, "PREFER_DAY_OF_MONTH": "first"}
        found = dateparser.parse(text, languages=[lang] if lang else None, settings=settings)
    return found.astimezone(UTC) if found else None
