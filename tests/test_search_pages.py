"""A page of search results is the same page of the plain full query, whichever plan finds it.

A limited search reads ids first: text queries over the newest ids in growing windows, dense
entity filters tested per item. The oracle is the unlimited search (export), which runs the plain
query over every match; a page must be exactly its slice, even when older ids sort above newer.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.models import Item, PollOutcome, Validators
from monitor.normalise import content_hash
from monitor.store import Analysis, PollRecord, SearchQuery, Store
from monitor.store.core import _DENSE, _FIRST_WINDOW

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
ITEMS = _FIRST_WINDOW * 2 + 500  # more than one window, fewer than two


def _item(k: int, published: datetime, words: str) -> Item:
    title = f"statement {k} {words}"
    return Item("src", f"g{k}", f"https://example.org/{k}", title, "text", published, "en", content_hash(title, "text"))


def _save(store: Store, items: list[Item], now: datetime, countries: dict[str, tuple[str, ...]]) -> None:
    record = PollRecord(PollOutcome("src", "ok", http_status=200), "https://example.org/feed", now,
                        now + timedelta(minutes=30), Validators(), items,
                        {i.guid: Analysis(countries=countries.get(i.guid, ())) for i in items})
    store.save_poll(record)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path: Path = tmp_path_factory.mktemp("pages") / "dw.db"
    with Store.open(path) as s:
        # stored first (lowest ids) but seen and published later than everything else: they sort on top
        late = [_item(k, NOW + timedelta(days=9, minutes=k), "common late") for k in range(20)]
        _save(s, late, NOW + timedelta(days=10), {i.guid: ("FR",) for i in late})
        rest = []
        for k in range(20, ITEMS):
            words = "common" + (" rare" if k % 997 == 0 else "") + (" backfill" if k > ITEMS - 30 else "")
            published = NOW - timedelta(days=400 if k > ITEMS - 30 else 0, minutes=ITEMS - k)
            rest.append(_item(k, published, words))
        countries = {i.guid: ("RU",) for i in rest[: _DENSE + 100]} | {i.guid: ("FJ",) for i in rest[::500]}
        _save(s, rest, NOW, countries)
        yield s


QUERIES = [
    SearchQuery(text="common"), SearchQuery(text="rare"), SearchQuery(text="late"), SearchQuery(text="backfill"),
    SearchQuery(text="common NOT late"), SearchQuery(text="nothingatall"),
    SearchQuery(countries=("RU",)), SearchQuery(countries=("FJ",)), SearchQuery(text="common", countries=("RU",)),
    SearchQuery(countries=("RU",), since="2026-11-20T00:00:00Z", until="2026-11-21T11:00:00Z"),
]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: f"{q.text}|{q.countries}")
@pytest.mark.parametrize(("limit", "offset"), [(50, 0), (1, 0), (20, 15), (500, 40)])
def test_a_page_is_the_slice_of_the_full_query(store: Store, query: SearchQuery, limit: int, offset: int) -> None:
    everything = [row["id"] for row in store.search(query)]
    page = [row["id"] for row in store.search(SearchQuery(**{**query.__dict__, "limit": limit, "offset": offset}))]
    assert page == everything[offset : offset + limit]


def test_rows_come_back_whole(store: Store) -> None:
    page = list(store.search(SearchQuery(text="late", limit=3)))
    assert [row["title"] for row in page] == ["statement 19 common late", "statement 18 common late",
                                              "statement 17 common late"]
    assert page[0]["countries"] == ["FR"] and page[0]["rules"] == []
