"""One page of search results, shared by the search page, the JSON API and the Atom feeds.

Pages are read with LIMIT n+1 / OFFSET: the extra row says whether there is a next page, so no
request ever counts every match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.store import Store
from monitor.store.queries import MatchView, match_views
from monitor.web.filters import Filters
from monitor.web.highlight import Segment, excerpt, highlighted, segments, term_pattern


@dataclass(frozen=True)
class ResultPage:
    rows: list[dict[str, Any]]
    matches: dict[int, list[MatchView]]
    offset: int
    limit: int
    more: bool


@dataclass(frozen=True)
class ResultView:
    """One search result as the page shows it: text split into highlighted segments."""

    row: dict[str, Any]
    title: list[Segment]
    snippet: list[Segment]
    matches: list[MatchView]


def fetch_page(store: Store, filters: Filters, limit: int, offset: int = 0) -> ResultPage:
    rows = list(store.search(filters.search_query(limit + 1, offset)))
    page = rows[:limit]
    return ResultPage(page, match_views(store, [r["id"] for r in page]), offset, limit, len(rows) > limit)


def result_views(page: ResultPage, query: str) -> list[ResultView]:
    pattern = term_pattern(query) if query else None
    return [_view(row, page.matches.get(row["id"], []), pattern) for row in page.rows]


def _view(row: dict[str, Any], matches: list[MatchView], pattern: Any) -> ResultView:
    summary = row["summary"] or ""
    snippet = excerpt(summary, pattern)
    if matches and not any(marked for _, marked in snippet):
        snippet = segments(matches[0].snippet, matches[0].marks)  # the rule's own evidence
    return ResultView(row, highlighted(row["title"] or "", pattern), snippet, matches)
