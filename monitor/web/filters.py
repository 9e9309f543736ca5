"""The search filters shared by the search page, the JSON API and the Atom feeds.

One query string means the same thing everywhere: `?q=...&topic=norms&country=CN&since=2024-01-01`.
List filters repeat (`topic=a&topic=b`) or take commas (`topic=a,b`). Bad values raise BadFilter
with a message for the user; nothing here touches the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlencode

from monitor.store import SearchQuery

LIST_FILTERS = ("rule", "topic", "country", "org", "type", "lang", "source")
MAX_QUERY_CHARS = 500
MAX_VALUES = 50
_TRUE = {"1", "true", "yes", "on"}


class BadFilter(ValueError):
    """A filter the user wrote that cannot be read; str() says which and how to fix it."""


class Params(Protocol):
    def getlist(self, key: str) -> list[str]: ...


@dataclass(frozen=True)
class Filters:
    q: str = ""
    rule: tuple[str, ...] = ()
    topic: tuple[str, ...] = ()
    country: tuple[str, ...] = ()
    org: tuple[str, ...] = ()
    type: tuple[str, ...] = ()
    lang: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    since: str = ""  # as written (a date or ISO 8601), checked by parse_filters
    until: str = ""
    matched: bool = False

    def search_query(self, limit: int, offset: int = 0) -> SearchQuery:
        return SearchQuery(
            text=self.q or None, rules=self.rule, topics=self.topic, countries=self.country, orgs=self.org,
            doc_types=self.type, langs=self.lang, sources=self.source, since=moment(self.since, "since"),
            until=moment(self.until, "until"), matched=self.matched, limit=limit, offset=offset,
        )

    def pairs(self) -> list[tuple[str, str]]:
        """The filters as query-string pairs (empty ones left out), for links and feeds."""
        out: list[tuple[str, str]] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                out.extend((f.name, v) for v in value)
            elif value is True:
                out.append((f.name, "1"))
            elif value:
                out.append((f.name, value))
        return out

    def query_string(self, **extra: object) -> str:
        pairs = self.pairs() + [(k, str(v)) for k, v in extra.items() if v not in (None, "")]
        return urlencode(pairs)

    @property
    def empty(self) -> bool:
        return not self.pairs()

    def with_topic(self, topic: str) -> Filters:
        return replace(self, topic=(topic,))


def parse_filters(params: Params) -> Filters:
    """Read the filters from a query string; raise BadFilter naming the parameter that is wrong."""
    text = " ".join(v.strip() for v in params.getlist("q") if v.strip())
    if len(text) > MAX_QUERY_CHARS:
        raise BadFilter(f"the search text is {len(text)} characters long; the limit is {MAX_QUERY_CHARS}")
    lists = {name: _values(params.getlist(name), name) for name in LIST_FILTERS}
    lists["country"] = tuple(v.upper() for v in lists["country"])
    since, until = _last(params, "since"), _last(params, "until")
    moment(since, "since")
    moment(until, "until")
    matched = _last(params, "matched").lower() in _TRUE
    return Filters(q=text, since=since, until=until, matched=matched, **lists)


def _values(raw: Iterable[str], name: str) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(v.strip() for chunk in raw for v in chunk.split(",") if v.strip()))
    if len(values) > MAX_VALUES:
        raise BadFilter(f"{name}: at most {MAX_VALUES} values, got {len(values)}")
    return values


def _last(params: Params, name: str) -> str:
    values = params.getlist(name)
    return values[-1].strip() if values else ""


def moment(value: str, name: str) -> str | None:
    """A date or ISO 8601 time as the store's UTC text; a bare date means its midnight, UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadFilter(f"{name}: {value!r} is not a date; write YYYY-MM-DD or ISO 8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def page_number(params: Params, name: str = "page", default: int = 1, maximum: int = 10_000) -> int:
    """A positive integer parameter (a page number, a limit), within bounds."""
    raw = _last(params, name)
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise BadFilter(f"{name}: {raw!r} is not a whole number between 1 and {maximum}")
    return int(raw)


def offset_number(params: Params, maximum: int) -> int:
    raw = _last(params, "offset")
    if not raw:
        return 0
    if not raw.isdigit() or int(raw) > maximum:
        raise BadFilter(f"offset: {raw!r} is not a whole number between 0 and {maximum}; narrow the filters "
                        "(or use `diplowatch export`) to reach older items")
    return int(raw)
