"""Undelivered matches -> Digest: grouped by topic, newest first, one entry per statement.

Pure functions over stored rows; rendering goes through templates/ (Jinja2, autoescaped HTML).
What it must never do: let feed content become markup. Every feed string is neutralised here
(control, zero-width and bidi-override characters removed, whitespace folded), escaped by the
templates, and a link survives only when it is http(s).

"Also reported by N sources": two items are the same statement when their sort times are within
CLUSTER_WINDOW and they have the same canonical URL (normalise.canonical_url already dropped
tracking parameters), or their titles share at least SIMILARITY of their words (Jaccard over
casefolded NFKC words, MIN_TOKENS words each, so "Press briefing" never clusters), or are the same
run of 8+ characters in a script written without spaces (Chinese, Japanese). Within a digest such items become
one entry, headed by the earliest; N counts the other sources whose report has another URL (two
feeds of one site carrying the same page are one report).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2

from monitor.models import from_iso, iso
from monitor.store.outbox import Neighbour, StoredItem, StoredMatch

CLUSTER_WINDOW = timedelta(days=3)
SIMILARITY = 0.8
MIN_TOKENS = 4
MAX_TITLE = 300
MAX_SNIPPET = 600
TOP_TOPICS = 3

# C0/C1 controls, soft hyphen, zero-width space/marks, bidi embeddings, overrides and isolates, BOM.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b\u200e\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]"
)
# ZWNJ/ZWJ spell Persian and Indic words correctly; outside a word they only hide things.
_STRAY_JOINER = re.compile(r"(?<!\w)[\u200c\u200d]|[\u200c\u200d](?!\w)")
_SPACES = re.compile(r"\s+")
_UNSAFE_IN_URL = re.compile(r"[\s\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\"'<>\\`]")


@dataclass(frozen=True)
class Segment:
    """A piece of a snippet; `marked` pieces are the matched terms."""

    text: str
    marked: bool = False


@dataclass(frozen=True)
class MatchedRule:
    rule: str
    topic: str
    terms: tuple[str, ...]
    snippet: tuple[Segment, ...]

    @property
    def snippet_text(self) -> str:
        return "".join(s.text for s in self.snippet)


@dataclass(frozen=True)
class Report:
    """Another source's report of the same statement."""

    source: str
    name: str
    url: str | None


@dataclass(frozen=True)
class Entry:
    """One statement in a digest; `item_ids` are it and the duplicates folded into it."""

    item_id: int
    title: str
    url: str | None
    source: str
    source_name: str
    published: str | None
    sort_time: str
    lang: str | None
    countries: tuple[str, ...]
    orgs: tuple[str, ...]
    doc_type: str | None
    topic: str
    matches: tuple[MatchedRule, ...]
    also_reported: tuple[Report, ...] = ()
    item_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class TopicGroup:
    topic: str
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Digest:
    """What one delivery of one subscription says. `id` is stable across re-sends."""

    id: str
    subscription: str
    created_at: datetime
    window_start: datetime
    groups: tuple[TopicGroup, ...]
    pending_after: int = 0
    timezone: str = "UTC"
    item_ids: tuple[int, ...] = field(default=())

    @property
    def window_end(self) -> datetime:
        return self.created_at

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(e for g in self.groups for e in g.entries)

    @property
    def subject(self) -> str:
        count = len(self.entries)
        if not count:
            return f"[diplowatch] {self.subscription}: no new items"
        top = ", ".join(f"{g.topic} ({len(g.entries)})" for g in self.groups[:TOP_TOPICS])
        more = len(self.groups) - TOP_TOPICS
        more_text = f" and {more} more topic{'s' * (more > 1)}" if more > 0 else ""
        later = f" (+{self.pending_after} in the next digest)" if self.pending_after else ""
        return f"[diplowatch] {self.subscription}: {count} item{'s' * (count > 1)}: {top}{more_text}{later}"


# -- building ----------------------------------------------------------------------------------


