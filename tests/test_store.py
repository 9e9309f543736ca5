"""store: a real SQLite file: migrations, de-duplication, edits kept as versions, FTS, refusal to harm."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.errors import AlreadyRunning, CorruptDatabase, NotOurDatabase, QueryError, StoreError
from monitor.match import Hit, Match
from monitor.models import Item, PollOutcome, Validators
from monitor.normalise import content_hash
from monitor.store import Analysis, PollRecord, SearchQuery, SourceState, Store, fts_query, run_lock
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


# -- batched calls: source_states, save_polls --------------------------------------------------


def poll(source: str, status: str = "ok", *items: Item, etag: str | None = None, keep_validators: bool = False,
         minutes: int = 0) -> PollRecord:
    """One poll's record; `keep_validators` leaves the stored ETag alone, as a 304 or a failure does."""
    now = NOW + timedelta(minutes=minutes)
    outcome = PollOutcome(source, status, http_status=200, error="boom" if status in ("failing", "blocked") else None)
    return PollRecord(outcome, f"https://{source}.example.org/feed", now, now + timedelta(minutes=30),
                      None if keep_validators else Validators(etag, None), items)


def dump(store: Store) -> dict[str, list[tuple]]:
    """Every row a poll writes, order-free, for comparing two databases."""
    tables = {"sources": "SELECT * FROM sources", "items": "SELECT * FROM items",
              "item_versions": "SELECT * FROM item_versions", "entities": "SELECT * FROM entities",
              "matches": "SELECT * FROM matches", "fts": "SELECT rowid, title, summary FROM items_fts"}
    return {name: sorted(store.db.conn.execute(sql).fetchall(), key=repr) for name, sql in tables.items()}


@pytest.mark.parametrize(("polled", "asked"), [
    ((), ["mid-ru"]),
    (("mid-ru",), ["mid-ru"]),
    (("mid-ru", "tass-ru"), ["tass-ru", "never-polled", "mid-ru"]),
    (("mid-ru",), ["mid-ru", "mid-ru"]),
    (("外交部", "o'brien"), ["外交部", "o'brien", '"quoted"']),
    (("mid-ru",), []),
])
def test_source_states_are_what_source_state_gives_for_each(store: Store, polled: tuple[str, ...],
                                                            asked: list[str]) -> None:
    for n, source in enumerate(polled):
        store.save_poll(poll(source, "failing" if n % 2 else "ok", etag=f'"{source}"'))
    states = store.source_states(asked)
    assert list(states) == list(dict.fromkeys(asked))
    assert states == {s: store.source_state(s) for s in asked}
    assert all(states[s] == SourceState() for s in asked if s not in polled)


def test_source_states_of_many_sources_is_one_query(store: Store) -> None:
    ids = [f"s{n}" for n in range(1000)]
    store.save_polls([poll(s, etag=f'"{s}"') for s in ids[::2]])
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    states = store.source_states(ids)
    store.db.conn.set_trace_callback(None)
    assert len(statements) == 1
    assert [states[s].validators.etag for s in ids[:4]] == ['"s0"', None, '"s2"', None]


def a_poll(status: str, *guid_titles: tuple[str, str], minutes: int = 0) -> PollRecord:
    """A poll of source "a" with the items (guid, title)."""
    return poll("a", status, *(item(g, t, source="a") for g, t in guid_titles), minutes=minutes)


# Each case: the polls of one round, in order; the (new, changed) counts save_polls returns for them; and
# then source "a" (polled once before the round with ETag "old"): status, etag, consecutive failures, polls, new items.
ROUNDS = (
    pytest.param([poll("a", "unchanged", keep_validators=True), poll("b", "unchanged", keep_validators=True)],
                 [(0, 0), (0, 0)], ("ok", '"old"', 0, 2, 1), id="304s only"),
    pytest.param([a_poll("ok", ("1", "x")), poll("b", "ok", item("1", "x", source="b"))], [(1, 0), (1, 0)],
                 ("ok", None, 0, 2, 2), id="two sources, same guid"),
    pytest.param([a_poll("ok", ("1", "x")), a_poll("ok", ("1", "x"), minutes=1)], [(1, 0), (0, 0)],
                 ("ok", None, 0, 3, 2), id="a source twice, item seen again"),
    pytest.param([a_poll("ok", ("1", "x")), a_poll("ok", ("1", "y"), minutes=1)], [(1, 0), (0, 1)],
                 ("ok", None, 0, 3, 2), id="a source twice, item edited"),
    pytest.param([a_poll("ok", ("1", "x"), ("1", "y"), ("1", "y"))], [(1, 1)], ("ok", None, 0, 2, 2),
                 id="a guid twice in one poll"),
    pytest.param([a_poll("ok", ("0", "older, edited"))], [(0, 1)], ("ok", None, 0, 2, 1),
                 id="an item of an earlier round edited"),
    pytest.param([poll("a", "failing", keep_validators=True), poll("a", "blocked", keep_validators=True)],
                 [(0, 0), (0, 0)], ("blocked", '"old"', 2, 3, 1), id="failures"),
    pytest.param([poll("a", "failing", keep_validators=True), poll("a", "ok", item("1", "x", source="a"), etag='"e"')],
                 [(0, 0), (1, 0)], ("ok", '"e"', 0, 3, 2), id="a failure then success"),
    pytest.param([], [], ("ok", '"old"', 0, 1, 1), id="empty round"),
)


