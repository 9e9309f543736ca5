"""Versioned schema migrations. MIGRATIONS[n] brings a database from version n to n + 1.

Add a step at the end; never edit a released one. `PRAGMA user_version` holds the version and
`PRAGMA application_id` marks the file as ours.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

APPLICATION_ID = 0x44697057  # "DipW"


def _run(db: sqlite_utils.Database, script: str) -> None:
    """Statement by statement: executescript() would commit the migration's transaction early."""
    for statement in script.split(";\n"):
        if statement.strip():
            db.conn.execute(statement)


def _v1_initial(db: sqlite_utils.Database) -> None:
    _run(
        db,
        """
        CREATE TABLE sources (
            id TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'never polled',
            last_attempt TEXT, last_success TEXT, last_status INTEGER,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            last_error TEXT, last_warning TEXT,
            etag TEXT, last_modified TEXT, next_due TEXT,
            polls INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
            new_items INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE items (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            guid TEXT NOT NULL,
            url TEXT NOT NULL,
            title TEXT NOT NULL,
            summary TEXT NOT NULL,
            published TEXT,
            first_seen TEXT NOT NULL,
            updated TEXT,
            sort_time TEXT NOT NULL,
            lang TEXT,
            content_hash TEXT NOT NULL,
            doc_type TEXT,
            countries TEXT NOT NULL DEFAULT '[]',
            orgs TEXT NOT NULL DEFAULT '[]',
            UNIQUE (source, guid)
        );
        CREATE INDEX items_sort_time ON items (sort_time);
        CREATE INDEX items_url ON items (url);
        CREATE TABLE item_versions (
            id INTEGER PRIMARY KEY,
            item_id INTEGER NOT NULL REFERENCES items (id),
            title TEXT NOT NULL, summary TEXT NOT NULL, content_hash TEXT NOT NULL,
            seen_from TEXT NOT NULL, replaced_at TEXT NOT NULL
        );
        CREATE INDEX item_versions_item ON item_versions (item_id);
        CREATE TABLE entities (
            kind TEXT NOT NULL, value TEXT NOT NULL, item_id INTEGER NOT NULL REFERENCES items (id),
            PRIMARY KEY (kind, value, item_id)
        ) WITHOUT ROWID;
        CREATE INDEX entities_item ON entities (item_id);
        CREATE TABLE matches (
            item_id INTEGER NOT NULL REFERENCES items (id),
            rule TEXT NOT NULL, topic TEXT NOT NULL,
            hits TEXT NOT NULL, snippet TEXT NOT NULL, marks TEXT NOT NULL,
            matched_at TEXT NOT NULL,
            PRIMARY KEY (item_id, rule)
        );
        CREATE INDEX matches_rule ON matches (rule);
        CREATE INDEX matches_topic ON matches (topic);
        CREATE VIRTUAL TABLE items_fts USING fts5 (title, summary, tokenize = 'unicode61 remove_diacritics 2');
        """,
    )


def _v2_outbox(db: sqlite_utils.Database) -> None:
    """Digests and their delivery: the transactional outbox (monitor/store/outbox.py)."""
    _run(
        db,
        """
        CREATE TABLE subscriptions (
            name TEXT PRIMARY KEY,
            first_seen TEXT NOT NULL,
            last_run TEXT
        );
        CREATE TABLE digests (
            id TEXT PRIMARY KEY,
            subscription TEXT NOT NULL,
            channel TEXT NOT NULL,
            kind TEXT NOT NULL,
            created_at TEXT NOT NULL,
            payload TEXT,
            pending_after INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt TEXT NOT NULL,
            claimed_until TEXT,
            claimed_by TEXT,
            delivered_at TEXT,
            last_error TEXT
        );
        CREATE INDEX digests_due ON digests (state, next_attempt);
        CREATE UNIQUE INDEX digests_one_open ON digests (subscription, channel)
            WHERE state = 'pending' AND kind = 'digest';
        CREATE TABLE digest_items (
            digest_id TEXT NOT NULL REFERENCES digests (id),
            item_id INTEGER NOT NULL REFERENCES items (id),
            PRIMARY KEY (digest_id, item_id)
        ) WITHOUT ROWID;
        CREATE INDEX digest_items_item ON digest_items (item_id);
        CREATE TABLE delivered (
            subscription TEXT NOT NULL,
            channel TEXT NOT NULL,
            item_id INTEGER NOT NULL REFERENCES items (id),
            digest_id TEXT NOT NULL REFERENCES digests (id),
            delivered_at TEXT NOT NULL,
            PRIMARY KEY (subscription, channel, item_id)
        ) WITHOUT ROWID;
        CREATE TABLE delivery_attempts (
            id INTEGER PRIMARY KEY,
            digest_id TEXT NOT NULL REFERENCES digests (id),
            attempted_at TEXT NOT NULL,
            ok INTEGER NOT NULL,
            error TEXT
        );
        CREATE INDEX delivery_attempts_digest ON delivery_attempts (digest_id);
        CREATE TABLE source_alerts (
            source TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            raised_at TEXT NOT NULL,
            error TEXT
        );
        CREATE INDEX matches_matched_at ON matches (matched_at);
        """,
    )


def _v3_search_index(db: sqlite_utils.Database) -> None:
    """sort_time by id, for ordering full-text matches without reading each wide item row."""
    _run(db, "CREATE INDEX items_id_sort_time ON items (id, sort_time)")


MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (_v1_initial, _v2_outbox, _v3_search_index)
