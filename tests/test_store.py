"""store: a real SQLite file: migrations, de-duplication, edits kept as versions, FTS, refusal to harm."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.errors import AlreadyRunning, CorruptDatabase, NotOurDatabase, QueryError
from monitor.models import Item, PollOutcome, Validators
from monitor.normalise import content_hash
from monitor.store import PollRecord, SearchQuery, Store, fts_query, run_lock
from monitor.store.core import SCHEMA_VERSION

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def item(guid: str, title: str, summary: str = "", source: str = "mid-ru", lang: str = "ru",
         published: datetime | None = NOW) -> Item:
    return Item(source, guid, f"https://example.org/{guid}", title, summary, published, lang,
                content_hash(title, summary))


def save(store: Store, *items: Item, source: str = "mid-ru", etag: str | None = None) -> tuple[int, int]:
    outcome = PollOutcome(source, "ok", http_status=200)
    return store.save_poll(PollRecord(outcome, "https://example.org/feed", NOW, NOW + timedelta(minutes=30),
                                      Validators(etag, None), items))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store.open(tmp_path / "storage" / "dw.db") as s:
        yield s


def test_new_database_is_created_in_wal_mode_at_current_version(store: Store) -> None:
    conn = store.db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_an_item_seen_again_is_not_stored_twice(store: Store) -> None:
    assert save(store, item("1", "Заявление МИД"), item("2", "Брифинг")) == (2, 0)
    assert save(store, item("1", "Заявление МИД"), item("2", "Брифинг")) == (0, 0)
    assert store.count_items() == 2


def test_same_guid_in_two_sources_is_two_items(store: Store) -> None:
    save(store, item("1", "a"))
    save(store, item("1", "a", source="tass-ru"), source="tass-ru")
    assert store.count_items() == 2


def test_an_edited_item_keeps_its_earlier_version(store: Store) -> None:
    save(store, item("1", "Draft title", "first text"))
    assert save(store, item("1", "Final title", "second text")) == (0, 1)
    rows = list(store.db.query("SELECT title, summary FROM item_versions"))
    assert rows == [{"title": "Draft title", "summary": "first text"}]
    assert [r["title"] for r in store.search(SearchQuery())] == ["Final title"]
    assert [r["title"] for r in store.search(SearchQuery(text="Final"))] == ["Final title"]
    assert list(store.search(SearchQuery(text="Draft"))) == []


def test_source_state_is_saved_with_the_items(store: Store) -> None:
    save(store, item("1", "x"), etag='"abc"')
    state = store.source_state("mid-ru")
    assert state.validators.etag == '"abc"' and state.consecutive_failures == 0


@pytest.mark.parametrize(("query", "titles"), [
    ("информационной", ["О международной информационной безопасности"]),
    ('"information security"', ["Statement on international information security"]),
    ("securite", ["Sécurité internationale de l'information"]),  # accent-insensitive
    ("网络安全", ["中方关于网络安全的立场"]),
    ("安全", ["中方关于网络安全的立场"]),
    ("cyber* OR 网络", ["Cyberspace norms", "中方关于网络安全的立场"]),
    ("security NOT international", []),
])
def test_full_text_search(store: Store, query: str, titles: list[str]) -> None:
    save(store, item("1", "О международной информационной безопасности"),
         item("2", "Statement on international information security"),
         item("3", "Sécurité internationale de l'information"),
         item("4", "中方关于网络安全的立场"), item("5", "Cyberspace norms"), item("6", "Trade talks"))
    assert sorted(r["title"] for r in store.search(SearchQuery(text=query))) == sorted(titles)


def test_fts_query_quotes_cjk_runs() -> None:
    assert fts_query("网络 AND norms") == '"网 络" AND norms'
    assert fts_query('"网络安全"') == '"网 络 安 全"'


def test_malformed_query_is_a_query_error(store: Store) -> None:
    save(store, item("1", "x"))
    with pytest.raises(QueryError, match="cannot read the search query"):
        list(store.search(SearchQuery(text='"unbalanced')))


def test_search_filters_and_order(store: Store) -> None:
    save(store, item("old", "old", published=NOW - timedelta(days=30)), item("new", "new"),
         item("future", "future", published=NOW + timedelta(days=3650)), item("undated", "undated", published=None))
    titles = [r["title"] for r in store.search(SearchQuery(since="2026-11-01T00:00:00Z"))]
    # an item dated in the future sorts as if first seen now, never pinned above everything
    assert titles[-1] != "future" and "old" not in titles
    assert [r["title"] for r in store.search(SearchQuery(limit=1, until="2026-11-01T00:00:00Z"))] == ["old"]


def test_foreign_sqlite_database_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE accounts (id INTEGER)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(NotOurDatabase, match="another program"):
        Store.open(path)
    assert path.read_bytes() == before


def test_corrupt_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "dw.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(CorruptDatabase, match="refusing to touch it"):
        Store.open(path)
    assert path.read_bytes() == b"this is not a database at all" * 100


def test_reopening_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "dw.db"
    with Store.open(path) as s:
        save(s, item("1", "x"))
    with Store.open(path) as s:
        assert s.count_items() == 1


def test_run_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    db = tmp_path / "dw.db"
    with run_lock(db), pytest.raises(AlreadyRunning, match="already using"), run_lock(db):
        pass
    with run_lock(db):  # released on exit
        pass