@pytest.mark.parametrize(("records", "counts", "source_a"), ROUNDS)
def test_save_polls_is_save_poll_of_each_record_in_turn(tmp_path: Path, records: list[PollRecord],
                                                        counts: list[tuple[int, int]], source_a: tuple) -> None:
    with Store.open(tmp_path / "one.db") as one, Store.open(tmp_path / "batch.db") as batch:
        for s in (one, batch):  # a stored history for the round to build on
            s.save_poll(poll("a", "ok", item("0", "older", source="a"), etag='"old"', minutes=-60))
        assert [one.save_poll(r) for r in records] == counts
        assert batch.save_polls(records) == counts
        assert dump(batch) == dump(one)
        row = next(batch.db.query("SELECT * FROM sources WHERE id = 'a'"))
        assert (row["status"], row["etag"], row["consecutive_failures"], row["polls"], row["new_items"]) == source_a


def test_save_polls_counts_failures_and_keeps_validators(store: Store) -> None:
    store.save_polls([poll("a", "ok", etag='"e1"'), poll("a", "failing", keep_validators=True, minutes=1),
                      poll("a", "blocked", keep_validators=True, minutes=2), poll("b", "unchanged", etag='"b"')])
    row = next(store.db.query("SELECT * FROM sources WHERE id = 'a'"))
    assert (row["status"], row["polls"], row["failures"], row["consecutive_failures"]) == ("blocked", 3, 2, 2)
    assert (row["etag"], row["last_success"], row["last_error"]) == ('"e1"', "2026-11-21T12:00:00Z", "boom")
    assert store.source_state("b").validators.etag == '"b"'


def test_save_polls_is_one_transaction(store: Store) -> None:
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    store.save_polls([poll(f"s{n}", "unchanged", keep_validators=True) for n in range(1000)])
    store.db.conn.set_trace_callback(None)
    assert statements.count("BEGIN IMMEDIATE") == 1 and statements.count("COMMIT") == 1
    assert len(store.source_states([f"s{n}" for n in range(1000)])) == 1000


def test_save_polls_stores_all_records_or_none(store: Store) -> None:
    broken = item("2", "x", source="b")
    broken = Item(broken.source, broken.guid, broken.url, None, "", None, None, "h")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="NOT NULL"):
        store.save_polls([poll("a", "ok", item("1", "x", source="a"), etag='"a"'), poll("b", "ok", broken)])
    assert store.count_items() == 0 and store.source_states(["a", "b"]) == {"a": SourceState(), "b": SourceState()}


def test_matches_and_entities_of_a_poll_are_stored_with_its_items(store: Store) -> None:
    hits = (Hit('say "hi"\\', "title", 0, 3), Hit("网络\n安全 🛰", "summary", 10, 15))
    analysis = Analysis(("RU", "CN", "RU"), ("UN",), "statement", (Match("r1", "cyber", hits, "snip", ((0, 3),)),))
    record = replace(poll("a", "ok", item("1", "x", source="a"), item("2", "y", source="a")),
                     analyses={"1": analysis})
    assert store.save_polls([record]) == [(2, 0)]
    stored = list(store.db.query("SELECT item_id, hits, marks FROM matches"))
    assert [(r["item_id"], json.loads(r["marks"])) for r in stored] == [(1, [[0, 3]])]
    assert stored[0]["hits"] == json.dumps([asdict(h) for h in hits], ensure_ascii=False)  # Hit's fields, all of them
    entities = store.db.conn.execute("SELECT item_id, kind, value FROM entities ORDER BY value").fetchall()
    assert entities == [(1, "country", "CN"), (1, "country", "RU"), (1, "org", "UN")]
    assert [r["id"] for r in store.search(SearchQuery(countries=("ru",)))] == [1]
    assert [r["id"] for r in store.search(SearchQuery(text="y"))] == [2]
