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
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from monitor.errors import AlreadyRunning, CorruptDatabase, NotOurDatabase, QueryError, StoreError
from monitor.models import Item, PollOutcome, Validators, iso
from monitor.store.migrations import APPLICATION_ID, MIGRATIONS

SCHEMA_VERSION = len(MIGRATIONS)
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
    def open(cls, path: str | Path, readonly: bool = False) -> Store:
        path = Path(path)
        _refuse_foreign(path)
        try:
            if not readonly:
                path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            store = cls(sqlite_utils.Database(conn), path)
            store._configure()
            if not readonly:
                store._migrate()
        except sqlite3.DatabaseError as e:
            raise _as_store_error(e, path) from None
        except OSError as e:
            raise StoreError(f"{path}: cannot open the database: {e}") from None
        return store

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _configure(self) -> None:
        conn = self.db.conn
        conn.execute("PRAGMA busy_timeout = 30000")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")

    def _migrate(self) -> None:
        version = self.db.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer diplowatch (schema {version}, this one knows "
                f"{SCHEMA_VERSION}): upgrade diplowatch"
            )
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.write():
                step(self.db)
                self.db.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self.db.conn.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so it never deadlocks upgrading."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- sources ---------------------------------------------------------------------------

    def source_state(self, source_id: str) -> SourceState:
        row = self.db.conn.execute(
            "SELECT etag, last_modified, consecutive_failures, next_due, status FROM sources WHERE id = ?",
            (source_id,),
        ).fetchone()
        if row is None:
            return SourceState()
        return SourceState(Validators(row[0], row[1]), row[2], row[3], row[4])

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
        with self.write() as conn:
            new, changed = self._save_items(conn, record)
            self._save_source(conn, record, new)
        return new, changed

    def known_hashes(self, source_id: str, guids: Sequence[str]) -> dict[str, str]:
        """guid -> stored content hash, for the guids already stored for this source."""
        out: dict[str, str] = {}
        for start in range(0, len(guids), 500):
            chunk = list(guids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT guid, content_hash FROM items WHERE source = ? AND guid IN ({marks})"
            out.update(self.db.conn.execute(sql, (source_id, *chunk)).fetchall())
        return out

    def _save_source(self, conn: sqlite3.Connection, record: PollRecord, new: int) -> None:
        o, now = record.outcome, iso(record.now)
        failed = o.status in ("failing", "blocked")
        existing = conn.execute("SELECT 1 FROM sources WHERE id = ?", (o.source,)).fetchone()
        if existing is None:
            conn.execute("INSERT INTO sources (id, url) VALUES (?, ?)", (o.source, record.url))
        conn.execute(
            """UPDATE sources SET url = ?, status = ?, last_attempt = ?, last_status = ?,
                 last_success = CASE WHEN ? THEN last_success ELSE ? END,
                 consecutive_failures = CASE WHEN ? THEN consecutive_failures + 1 ELSE 0 END,
                 last_error = CASE WHEN ? THEN ? ELSE NULL END,
                 last_warning = ?, next_due = ?, polls = polls + 1, failures = failures + ?,
                 new_items = new_items + ?
               WHERE id = ?""",
            (record.url, "ok" if not failed else o.status, now, o.http_status, failed, now, failed, failed,
             o.error, o.warning, iso(record.next_due), int(failed), new, o.source),
        )
        if record.validators is not None:
            conn.execute(
                "UPDATE sources SET etag = ?, last_modified = ? WHERE id = ?",
                (record.validators.etag, record.validators.last_modified, o.source),
            )

    def _save_items(self, conn: sqlite3.Connection, record: PollRecord) -> tuple[int, int]:
        new = changed = 0
        now = iso(record.now)
        for item in record.items:
            row = conn.execute(
                "SELECT id, content_hash, title, summary, first_seen FROM items WHERE source = ? AND guid = ?",
                (item.source, item.guid),
            ).fetchone()
            if row is not None and row[1] == item.content_hash:
                continue
            analysis = record.analyses.get(item.guid, Analysis())
            if row is None:
                item_id = _insert_item(conn, item, analysis, now)
                new += 1
            else:
                item_id = row[0]
                conn.execute(
                    "INSERT INTO item_versions (item_id, title, summary, content_hash, seen_from, replaced_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (item_id, row[2], row[3], row[1], row[4], now),
                )
                _update_item(conn, item_id, item, analysis, now)
                changed += 1
            _write_analysis(conn, item_id, analysis, now)
        return new, changed

    def sources_health(self) -> dict[str, dict[str, Any]]:
        sql = """SELECT s.*, (SELECT count(*) FROM items i WHERE i.source = s.id) AS items FROM sources s"""
        return {row["id"]: row for row in self.db.query(sql)}

    # -- items -----------------------------------------------------------------------------

    def search(self, query: SearchQuery) -> Iterator[dict[str, Any]]:
        """Items matching `query`, newest first, as plain dicts ready for output."""
        sql, params = _search_sql(query)
        try:
            cursor = self.db.conn.execute(sql, params)
            columns = [c[0] for c in cursor.description]
            for row in cursor:
                yield _output_row(dict(zip(columns, row, strict=True)))
        except sqlite3.OperationalError as e:
            if query.text and not any(w in str(e) for w in ("locked", "disk", "readonly", "memory")):
                raise QueryError(_query_hint(query.text, e)) from None  # FTS5's own syntax errors
            raise _as_store_error(e, self.path) from None

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


# -- writing items -----------------------------------------------------------------------------


def _insert_item(conn: sqlite3.Connection, item: Item, analysis: Analysis, now: str) -> int:
    published = iso(item.published)
    sort_time = min(published, now) if published else now  # a date in 2099 must not pin the top
    cursor = conn.execute(
        """INSERT INTO items (source, guid, url, title, summary, published, first_seen, updated,
             sort_time, lang, content_hash, doc_type, countries, orgs)
           VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)""",
        (item.source, item.guid, item.url, item.title, item.summary, published, now, sort_time,
         item.lang, item.content_hash, analysis.doc_type, _json(analysis.countries), _json(analysis.orgs)),
    )
    item_id = cursor.lastrowid
    conn.execute(
        "INSERT INTO items_fts (rowid, title, summary) VALUES (?, ?, ?)",
        (item_id, fts_text(item.title), fts_text(item.summary)),
    )
    return item_id


def _update_item(conn: sqlite3.Connection, item_id: int, item: Item, analysis: Analysis, now: str) -> None:
    conn.execute(
        """UPDATE items SET url = ?, title = ?, summary = ?, published = ?, updated = ?, lang = ?,
             content_hash = ?, doc_type = ?, countries = ?, orgs = ? WHERE id = ?""",
        (item.url, item.title, item.summary, iso(item.published), now, item.lang, item.content_hash,
         analysis.doc_type, _json(analysis.countries), _json(analysis.orgs), item_id),
    )
    conn.execute("DELETE FROM items_fts WHERE rowid = ?", (item_id,))
    conn.execute(
        "INSERT INTO items_fts (rowid, title, summary) VALUES (?, ?, ?)",
        (item_id, fts_text(item.title), fts_text(item.summary)),
    )


def _write_analysis(conn: sqlite3.Connection, item_id: int, analysis: Analysis, now: str) -> None:
    conn.execute("DELETE FROM entities WHERE item_id = ?", (item_id,))
    rows = [(item_id, "country", c) for c in analysis.countries] + [(item_id, "org", o) for o in analysis.orgs]
    conn.executemany("INSERT OR IGNORE INTO entities (item_id, kind, value) VALUES (?, ?, ?)", rows)
    replace_matches(conn, item_id, analysis.matches, now)


def replace_matches(conn: sqlite3.Connection, item_id: int, matches: Sequence[Any], now: str) -> None:
    """Keep the matches of rules that still fire (their first match time), add new ones, drop the rest."""
    fired = {m.rule for m in matches}
    stored = {r[0] for r in conn.execute("SELECT rule FROM matches WHERE item_id = ?", (item_id,))}
    for rule in stored - fired:
        conn.execute("DELETE FROM matches WHERE item_id = ? AND rule = ?", (item_id, rule))
    for m in matches:
        conn.execute(
            """INSERT INTO matches (item_id, rule, topic, hits, snippet, marks, matched_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (item_id, rule) DO UPDATE SET topic = excluded.topic, hits = excluded.hits,
                 snippet = excluded.snippet, marks = excluded.marks""",
            (item_id, m.rule, m.topic, json.dumps([asdict(h) for h in m.hits], ensure_ascii=False),
             m.snippet, json.dumps([list(s) for s in m.marks]), now),
        )


def _json(values: Sequence[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False)


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


def _search_sql(q: SearchQuery) -> tuple[str, list[Any]]:
    where, params, joins = [], [], ""
    if q.text and q.text.strip():
        joins = "JOIN items_fts ON items_fts.rowid = items.id"
        where.append("items_fts MATCH ?")
        params.append(fts_query(q.text))
    for column, values in (("items.source", q.sources), ("items.lang", q.langs), ("items.doc_type", q.doc_types)):
        if values:
            where.append(f"{column} IN ({','.join('?' * len(values))})")
            params.extend(values)
    for kind, values in (("country", q.countries), ("org", q.orgs)):
        if values:
            where.append(
                f"items.id IN (SELECT item_id FROM entities WHERE kind = '{kind}' "
                f"AND value IN ({','.join('?' * len(values))}))"
            )
            params.extend(v.upper() for v in values)
    for column, values in (("rule", q.rules), ("topic", q.topics)):
        if values:
            where.append(f"items.id IN (SELECT item_id FROM matches WHERE {column} IN ({','.join('?' * len(values))}))")
            params.extend(values)
    if q.matched:
        where.append("EXISTS (SELECT 1 FROM matches WHERE matches.item_id = items.id)")
    if q.since:
        where.append("items.sort_time >= ?")
        params.append(q.since)
    if q.until:
        where.append("items.sort_time < ?")
        params.append(q.until)
    sql = f"""SELECT items.*, (SELECT json_group_array(rule) FROM matches WHERE item_id = items.id) AS rules,
                     (SELECT json_group_array(DISTINCT topic) FROM matches WHERE item_id = items.id) AS topics
              FROM items {joins} {"WHERE " + " AND ".join(where) if where else ""}
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


def _refuse_foreign(path: Path) -> None:
    """Never open (let alone migrate) a file that is not a diplowatch database."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as f:
        header = f.read(100)
    if not header.startswith(b"SQLite format 3\x00"):
        raise CorruptDatabase(
            f"{path} is not an SQLite database (damaged, or some other file): refusing to touch it; "
            "move it away or point --db at another path"
        )
    app_id, user_version, tables = _identity(path)
    if app_id != APPLICATION_ID and (app_id != 0 or user_version != 0 or tables):
        raise NotOurDatabase(
            f"{path} is an SQLite database of another program (application_id {app_id}): refusing to "
            "touch it; point --db at another path"
        )


def _identity(path: Path) -> tuple[int, int, int]:
    """application_id, user_version and table count, read through SQLite (the WAL may hold them)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
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
    if "readonly" in text or "read-only" in text:
        return StoreError(f"{path}: the database is read-only ({text})")
    if "disk is full" in text or "full" in text:
        return StoreError(f"{path}: the disk is full ({text}); nothing was half-written")
    return StoreError(f"{path}: {text}")


@contextmanager
def run_lock(db_path: str | Path) -> Iterator[None]:
    """Held by `diplowatch run` so that a second one on the same database refuses to start.

    An OS file lock: the kernel releases it when the process dies, even by kill -9.
    """
    lock_path = Path(f"{db_path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
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
