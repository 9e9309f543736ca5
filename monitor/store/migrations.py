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


MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (_v1_initial,)
