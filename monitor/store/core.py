"""Every SQL statement lives here. One SQLite file (WAL), created and migrated by the program.

What it must never do: overwrite or "repair" a file that is not ours or is damaged, or commit half
of a poll: a source's items and its new state (ETag, failures, next due time) land in one
transaction, so a crash at any moment leaves the previous poll's state and a rerun fetches again.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlite_utils

from monitor.errors import AlreadyRunning, CorruptDatabase, NotOurDatabase, QueryError, StoreError
from monitor.models import Item, PollOutcome, Validators, iso
from monitor.store.migrations import APPLICATION_ID, MIGRATIONS

SCHEMA_VERSION = len(MIGRATIONS)
_STATE_COLUMNS = "etag, last_modified, consecutive_failures, next_due, status"
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\u3040-\u30ff\U00020000-\U0002fa1f]+")


@dataclass(frozen=True)
class Analysis:
    """What matching and entity extraction found in one item (see match.py, entities.py)."""

    countries: tuple[str, ...] = ()
    orgs: tuple[str, ...] = ()
    doc_type: str | None = None
    matches: tuple[Any, ...] = ()  # monitor.match.Match


@dataclass(frozen=True)
class SourceState:
    validators: Validators = field(default_factory=Validators)
    consecutive_failures: int = 0
    next_due: str | None = None
    status: str = "never polled"


@dataclass(frozen=True)
class PollRecord:
    """Everything one poll of one source writes, in one transaction."""

    outcome: PollOutcome
    url: str
    now: datetime
    next_due: datetime
    validators: Validators | None = None  # None: keep the stored ones
    items: Sequence[Item] = ()
    analyses: Mapping[str, Analysis] = field(default_factory=dict)  # by guid, for new/changed items


@dataclass(frozen=True)
class SearchQuery:
    text: str | None = None
    sources: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    rules: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    orgs: tuple[str, ...] = ()
    doc_types: tuple[str, ...] = ()
    langs: tuple[str, ...] = ()
    matched: bool = False
    limit: int | None = None
    offset: int = 0


class Store:
    """The diplowatch database. Open with `Store.open(path)`; close when done."""

    def __init__(self, db: sqlite_utils.Database, path: Path):
        self.db = db
        self.path = path

    @classmethod
    def open(cls, path: str | Path, readonly: bool = False, verify: bool = False) -> Store:
        """Open (and, unless `readonly`, create or migrate) the database. A reader never creates a file.

        `verify` runs SQLite's quick_check first (about 0.3 s per 100,000 items), so that a damaged
        file is refused before anything is written to it; commands that write once per process use it.
        """
        path = Path(path)
        if readonly and not path.is_file():
            raise StoreError(f"no database at {path} yet: `diplowatch poll` or `diplowatch run` creates it")
        _refuse_a_file_as_folder(path)
        _refuse_foreign(path, verify)
        conn = None
        try:
            if not readonly:
                path.parent.mkdir(parents=True, exist_ok=True)
            conn = _connect(path, readonly)
            store = cls(sqlite_utils.Database(conn), path)
            store._configure(readonly)
            store._require_tables() if readonly else store._migrate()
        except sqlite3.DatabaseError as e:
            _close_quietly(conn)
            raise _as_store_error(e, path) from None
        except OSError as e:
            _close_quietly(conn)
            raise StoreError(f"{path}: cannot open the database: {e}") from None
        except StoreError:
            _close_quietly(conn)
            raise
        return store

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _configure(self, readonly: bool = False) -> None:
        conn = self.db.conn
        conn.execute("PRAGMA busy_timeout = 30000")
        if not readonly and conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")

    def _require_tables(self) -> None:
        if self._version() == 0:
            raise StoreError(f"{self.path} has no diplowatch tables yet: `diplowatch poll` or `run` creates them")

    def _version(self) -> int:
        version = self.db.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise _newer(self.path, version)
        return version

    def _migrate(self) -> None:
        version = self._version()
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.write():
                step(self.db)
                self.db.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self.db.conn.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so it never deadlocks upgrading."""
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite has already rolled back after SQLITE_FULL and some I/O errors
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as e:  # a full disk, a read-only file, a lock held too long: for people
            raise _as_store_error(e, self.path) from None

    # -- sources ---------------------------------------------------------------------------

    def source_state(self, source_id: str) -> SourceState:
        sql = f"SELECT {_STATE_COLUMNS} FROM sources WHERE id = ?"
        row = self.db.conn.execute(sql, (source_id,)).fetchone()
        return SourceState() if row is None else _state_of(row)

    def source_states(self, source_ids: Sequence[str]) -> dict[str, SourceState]:
        """source_state of each of `source_ids`, in one query (a source never polled has the default state).

        The ids travel as one JSON array, so the statement is the same (and prepared once) for any count.
        """
        sql = f"SELECT id, {_STATE_COLUMNS} FROM sources WHERE id IN (SELECT value FROM json_each(?))"
        found = {row[0]: _state_of(row[1:]) for row in self.db.conn.execute(sql, (json.dumps(list(source_ids)),))}
        return {s: found[s] if s in found else SourceState() for s in source_ids}

    def due_sources(self, source_ids: Sequence[str], now: datetime) -> list[str]:
        """The ids among `source_ids` whose next poll is due (never-polled sources are due)."""
        rows = self.db.conn.execute("SELECT id, next_due FROM sources").fetchall()
        next_due = {r[0]: r[1] for r in rows}
        moment = iso(now)
        return [s for s in source_ids if not next_due.get(s) or next_due[s] <= moment]

    def next_due_times(self) -> dict[str, str | None]:
        return dict(self.db.conn.execute("SELECT id, next_due FROM sources").fetchall())

    def save_poll(self, record: PollRecord) -> tuple[int, int]:
        """Store the items and the source's new state together; returns (new, changed) counts."""
        return self.save_polls([record])[0]

    def save_polls(self, records: Sequence[PollRecord]) -> list[tuple[int, int]]:
        """save_poll of each record in turn, all in one transaction; (new, changed) counts per record.

        One commit for a whole round of polls: for sources that answered 304, the commit is most of the cost.
        """
        if not records:
            return []
        with self.write() as conn:
            counts = [_save_items(conn, r) if r.items else (0, 0) for r in records]
            _save_sources(conn, records, [new for new, _ in counts])  # no source row is read by _save_items
        return counts

    def known_hashes(self, source_id: str, guids: Sequence[str]) -> dict[str, str]:
        """guid -> stored content hash, for the guids already stored for this source."""
        out: dict[str, str] = {}
        for start in range(0, len(guids), 500):
            chunk = list(guids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT guid, content_hash FROM items WHERE source = ? AND guid IN ({marks})"
            out.update(self.db.conn.execute(sql, (source_id, *chunk)).fetchall())
        return out

    def sources_health(self) -> dict[str, dict[str, Any]]:
        sql = """SELECT s.*, (SELECT count(*) FROM items i WHERE i.source = s.id) AS items FROM sources s"""
        return {row["id"]: row for row in self.db.query(sql)}

    # -- items -----------------------------------------------------------------------------

    def search(self, query: SearchQuery) -> Iterator[dict[str, Any]]:
        """Items matching `query`, newest first, as plain dicts ready for output."""
        try:
            if query.limit is None:  # every match, streamed (export)
                yield from self._rows(*_search_sql(query, self._dense_filters(query), _COLUMNS))
            else:
                yield from self._rows_of(self._page_ids(query))
        except sqlite3.OperationalError as e:
            if query.text and not any(w in str(e) for w in ("locked", "disk", "readonly", "memory", "no such")):
                raise QueryError(_query_hint(query.text, e)) from None  # FTS5's own syntax errors
            raise _as_store_error(e, self.path) from None

    def _rows(self, sql: str, params: Sequence[Any]) -> Iterator[dict[str, Any]]:
        cursor = self.db.conn.execute(sql, params)
        columns = [c[0] for c in cursor.description]
        for row in cursor:
            yield _output_row(dict(zip(columns, row, strict=True)))

    def _rows_of(self, ids: Sequence[int]) -> Iterator[dict[str, Any]]:
        """The output rows of `ids`, in that order: wide columns and per-item subqueries for a page only."""
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            sql = f"SELECT {_COLUMNS} FROM items WHERE items.id IN ({','.join('?' * len(chunk))})"
            rows = {row["id"]: row for row in self._rows(sql, chunk)}
            yield from (rows[i] for i in chunk if i in rows)

    def _page_ids(self, q: SearchQuery) -> list[int]:
        """The ids of one page, found on narrow index rows.

        A text query is first run over the newest ids only, in windows growing fourfold. A window's
        page is the true page once it is full and no older id sorts above its last row (ids grow
        with first_seen, and sort_time is never after first_seen, so this is rare, but checked).
        """
        dense = self._dense_filters(q)
        if not (q.text and q.text.strip()) or not q.limit:
            return [r[0] for r in self.db.conn.execute(*_search_sql(q, dense, "items.id"))]
        newest = self.db.conn.execute("SELECT max(rowid) FROM items_fts").fetchone()[0] or 0
        span = _FIRST_WINDOW
        while True:
            low = newest - span
            rows = self.db.conn.execute(*_search_sql(q, dense, "items.id, items.sort_time", low)).fetchall()
            if low <= 0 or (len(rows) == q.limit and not self._sorts_above(rows[-1][1], low)):
                return [r[0] for r in rows]
            span *= 4

    def _sorts_above(self, sort_time: str, low: int) -> bool:
        sql = "SELECT 1 FROM items INDEXED BY items_sort_time WHERE sort_time > ? AND id <= ? LIMIT 1"
        return self.db.conn.execute(sql, (sort_time, low)).fetchone() is not None

    def _dense_filters(self, q: SearchQuery) -> frozenset[str]:
        """The entity and match filters that hold many items: tested per item rather than listed first."""
        dense = set()
        for name, (table, condition, _, values) in _list_filters(q).items():
            sql = f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {condition} LIMIT {_DENSE})"
            if self.db.conn.execute(sql, values).fetchone()[0] >= _DENSE:
                dense.add(name)
        return frozenset(dense)

    def item_batches(self, since: str | None = None, size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Stored items in id order, `size` at a time (for re-running rules over history)."""
        last = 0
        while True:
            sql = "SELECT id, source, title, summary, lang FROM items WHERE id > ?"
            params: list[Any] = [last]
            if since:
                sql += " AND sort_time >= ?"
                params.append(since)
            rows = list(self.db.query(sql + " ORDER BY id LIMIT ?", [*params, size]))
            if not rows:
                return
            yield rows
            last = rows[-1]["id"]

    def save_analyses(self, analyses: Sequence[tuple[int, Analysis]], now: datetime) -> None:
        """Replace the matches and entities of existing items, in one transaction."""
        moment = iso(now)
        with self.write() as conn:
            for item_id, analysis in analyses:
                conn.execute(
                    "UPDATE items SET doc_type = ?, countries = ?, orgs = ? WHERE id = ?",
                    (analysis.doc_type, _json(analysis.countries), _json(analysis.orgs), item_id),
                )
                _write_analysis(conn, item_id, analysis, moment)

    def count_items(self) -> int:
        return self.db.conn.execute("SELECT count(*) FROM items").fetchone()[0]


# -- writing polls ----------------------------------------------------------------------------
# One executemany per table for all the new items of a poll: per-row statements cost more than the rows.

# A source's row after one poll: a new source starts from the defaults, a stored one adds to its counters;
# validators of None (a 304, a failure) keep the stored ETag and Last-Modified.
_UPSERT_SOURCE = """
    INSERT INTO sources (id, url, status, last_attempt, last_status, last_success, consecutive_failures, last_error,
                         last_warning, etag, last_modified, next_due, polls, failures, new_items)
    VALUES (:id, :url, :status, :now, :http_status, :success, :failed, :error, :warning, :etag, :last_modified,
            :next_due, 1, :failed, :new)
    ON CONFLICT (id) DO UPDATE SET url = excluded.url, status = excluded.status, last_attempt = excluded.last_attempt,
      last_status = excluded.last_status, last_success = coalesce(excluded.last_success, last_success),
      consecutive_failures = CASE WHEN :failed THEN consecutive_failures + 1 ELSE 0 END,
      last_error = excluded.last_error, last_warning = excluded.last_warning,
      etag = CASE WHEN :keep_validators THEN etag ELSE excluded.etag END,
      last_modified = CASE WHEN :keep_validators THEN last_modified ELSE excluded.last_modified END,
      next_due = excluded.next_due, polls = polls + 1, failures = failures + :failed, new_items = new_items + :new"""
_INSERT_ITEM = """INSERT INTO items (id, source, guid, url, title, summary, published, first_seen, updated,
                    sort_time, lang, content_hash, doc_type, countries, orgs)
                  VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)"""
_INSERT_FTS = "INSERT INTO items_fts (rowid, title, summary) VALUES (?, ?, ?)"
_INSERT_ENTITY = "INSERT OR IGNORE INTO entities (item_id, kind, value) VALUES (?, ?, ?)"
_UPSERT_MATCH = """INSERT INTO matches (item_id, rule, topic, hits, snippet, marks, matched_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (item_id, rule) DO UPDATE SET topic = excluded.topic, hits = excluded.hits,
                     snippet = excluded.snippet, marks = excluded.marks"""


@dataclass(frozen=True)
class _Stored:
    """An item's stored version: what an edit compares against and keeps in item_versions."""

    id: int
    content_hash: str
    title: str
    summary: str
    first_seen: str


@dataclass
class _Sorted:
    """A poll's items that need writing: new ones with the ids they will get, and edits of stored ones."""

    new: list[tuple[int, Item, Analysis]] = field(default_factory=list)
    edits: list[tuple[_Stored, Item, Analysis]] = field(default_factory=list)


def _save_sources(conn: sqlite3.Connection, records: Sequence[PollRecord], new_counts: Sequence[int]) -> None:
    """Each record's source row, in record order: created by its first poll, then updated by each."""
    conn.executemany(_UPSERT_SOURCE, [_source_row(r, new) for r, new in zip(records, new_counts, strict=True)])


def _source_row(record: PollRecord, new: int) -> dict[str, Any]:
    o, now, validators = record.outcome, iso(record.now), record.validators or Validators()
    failed = int(o.status in ("failing", "blocked"))
    return {"id": o.source, "url": record.url, "status": o.status if failed else "ok", "now": now,
            "http_status": o.http_status, "success": None if failed else now, "failed": failed,
            "error": o.error if failed else None, "warning": o.warning, "next_due": iso(record.next_due),
            "new": new, "keep_validators": record.validators is None, "etag": validators.etag,
            "last_modified": validators.last_modified}


def _state_of(row: Sequence[Any]) -> SourceState:
    etag, last_modified, consecutive_failures, next_due, status = row
    return SourceState(Validators(etag, last_modified), consecutive_failures, next_due, status)


def _save_items(conn: sqlite3.Connection, record: PollRecord) -> tuple[int, int]:
    """A poll's new and edited items; returns (new, changed) counts."""
    now = iso(record.now)
    stored = _stored_items(conn, record.items)
    batch = _sort_items(record, stored, _next_item_id(conn), now)
    _insert_items(conn, batch.new, now)
    for before, item, analysis in batch.edits:  # edits are rare: one at a time, in feed order
        _edit_item(conn, before, item, analysis, now)
    return len(batch.new), len(batch.edits)


def _stored_items(conn: sqlite3.Connection, items: Sequence[Item]) -> dict[tuple[str, str], _Stored]:
    """(source, guid) -> stored version, for those of `items` already stored: one query per source."""
    guids: dict[str, list[str]] = {}
    for item in items:
        guids.setdefault(item.source, []).append(item.guid)
    sql = """SELECT guid, id, content_hash, title, summary, first_seen FROM items
             WHERE source = ? AND guid IN (SELECT value FROM json_each(?))"""
    return {(source, row[0]): _Stored(*row[1:])
            for source, chunk in guids.items() for row in conn.execute(sql, (source, json.dumps(chunk)))}


def _next_item_id(conn: sqlite3.Connection) -> int:
    """The id SQLite would give the next item: max + 1, as items has no AUTOINCREMENT.

    Known ids let one executemany per table write a poll's items, FTS rows, entities and matches without
    reading each id back; safe because the caller holds the write transaction.
    """
    return conn.execute("SELECT coalesce(max(id), 0) + 1 FROM items").fetchone()[0]


def _sort_items(record: PollRecord, stored: dict[tuple[str, str], _Stored], next_id: int, now: str) -> _Sorted:
    """The poll's new and edited items in feed order; unchanged ones are skipped.

    `stored` follows along, so a guid repeated within the poll is compared with its earlier copy, as if
    the copies had been saved one by one.
    """
    batch, none = _Sorted(), Analysis()
    for item in record.items:
        key = (item.source, item.guid)
        before = stored.get(key)
        if before is not None and before.content_hash == item.content_hash:
            continue
        analysis = record.analyses.get(item.guid, none)
        if before is None:
            item_id, first_seen = next_id + len(batch.new), now
            batch.new.append((item_id, item, analysis))
        else:
            item_id, first_seen = before.id, before.first_seen
            batch.edits.append((before, item, analysis))
        stored[key] = _Stored(item_id, item.content_hash, item.title, item.summary, first_seen)
    return batch


def _insert_items(conn: sqlite3.Connection, new: Sequence[tuple[int, Item, Analysis]], now: str) -> None:
    """New items with their FTS rows, entities and matches (none of which can be stored yet)."""
    if not new:
        return
    conn.executemany(_INSERT_ITEM, [_item_row(item_id, item, analysis, now) for item_id, item, analysis in new])
    conn.executemany(_INSERT_FTS, [(item_id, fts_text(item.title), fts_text(item.summary)) for item_id, item, _ in new])
    conn.executemany(_INSERT_ENTITY, [row for item_id, _, analysis in new for row in _entity_rows(item_id, analysis)])
    conn.executemany(_UPSERT_MATCH, [_match_row(item_id, m, now) for item_id, _, analysis in new
                                     for m in analysis.matches])


def _item_row(item_id: int, item: Item, analysis: Analysis, now: str) -> tuple[Any, ...]:
    published = iso(item.published)
    sort_time = min(published, now) if published else now  # a date in 2099 must not pin the top
    return (item_id, item.source, item.guid, item.url, item.title, item.summary, published, now, sort_time,
            item.lang, item.content_hash, analysis.doc_type, _json(analysis.countries), _json(analysis.orgs))


def _edit_item(conn: sqlite3.Connection, before: _Stored, item: Item, analysis: Analysis, now: str) -> None:
    """Keep the stored version in item_versions, then overwrite the item, its FTS row, entities and matches."""
    conn.execute(
        "INSERT INTO item_versions (item_id, title, summary, content_hash, seen_from, replaced_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (before.id, before.title, before.summary, before.content_hash, before.first_seen, now),
    )
    _update_item(conn, before.id, item, analysis, now)
    _write_analysis(conn, before.id, analysis, now)


def _update_item(conn: sqlite3.Connection, item_id: int, item: Item, analysis: Analysis, now: str) -> None:
    conn.execute(
        """UPDATE items SET url = ?, title = ?, summary = ?, published = ?, updated = ?, lang = ?,
             content_hash = ?, doc_type = ?, countries = ?, orgs = ? WHERE id = ?""",
        (item.url, item.title, item.summary, iso(item.published), now, item.lang, item.content_hash,
         analysis.doc_type, _json(analysis.countries), _json(analysis.orgs), item_id),
    )
    conn.execute("DELETE FROM items_fts WHERE rowid = ?", (item_id,))
    conn.execute(_INSERT_FTS, (item_id, fts_text(item.title), fts_text(item.summary)))


def _write_analysis(conn: sqlite3.Connection, item_id: int, analysis: Analysis, now: str) -> None:
    """Replace a stored item's entities and matches."""
    conn.execute("DELETE FROM entities WHERE item_id = ?", (item_id,))
    conn.executemany(_INSERT_ENTITY, _entity_rows(item_id, analysis))
    replace_matches(conn, item_id, analysis.matches, now)


def _entity_rows(item_id: int, analysis: Analysis) -> list[tuple[int, str, str]]:
    return [(item_id, "country", c) for c in analysis.countries] + [(item_id, "org", o) for o in analysis.orgs]


def replace_matches(conn: sqlite3.Connection, item_id: int, matches: Sequence[Any], now: str) -> None:
    """Keep the matches of rules that still fire (their first match time), add new ones, drop the rest."""
    fired = {m.rule for m in matches}
    stored = {r[0] for r in conn.execute("SELECT rule FROM matches WHERE item_id = ?", (item_id,))}
    for rule in stored - fired:
        conn.execute("DELETE FROM matches WHERE item_id = ? AND rule = ?", (item_id, rule))
    conn.executemany(_UPSERT_MATCH, [_match_row(item_id, m, now) for m in matches])


def _match_row(item_id: int, match: Any, now: str) -> tuple[Any, ...]:
    return (item_id, match.rule, match.topic, _hits_json(match.hits), match.snippet, json.dumps(match.marks), now)


def _hits_json(hits: Sequence[Any]) -> str:
    """The Hits as JSON objects, the text json.dumps([asdict(h) ...], ensure_ascii=False) writes.

    Written directly because json.dumps of a dict per hit was half the cost of storing an item; a test
    holds the two texts together, so a field added to Hit fails it rather than going missing.
    """
    return "[" + ", ".join([f'{{"term": {encode_basestring(h.term)}, "field": {encode_basestring(h.field)}, '
                            f'"start": {h.start}, "end": {h.end}}}' for h in hits]) + "]"


def _json(values: Sequence[str]) -> str:
    """A JSON array of strings, the text json.dumps(list(values), ensure_ascii=False) writes, without its set-up."""
    return "[" + ", ".join(map(encode_basestring, values)) + "]"


# -- full-text search --------------------------------------------------------------------------


def fts_text(text: str) -> str:
    """Space out CJK characters so that FTS5's unicode61 tokenizer indexes each one.

    The default tokenizer reads a run of Chinese as one giant token and finds nothing inside it;
    one token per character plus phrase queries ("网 络 安 全") finds any substring instead.
    """
    return _CJK.sub(lambda m: " " + " ".join(m.group(0)) + " ", text)


def fts_query(text: str) -> str:
    """The user's query with CJK runs turned into phrases of single characters."""
    out, quoted, last = [], False, 0
    for m in _CJK.finditer(text):
        quoted ^= text.count('"', last, m.start()) % 2 == 1
        last = m.start()
        spaced = " ".join(m.group(0))
        out.append((m.start(), m.end(), spaced if quoted else f'"{spaced}"'))
    for start, end, replacement in reversed(out):
        text = text[:start] + replacement + text[end:]
    return text


_COLUMNS = """items.*, (SELECT json_group_array(rule) FROM matches WHERE item_id = items.id) AS rules,
    (SELECT json_group_array(DISTINCT topic) FROM matches WHERE item_id = items.id) AS topics"""
_FIRST_WINDOW = 4000  # newest ids a text query looks at first
_DENSE = 5000  # a filter naming at least this many items is tested per item, not listed


def _list_filters(q: SearchQuery) -> dict[str, tuple[str, str, str, list[str]]]:
    """Filters on entities and matches: name -> (table, condition to list, condition per item, parameters).

    Per item, a match is looked up by its item_id (the unary + keeps SQLite off the rule/topic index).
    """
    out = {}
    for kind, values in (("country", q.countries), ("org", q.orgs)):
        if values:
            condition = f"kind = '{kind}' AND value IN ({','.join('?' * len(values))})"
            out[kind] = ("entities", condition, condition, [v.upper() for v in values])
    for column, values in (("rule", q.rules), ("topic", q.topics)):
        if values:
            marks = ",".join("?" * len(values))
            out[column] = ("matches", f"{column} IN ({marks})", f"+{column} IN ({marks})", list(values))
    return out


def _search_sql(q: SearchQuery, dense: frozenset[str], columns: str, above_id: int | None = None
                ) -> tuple[str, list[Any]]:
    """SELECT `columns` of the matching items, newest first; LIMIT/OFFSET when the query has a limit.

    A sparse filter lists its items first (IN); a dense one is tested per item (EXISTS), so a page
    is read off the sort_time index. With text, FTS5 drives, and sort_time is read from the narrow
    (id, sort_time) index rather than from each wide row.
    """
    where, params, joins, table = [], [], "", "items"
    if q.text and q.text.strip():
        joins = "JOIN items_fts ON items_fts.rowid = items.id"
        table = "items INDEXED BY items_id_sort_time" if columns != _COLUMNS else "items"
        where.append("items_fts MATCH ?")
        params.append(fts_query(q.text))
        if above_id is not None:
            where.append("items_fts.rowid > ?")
            params.append(above_id)
    for column, values in (("items.source", q.sources), ("items.lang", q.langs), ("items.doc_type", q.doc_types)):
        if values:
            where.append(f"{column} IN ({','.join('?' * len(values))})")
            params.extend(values)
    for name, (filter_table, listed, tested, values) in _list_filters(q).items():
        if name in dense:
            where.append(f"EXISTS (SELECT 1 FROM {filter_table} WHERE {tested} AND item_id = items.id)")
        else:
            where.append(f"items.id IN (SELECT item_id FROM {filter_table} WHERE {listed})")
        params.extend(values)
    if q.matched:
        where.append("EXISTS (SELECT 1 FROM matches WHERE matches.item_id = items.id)")
    if q.since:
        where.append("items.sort_time >= ?")
        params.append(q.since)
    if q.until:
        where.append("items.sort_time < ?")
        params.append(q.until)
    sql = f"""SELECT {columns} FROM {table} {joins} {"WHERE " + " AND ".join(where) if where else ""}
              ORDER BY items.sort_time DESC, items.id DESC"""
    if q.limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params.extend([q.limit, q.offset])
    return sql, params


def _output_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "source": row["source"],
        "url": row["url"],
        "title": row["title"],
        "published": row["published"],
        "first_seen": row["first_seen"],
        "updated": row["updated"],
        "lang": row["lang"],
        "summary": row["summary"],
        "rules": json.loads(row["rules"] or "[]"),
        "topics": json.loads(row["topics"] or "[]"),
        "countries": json.loads(row["countries"] or "[]"),
        "orgs": json.loads(row["orgs"] or "[]"),
        "doc_type": row["doc_type"],
        "guid": row["guid"],
    }