def build_digest(digest_id: str, subscription: str, created_at: str, items: Sequence[StoredItem],
                 neighbours: Sequence[Neighbour] = (), names: Mapping[str, str] | None = None,
                 pending_after: int = 0, timezone: str = "UTC") -> Digest:
    """Group `items` by topic, newest first, folding duplicates of one statement into one entry."""
    names = names or {}
    clusters = cluster(items, neighbours)
    entries = [_entry(head, members, related, names) for head, members, related in clusters]
    created = from_iso(created_at)
    assert created is not None
    starts = [from_iso(m.matched_at) for i in items for m in i.matches]
    window_start = min((s for s in starts if s is not None), default=created)
    return Digest(digest_id, subscription, created, min(window_start, created), _groups(entries),
                  pending_after, timezone, tuple(sorted(i.id for i in items)))


def neighbour_window(items: Sequence[StoredItem]) -> tuple[str, str] | None:
    """The sort-time range in which other reports of `items` are looked for."""
    times = [t for t in (from_iso(i.sort_time) for i in items) if t is not None]
    if not times:
        return None
    return iso(min(times) - CLUSTER_WINDOW) or "", iso(max(times) + CLUSTER_WINDOW) or ""


def _groups(entries: Sequence[Entry]) -> tuple[TopicGroup, ...]:
    by_topic: dict[str, list[Entry]] = {}
    for entry in entries:
        by_topic.setdefault(entry.topic, []).append(entry)
    groups = [TopicGroup(t, tuple(sorted(es, key=lambda e: (e.sort_time, e.item_id), reverse=True)))
              for t, es in by_topic.items()]
    return tuple(sorted(groups, key=lambda g: (-len(g.entries), g.topic)))


def _entry(head: StoredItem, members: Sequence[StoredItem], related: Sequence[Neighbour],
           names: Mapping[str, str]) -> Entry:
    matches = tuple(_matched_rule(m) for m in _merged_matches(members))
    return Entry(
        item_id=head.id, title=one_line(head.title, MAX_TITLE) or "(untitled)", url=safe_link(head.url),
        source=head.source, source_name=one_line(names.get(head.source, head.source)),
        published=head.published, sort_time=head.sort_time, lang=head.lang,
        countries=tuple(one_line(c) for c in head.countries), orgs=tuple(one_line(o) for o in head.orgs),
        doc_type=one_line(head.doc_type) if head.doc_type else None,
        topic=one_line(matches[0].topic) if matches else "other", matches=matches,
        also_reported=_reports(head, related, names), item_ids=tuple(sorted(m.id for m in members)),
    )


def _merged_matches(members: Sequence[StoredItem]) -> list[StoredMatch]:
    seen: dict[str, StoredMatch] = {}
    for member in members:
        for m in member.matches:
            seen.setdefault(m.rule, m)
    return sorted(seen.values(), key=lambda m: (m.matched_at, m.rule))


def _matched_rule(m: StoredMatch) -> MatchedRule:
    return MatchedRule(one_line(m.rule), one_line(m.topic), tuple(one_line(t) for t in m.terms),
                       highlight(m.snippet, m.marks))


def _reports(head: StoredItem, related: Sequence[Neighbour], names: Mapping[str, str]) -> tuple[Report, ...]:
    reports: dict[str, Report] = {}
    for other in sorted(related, key=lambda n: (n.sort_time, n.id)):
        if other.source == head.source or (other.url and other.url == head.url) or other.source in reports:
            continue
        reports[other.source] = Report(other.source, one_line(names.get(other.source, other.source)),
                                       safe_link(other.url))
    return tuple(reports.values())


# -- clustering --------------------------------------------------------------------------------


def cluster(items: Sequence[StoredItem], neighbours: Sequence[Neighbour] = ()
            ) -> list[tuple[StoredItem, list[StoredItem], list[Neighbour]]]:
    """(head, members, related reports) per statement: members are digest items, head the earliest."""
    nodes = [_as_neighbour(i) for i in items]
    others = [n for n in neighbours if n.id not in {i.id for i in items}]
    related = {n.id: [o for o in [*nodes, *others] if o.id != n.id and same_statement(n, o)] for n in nodes}
    parent = {i.id: i.id for i in items}
    for n in nodes:
        for o in related[n.id]:
            if o.id in parent:
                parent[_root(parent, o.id)] = _root(parent, n.id)
    groups: dict[int, list[StoredItem]] = {}
    for item in items:
        groups.setdefault(_root(parent, item.id), []).append(item)
    out = []
    for members in groups.values():
        members.sort(key=lambda i: (i.sort_time, i.id))
        reports = {o.id: o for m in members for o in related[m.id]}
        out.append((members[0], members, list(reports.values())))
    return out


