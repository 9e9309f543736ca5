"""Realistic feed bodies for the benchmarks, generated from the labelled texts in tests/data/detection.

Deterministic: feed `i` at version `v` is always the same bytes, so the farm, the ingest benchmark
and the search store agree. Feed `i` at version `v` lists items v .. v+items-1, newest first, so a
new version adds one item at the top and drops the oldest, as a real feed does.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import cache
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ROOT / "tests" / "data" / "detection"
# the languages of the sources, as a share of feeds (roughly the bundled sources.yaml's mix)
LANG_SHARES = {"en": 40, "ru": 14, "zh": 10, "fr": 10, "es": 9, "de": 9, "ar": 8}
COUNTRIES = {"en": "GB", "ru": "RU", "zh": "CN", "fr": "FR", "es": "ES", "de": "DE", "ar": "EG"}
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Text:
    title: str
    text: str
    relevant: bool


@cache
def texts_by_lang() -> dict[str, tuple[Text, ...]]:
    pool: dict[str, list[Text]] = {}
    for path in sorted(p for p in TEXTS.glob("*.jsonl") if not p.name.startswith("holdout")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                pool.setdefault(row["language"], []).append(Text(row["title"], row["text"], row["label"] == "relevant"))
    return {lang: tuple(items) for lang, items in pool.items()}


def feed_lang(i: int) -> str:
    slot, total = i * 7919 % 100, 0
    for lang, share in LANG_SHARES.items():
        total += share
        if slot < total:
            return lang
    return "en"


def is_atom(i: int) -> bool:
    return i % 5 == 4  # one feed in five is Atom, the rest RSS 2.0


@dataclass(frozen=True)
class FeedItem:
    guid: str
    link: str
    title: str
    html: str  # the summary as the feed carries it: escaped HTML paragraphs
    published: datetime


def item(i: int, k: int) -> FeedItem:
    """Item number `k` of feed `i`: one labelled text (about a third relevant), padded with others."""
    lang = feed_lang(i)
    pool = texts_by_lang()[lang]
    rng = random.Random(i * 1_000_003 + k)
    main = rng.choice(pool)
    padding = [rng.choice(pool).text for _ in range(rng.randint(1, 4))]
    paragraphs = [main.text, *padding]
    html = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    if rng.random() < 0.3:
        html += f'<p><a href="https://src{i}.example/more/{k}?utm_source=rss">{escape(main.title)}</a></p>'
    published = EPOCH + timedelta(hours=k * 6 + i % 6, minutes=i % 60)
    link = f"https://src{i}.example/{lang}/news/{k}.html" + ("?utm_medium=feed" if k % 3 == 0 else "")
    return FeedItem(f"https://src{i}.example/id/{k}", link, f"{main.title} ({k})", html, published)


def feed_items(i: int, version: int, items: int) -> list[FeedItem]:
    return [item(i, k) for k in range(version + items - 1, version - 1, -1)]


def feed_body(i: int, version: int, items: int) -> bytes:
    """The feed document: RSS 2.0, or Atom for one feed in five."""
    entries = feed_items(i, version, items)
    lang = feed_lang(i)
    return (_atom(i, lang, entries) if is_atom(i) else _rss(i, lang, entries)).encode("utf-8")


def _rss(i: int, lang: str, entries: list[FeedItem]) -> str:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">',
        f"<channel><title>Ministry {i} press releases</title><link>https://src{i}.example/</link>",
        f"<description>Statements of ministry {i}</description><language>{lang}</language>",
    ]
    for e in entries:
        parts.append(
            f"<item><title>{escape(e.title)}</title><link>{escape(e.link)}</link>"
            f'<guid isPermaLink="false">{e.guid}</guid><pubDate>{format_datetime(e.published)}</pubDate>'
            f"<description>{escape(e.html)}</description></item>"
        )
    parts.append("</channel></rss>\n")
    return "\n".join(parts)


def _atom(i: int, lang: str, entries: list[FeedItem]) -> str:
    updated = entries[0].published.strftime("%Y-%m-%dT%H:%M:%SZ") if entries else "2026-01-01T00:00:00Z"
    parts = [
        f'<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="{lang}">',
        f"<title>Ministry {i} news</title><id>urn:ministry:{i}</id><updated>{updated}</updated>",
        f'<link rel="alternate" href="https://src{i}.example/"/>',
    ]
    for e in entries:
        parts.append(
            f"<entry><title>{escape(e.title)}</title><id>{e.guid}</id>"
            f'<link rel="alternate" href="{escape(e.link)}"/>'
            f"<updated>{e.published.strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>"
            f'<summary type="html">{escape(e.html)}</summary></entry>'
        )
    parts.append("</feed>\n")
    return "\n".join(parts)