def _query_hint(text: str | None, error: Exception) -> str:
    return (
        f"cannot read the search query {text!r} ({error}). Write words, \"quoted phrases\", "
        "AND / OR / NOT in capitals, prefix* and (parentheses); quote anything with punctuation."
    )


# -- opening safely ----------------------------------------------------------------------------


def _refuse_a_file_as_folder(path: Path) -> None:
    for folder in path.parents:
        if folder.exists():
            if not folder.is_dir():
                raise StoreError(f"{path}: cannot create the database: {folder} is a file, not a folder")
            return


def _refuse_foreign(path: Path, verify: bool = False) -> None:
    """Never open (let alone migrate) a file that is not a diplowatch database, or (`verify`) a damaged one."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as f:
        header = f.read(100)
    if not header.startswith(b"SQLite format 3\x00"):
        raise CorruptDatabase(
            f"{path} is not an SQLite database (damaged, or some other file): refusing to touch it; "
            "move it away or point --db at another path"
        )
    sidecars = [p for p in (Path(f"{path}-wal"), Path(f"{path}-shm")) if not p.exists()]
    try:
        app_id, user_version, tables = _identity(path, verify)
    except StoreError:
        _remove_empty_sidecars(sidecars)
        raise
    if app_id != APPLICATION_ID and (app_id != 0 or user_version != 0 or tables):
        _remove_empty_sidecars(sidecars)
        raise NotOurDatabase(
            f"{path} is an SQLite database of another program (application_id {app_id}): refusing to "
            "touch it; point --db at another path"
        )
    if user_version > SCHEMA_VERSION:
        _remove_empty_sidecars(sidecars)
        raise _newer(path, user_version)


def _newer(path: Path, version: int) -> StoreError:
    return StoreError(f"{path} was written by a newer diplowatch (schema {version}, this one knows "
                      f"{SCHEMA_VERSION}): upgrade diplowatch; the file was not modified")


def _remove_empty_sidecars(created: Sequence[Path]) -> None:
    """Reading a WAL-mode file creates its -wal and -shm; a refused file is left as we found it."""
    wal = [p for p in created if p.name.endswith("-wal")]
    if all(p.exists() and p.stat().st_size == 0 for p in wal):  # an empty WAL holds nothing: no data lost
        for sidecar in created:
            sidecar.unlink(missing_ok=True)


def _connect(path: Path, readonly: bool, timeout: float = 30) -> sqlite3.Connection:
    """A connection; a reader's is read-only (mode=ro), and immutable on storage no one can write."""
    if not readonly:
        return sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # WAL needs its -shm: fails on read-only storage
        return conn
    except sqlite3.OperationalError:
        if os.access(path.parent, os.W_OK):
            raise
    # read-only storage (a backup, a read-only volume): nobody can write the file, so reading it as immutable is safe
    return sqlite3.connect(f"{uri}&immutable=1", uri=True, timeout=timeout, isolation_level=None,
                           check_same_thread=False)


