"""The transactional outbox: every SQL statement about subscriptions, digests, deliveries and alerts.

A (subscription, channel, item) is pending until a digest holding it was delivered on that channel.
A digest (its stable id and item ids) is written BEFORE it is sent, and its success is recorded in
the same transaction that marks its items delivered, so a crash at any moment (kill -9 included)
either re-sends the same digest id or nothing: no item is ever lost, a repeat carries the same id.
At most one undelivered digest exists per (subscription, channel); new matches wait for the next.

What it must never do: mark an item delivered outside the transaction that records the attempt.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.store.core import Store

_CHUNK = 500


@dataclass(frozen=True)
class Selection:
    """Which matched items one (subscription, channel) receives."""

    subscription: str
    channel: str
    since: str  # ISO time: matches first stored at or after it
    rules: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    sources: tuple[str, ...] | None = None  # None: every source
    countries: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class DigestRecord:
    """A digest as persisted before sending: its id and item ids never change afterwards."""

    id: str
    subscription: str
    channel: str
    kind: str  # digest | alert
    created_at: str
    payload: str | None
    pending_after: int
    attempts: int
    next_attempt: str
    state: str
    item_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class StoredMatch:
    rule: str
    topic: str
    terms: tuple[str, ...]
    snippet: str
    marks: tuple[tuple[int, int], ...]
    matched_at: str


@dataclass(frozen=True)
class StoredItem:
    id: int
    source: str
    url: str
    title: str
    published: str | None
    first_seen: str
    sort_time: str
    lang: str | None
    countries: tuple[str, ...]
    orgs: tuple[str, ...]
    doc_type: str | None
    matches: tuple[StoredMatch, ...]


@dataclass(frozen=True)
class Neighbour:
    """Any stored item near in time: a candidate for "also reported by"."""

    id: int
    source: str
    url: str
    title: str
    sort_time: str


@dataclass(frozen=True)
class SourceHealth:
    source: str
    status: str
    consecutive_failures: int
    last_error: str | None
    last_success: str | None
    alerted: bool


class Outbox:
    """The delivery side of the store; shares the Store's connection and transactions."""

    def __init__(self, store: Store):
        self.store = store
        self.conn = store.db.conn

    # -- subscriptions -----------------------------------------------------------------------

    def register(self, names: Sequence[str], now: str) -> None:
        """Remember when each subscription was first seen: what a new one receives starts there."""
        with self.store.write() as conn:
            conn.executemany("INSERT OR IGNORE INTO subscriptions (name, first_seen) VALUES (?, ?)",
                             [(name, now) for name in names])

    def first_seen(self, name: str) -> str | None:
        row = self.conn.execute("SELECT first_seen FROM subscriptions WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def last_run(self, name: str) -> str | None:
        """When the subscription's schedule last ran (or when it was first seen)."""
        sql = "SELECT coalesce(last_run, first_seen) FROM subscriptions WHERE name = ?"
        row = self.conn.execute(sql, (name,)).fetchone()
        return row[0] if row else None

    def mark_run(self, name: str, now: str) -> None:
        with self.store.write() as conn:
            conn.execute("UPDATE subscriptions SET last_run = ? WHERE name = ?", (now, name))

    # -- pending items -----------------------------------------------------------------------

    def pending(self, sel: Selection) -> list[int]:
        """Ids of the items pending for `sel`, oldest match first (so a backlog drains in order)."""
        where, params = _selection_sql(sel)
        sql = f"""SELECT i.id FROM items i JOIN matches m ON m.item_id = i.id
                  WHERE {" AND ".join(where)}
                  GROUP BY i.id ORDER BY min(m.matched_at), i.id"""
        return [row[0] for row in self.conn.execute(sql, params)]

    def items(self, ids: Sequence[int], rules: Sequence[str] = (), topics: Sequence[str] = ()) -> list[StoredItem]:
        """The items with their matches (only those of `rules` / `topics` when given), in `ids` order."""
        matches = self._matches(ids, rules, topics)
        found: dict[int, StoredItem] = {}
        for chunk in _chunks(ids):
            sql = f"""SELECT id, source, url, title, published, first_seen, sort_time, lang, countries, orgs,
                             doc_type FROM items WHERE id IN ({_marks(chunk)})"""
            for r in self.conn.execute(sql, chunk):
                found[r[0]] = StoredItem(*r[:8], tuple(json.loads(r[8])), tuple(json.loads(r[9])), r[10],
                                         tuple(matches.get(r[0], ())))
        return [found[i] for i in ids if i in found]

    def _matches(self, ids: Sequence[int], rules: Sequence[str], topics: Sequence[str]) -> dict[int, list]:
        out: dict[int, list[StoredMatch]] = {}
        for chunk in _chunks(ids):
            sql = f"""SELECT item_id, rule, topic, hits, snippet, marks, matched_at FROM matches
                      WHERE item_id IN ({_marks(chunk)}) ORDER BY matched_at, rule"""
            for item_id, rule, topic, hits, snippet, marks, matched_at in self.conn.execute(sql, chunk):
                if (rules and rule not in rules) or (topics and topic not in topics):
                    continue
                terms = tuple(dict.fromkeys(h["term"] for h in json.loads(hits)))
                spans = tuple((int(s), int(e)) for s, e in json.loads(marks))
                out.setdefault(item_id, []).append(StoredMatch(rule, topic, terms, snippet, spans, matched_at))
        return out

    def neighbours(self, start: str, end: str) -> list[Neighbour]:
        sql = "SELECT id, source, url, title, sort_time FROM items WHERE sort_time BETWEEN ? AND ?"
        return [Neighbour(*row) for row in self.conn.execute(sql, (start, end))]

    # -- digests -----------------------------------------------------------------------------

    def open_digest(self, subscription: str, channel: str) -> DigestRecord | None:
        """The undelivered item digest of (subscription, channel), if any: it is re-sent, never rebuilt."""
        sql = f"{_DIGEST_SELECT} WHERE subscription = ? AND channel = ? AND state = 'pending' AND kind = 'digest'"
        row = self.conn.execute(sql, (subscription, channel)).fetchone()
        return self._record(row) if row else None

    def open_alerts(self, subscription: str, channel: str) -> list[DigestRecord]:
        sql = f"""{_DIGEST_SELECT} WHERE subscription = ? AND channel = ? AND state = 'pending'
                  AND kind = 'alert' ORDER BY created_at, id"""
        return [self._record(r) for r in self.conn.execute(sql, (subscription, channel))]

    def due(self, now: str) -> list[DigestRecord]:
        """Undelivered digests whose back-off has passed and that no process is sending."""
        sql = f"""{_DIGEST_SELECT} WHERE state = 'pending' AND next_attempt <= ?
                  AND (claimed_until IS NULL OR claimed_until <= ?) ORDER BY next_attempt, id"""
        return [self._record(r) for r in self.conn.execute(sql, (now, now))]

    def create_digest(self, sel: Selection, now: str, max_items: int, min_items: int) -> DigestRecord | None:
        """Persist the next digest of `sel` (before any sending); None when one is open or too few items.

        Selection and insertion share one write transaction, so two processes never build two digests
        of the same items.
        """
        with self.store.write() as conn:
            if self.open_digest(sel.subscription, sel.channel) is not None:
                return None
            pending = self.pending(sel)
            if len(pending) < min_items:
                return None
            chosen, digest_id = pending[:max_items], f"dw-{uuid.uuid4().hex}"
            conn.execute(
                """INSERT INTO digests (id, subscription, channel, kind, created_at, pending_after, next_attempt)
                   VALUES (?, ?, ?, 'digest', ?, ?, ?)""",
                (digest_id, sel.subscription, sel.channel, now, len(pending) - len(chosen), now),
            )
            conn.executemany("INSERT INTO digest_items (digest_id, item_id) VALUES (?, ?)",
                             [(digest_id, item_id) for item_id in chosen])
        return self.digest(digest_id)

    def digest(self, digest_id: str) -> DigestRecord | None:
        row = self.conn.execute(f"{_DIGEST_SELECT} WHERE id = ?", (digest_id,)).fetchone()
        return self._record(row) if row else None

    def _record(self, row: tuple) -> DigestRecord:
        sql = "SELECT item_id FROM digest_items WHERE digest_id = ? ORDER BY item_id"
        item_ids = tuple(r[0] for r in self.conn.execute(sql, (row[0],)))
        return DigestRecord(*row, item_ids=item_ids)

    def claim(self, digest_id: str, now: str, until: str, holder: str, alive: Callable[[str], bool]) -> bool:
        """Take the digest for sending until `until`; False while another live process holds it."""
        with self.store.write() as conn:
            row = conn.execute("SELECT claimed_until, claimed_by FROM digests WHERE id = ? AND state = 'pending'",
                               (digest_id,)).fetchone()
            if row is None or (row[0] and row[0] > now and row[1] and alive(row[1])):
                return False
            conn.execute("UPDATE digests SET claimed_until = ?, claimed_by = ? WHERE id = ?",
                         (until, holder, digest_id))
        return True

    def record_success(self, record: DigestRecord, now: str, note: str | None = None) -> None:
        """The attempt, the digest's new state and its items' delivered marks: one transaction."""
        with self.store.write() as conn:
            conn.execute("INSERT INTO delivery_attempts (digest_id, attempted_at, ok, error) VALUES (?, ?, 1, ?)",
                         (record.id, now, note))
            conn.execute(
                """UPDATE digests SET state = 'delivered', delivered_at = ?, attempts = attempts + 1,
                     claimed_until = NULL, claimed_by = NULL, last_error = ? WHERE id = ?""",
                (now, note, record.id),
            )
            conn.execute(
                """INSERT OR IGNORE INTO delivered (subscription, channel, item_id, digest_id, delivered_at)
                   SELECT ?, ?, item_id, digest_id, ? FROM digest_items WHERE digest_id = ?""",
                (record.subscription, record.channel, now, record.id),
            )

    def record_failure(self, record: DigestRecord, now: str, error: str, next_attempt: str) -> None:
        with self.store.write() as conn:
            conn.execute("INSERT INTO delivery_attempts (digest_id, attempted_at, ok, error) VALUES (?, ?, 0, ?)",
                         (record.id, now, error))
            conn.execute(
                """UPDATE digests SET attempts = attempts + 1, next_attempt = ?, last_error = ?,
                     claimed_until = NULL, claimed_by = NULL WHERE id = ?""",
                (next_attempt, error, record.id),
            )

    def history(self, limit: int) -> list[dict[str, Any]]:
        """Delivery attempts, newest first, as plain dicts ready for output."""
        sql = """SELECT a.attempted_at, d.subscription, d.channel, d.kind, d.id AS digest,
                        (SELECT count(*) FROM digest_items WHERE digest_id = d.id) AS items,
                        CASE WHEN a.ok THEN 'delivered' ELSE 'failed' END AS result, a.error,
                        CASE WHEN d.state = 'pending' THEN d.next_attempt END AS next_attempt
                 FROM delivery_attempts a JOIN digests d ON d.id = a.digest_id
                 ORDER BY a.id DESC LIMIT ?"""
        return list(self.store.db.query(sql, [limit]))

    # -- alerts for broken sources -----------------------------------------------------------

    def update_alerts(self, decide: Callable[[list[SourceHealth]], list[dict[str, Any]]],
                      targets: Sequence[tuple[str, str]], now: str) -> list[DigestRecord]:
        """Apply `decide` to the sources' health; record raised/recovered alerts and queue one notice
        per (subscription, channel) in `targets`, all in one transaction (never twice per change)."""
        with self.store.write() as conn:
            rows = conn.execute(
                """SELECT s.id, s.status, s.consecutive_failures, s.last_error, s.last_success,
                          a.source IS NOT NULL FROM sources s LEFT JOIN source_alerts a ON a.source = s.id"""
            ).fetchall()
            changes = decide([SourceHealth(*r[:5], bool(r[5])) for r in rows])
            for change in changes:
                self._write_alert_state(conn, change, now)
            ids = [self._queue_alert(conn, sub, channel, changes, now) for sub, channel in targets] if changes else []
        return [record for record in map(self.digest, ids) if record is not None]

    def _write_alert_state(self, conn: Any, change: dict[str, Any], now: str) -> None:
        if change["state"] == "recovered":
            conn.execute("DELETE FROM source_alerts WHERE source = ?", (change["source"],))
        else:
            conn.execute("INSERT OR REPLACE INTO source_alerts (source, status, raised_at, error) VALUES (?, ?, ?, ?)",
                         (change["source"], change["state"], now, change.get("error")))

    def _queue_alert(self, conn: Any, subscription: str, channel: str, changes: list, now: str) -> str:
        digest_id = f"dw-{uuid.uuid4().hex}"
        conn.execute(
            """INSERT INTO digests (id, subscription, channel, kind, created_at, payload, next_attempt)
               VALUES (?, ?, ?, 'alert', ?, ?, ?)""",
            (digest_id, subscription, channel, now, json.dumps(changes, ensure_ascii=False), now),
        )
        return digest_id


_DIGEST_SELECT = """SELECT id, subscription, channel, kind, created_at, payload, pending_after, attempts,
                           next_attempt, state FROM digests"""


def _selection_sql(sel: Selection) -> tuple[list[str], list[Any]]:
    where = [
        "m.matched_at >= ?",
        """NOT EXISTS (SELECT 1 FROM delivered d WHERE d.subscription = ? AND d.channel = ? AND d.item_id = i.id)""",
        """NOT EXISTS (SELECT 1 FROM digest_items di JOIN digests g ON g.id = di.digest_id
                       WHERE g.subscription = ? AND g.channel = ? AND g.state = 'pending' AND di.item_id = i.id)""",
    ]
    params: list[Any] = [sel.since, sel.subscription, sel.channel, sel.subscription, sel.channel]
    for column, values in (("m.rule", sel.rules), ("m.topic", sel.topics), ("i.lang", sel.languages)):
        if values:
            where.append(f"{column} IN ({_marks(values)})")
            params.extend(values)
    if sel.sources is not None:
        where.append(f"i.source IN ({_marks(sel.sources)})" if sel.sources else "0")
        params.extend(sel.sources)
    if sel.countries:
        countries = _marks(sel.countries)
        where.append(f"i.id IN (SELECT item_id FROM entities WHERE kind = 'country' AND value IN ({countries}))")
        params.extend(c.upper() for c in sel.countries)
    return where, params


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _chunks(values: Sequence[int]) -> list[list[int]]:
    return [list(values[i : i + _CHUNK]) for i in range(0, len(values), _CHUNK)]