def _root(parent: dict[int, int], node: int) -> int:
    while parent[node] != node:
        parent[node] = parent[parent[node]]
        node = parent[node]
    return node


def _as_neighbour(item: StoredItem) -> Neighbour:
    return Neighbour(item.id, item.source, item.url, item.title, item.sort_time)


def same_statement(a: Neighbour, b: Neighbour) -> bool:
    ta, tb = from_iso(a.sort_time), from_iso(b.sort_time)
    if ta is None or tb is None or abs(ta - tb) > CLUSTER_WINDOW:
        return False
    if a.url and a.url == b.url:
        return True
    wa, wb = title_words(a.title), title_words(b.title)
    if wa and wa == wb and not "".join(wa).isascii() and len("".join(wa)) >= 8:
        return True  # a title in a script without spaces is one long "word"
    sa, sb = set(wa), set(wb)
    return min(len(sa), len(sb)) >= MIN_TOKENS and len(sa & sb) / len(sa | sb) >= SIMILARITY


@functools.lru_cache(maxsize=4096)
def title_words(title: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\w+", unicodedata.normalize("NFKC", clean(title)).casefold()))


# -- neutralising feed text --------------------------------------------------------------------


def clean(text: str) -> str:
    """Remove control, zero-width and bidi-override characters (Trojan-Source style tricks)."""
    return _STRAY_JOINER.sub("", _INVISIBLE.sub("", text))


def one_line(text: str, limit: int | None = None) -> str:
    """`clean`, whitespace (newlines included) folded, cut at `limit` characters with an ellipsis."""
    text = " ".join(clean(text).split())
    return text if limit is None or len(text) <= limit else text[: limit - 1].rstrip() + "…"


def highlight(snippet: str, marks: Sequence[tuple[int, int]]) -> tuple[Segment, ...]:
    """The snippet cut into plain and marked segments (marks are offsets into the raw snippet)."""
    segments, pos = [], 0
    for start, end in sorted(marks):
        start, end = max(start, pos), min(end, len(snippet))
        if start >= end:
            continue
        segments += [Segment(snippet[pos:start]), Segment(snippet[start:end], True)]
        pos = end
    segments.append(Segment(snippet[pos:]))
    cleaned = [Segment(_SPACES.sub(" ", clean(s.text)), s.marked) for s in segments]
    return _trim(tuple(s for s in cleaned if s.text))


def _trim(segments: tuple[Segment, ...]) -> tuple[Segment, ...]:
    if not segments:
        return ()
    first, last = segments[0], segments[-1]
    segments = (Segment(first.text.lstrip(), first.marked), *segments[1:])
    segments = (*segments[:-1], Segment(segments[-1].text.rstrip(), last.marked))
    total, out = 0, []
    for s in segments:
        if total + len(s.text) > MAX_SNIPPET:
            out.append(Segment(s.text[: MAX_SNIPPET - total] + "…", s.marked))
            break
        out.append(s)
        total += len(s.text)
    return tuple(s for s in out if s.text)


def safe_link(url: str | None) -> str | None:
    """`url` when it is an absolute http(s) URL with nothing that could break out of an attribute."""
    if not url or len(url) > 2048 or _UNSAFE_IN_URL.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.hostname else None


# -- rendering ---------------------------------------------------------------------------------


@functools.cache
def templates() -> jinja2.Environment:
    """The template environment: HTML templates autoescaped, undefined names are errors."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("monitor", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.filters["when"] = format_time
    return env


def format_time(value: str | datetime | None, timezone: str = "UTC") -> str:
    """`2026-01-05 08:12 CET` in the subscription's time zone; '' for no date."""
    moment = from_iso(value) if isinstance(value, str) else value
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(timezone))
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or timezone)


def render_text(digest: Digest) -> str:
    return templates().get_template("digest.txt.j2").render(digest=digest, tz=digest.timezone)


def render_html(digest: Digest) -> str:
    return templates().get_template("digest.html.j2").render(digest=digest, tz=digest.timezone)