def _close_quietly(conn: sqlite3.Connection | None) -> None:
    if conn is not None:
        conn.close()


def _identity(path: Path, verify: bool = False) -> tuple[int, int, int]:
    """application_id, user_version and table count, read through SQLite (the WAL may hold them).

    Read-only on purpose: a read-write connection would checkpoint the WAL into a damaged file on close.
    """
    try:
        conn = _connect(path, readonly=True)
        try:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")] if verify else ["ok"]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError(f"database disk image is malformed: {'; '.join(problems)}")
            return (conn.execute("PRAGMA application_id").fetchone()[0],
                    conn.execute("PRAGMA user_version").fetchone()[0],
                    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise _as_store_error(e, path) from None


def _as_store_error(error: sqlite3.DatabaseError, path: Path) -> StoreError:
    text = str(error)
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return CorruptDatabase(f"{path} is damaged ({text}): it was not modified; restore a backup")
    if "readonly" in text or ("unable to open" in text and not os.access(path.parent, os.W_OK)):
        return StoreError(f"{path}: the database or its folder is read-only ({text}); diplowatch writes the "
                          "database and its -wal and -shm files there: give it a writable volume")
    if "disk is full" in text or "full" in text:
        return StoreError(f"{path}: the disk is full ({text}); nothing was half-written")
    return StoreError(f"{path}: {text}")


@contextmanager
def run_lock(db_path: str | Path) -> Iterator[None]:
    """Held by `diplowatch run` so that a second one on the same database refuses to start.

    An OS file lock: the kernel releases it when the process dies, even by kill -9.
    """
    lock_path = Path(f"{db_path}.lock")
    _refuse_a_file_as_folder(lock_path)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StoreError(f"{lock_path}: cannot create the lock file of `run` ({e.strerror}); the database's "
                         "folder must be writable") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise AlreadyRunning(
                f"another `diplowatch run` (pid {holder}) is already using {db_path}; stop it first, "
                "or give this one its own --db"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
