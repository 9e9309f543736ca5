"""The outbox on a real SQLite file: what is pending, digests persisted before sending, delivered
marks with the attempt, roll-over, back-off, claims, and alerts raised once per broken source."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from digest_fixtures import DATA, NOW, Statement, fail_polls, ok_poll, store_statements, write_config
from ruamel.yaml import YAML

from monitor import alerts
from monitor.config import Config
from monitor.digest_cycle import holder, holder_alive, retry_delay, selection
from monitor.models import iso
from monitor.store import Store
from monitor.store.outbox import Outbox, Selection

SUB = """
smtp: {host: 127.0.0.1, port: 2525, security: none, sender: dw@example.org}
subscriptions:
  - name: desk
    every: 1h
    email: {to: [desk@example.org]}
    webhook: {url: "https://hooks.example.org/x"}
"""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store.open(tmp_path / "dw.db") as s:
        yield s


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return write_config(tmp_path / "sources.yaml", SUB)


def pending_guids(outbox: Outbox, sel: Selection) -> list[str]:
    ids = outbox.pending(sel)
    return [row[0] for row in outbox.conn.execute(
        f"SELECT guid FROM items WHERE id IN ({','.join('?' * len(ids))})", ids)] if ids else []


def sel(since: str = "2000-01-01T00:00:00Z", channel: str = "email", **kw: object) -> Selection:
    return Selection("desk", channel, since, **kw)  # type: ignore[arg-type]


# -- what a subscription receives --------------------------------------------------------------


def test_a_new_subscription_receives_what_was_matched_after_it_was_first_seen(store: Store, config: Config) -> None:
    outbox = Outbox(store)
    store_statements(store, [Statement("old", "Before the subscription existed")], NOW - timedelta(hours=1))
    outbox.register(["desk"], iso(NOW) or "")
    store_statements(store, [Statement("new", "After the subscription existed")], NOW + timedelta(minutes=1))
    sub = config.subscriptions[0]
    assert pending_guids(outbox, selection(outbox, config, sub, "email", NOW)) == ["new"]


def test_backfill_reaches_back_before_the_first_sighting(store: Store, tmp_path: Path) -> None:
    config = write_config(tmp_path / "s.yaml", SUB.replace("every: 1h", "every: 1h\n    backfill: 2h"))
    outbox = Outbox(store)
    store_statements(store, [Statement("old", "One hour before")], NOW - timedelta(hours=1))
    store_statements(store, [Statement("older", "Three hours before")], NOW - timedelta(hours=3))
    outbox.register(["desk"], iso(NOW) or "")
    assert pending_guids(outbox, selection(outbox, config, config.subscriptions[0], "email", NOW)) == ["old"]


def test_registering_twice_keeps_the_first_sighting(store: Store) -> None:
    outbox = Outbox(store)
    outbox.register(["desk"], "2026-01-01T00:00:00Z")
    outbox.register(["desk"], "2026-02-01T00:00:00Z")
    assert outbox.first_seen("desk") == "2026-01-01T00:00:00Z"


def _selection_cases() -> list:
    data = YAML(typ="safe").load((DATA / "selection.yaml").read_text(encoding="utf-8"))
    return [pytest.param(data["statements"], case, id=case["name"]) for case in data["cases"]]


@pytest.mark.parametrize(("statements", "case"), _selection_cases())
def test_selection(tmp_path: Path, store: Store, statements: list[dict], case: dict) -> None:
    store_statements(store, [Statement(**{**s, "countries": tuple(s.get("countries", ()))}) for s in statements])
    body = SUB.replace("    every: 1h\n", "    every: 1h\n    backfill: 1d\n" + "".join(
        f"    {key}: {value}\n" for key, value in case["subscription"].items()))
    config = write_config(tmp_path / "s.yaml", body)
    outbox = Outbox(store)
    found = pending_guids(outbox, selection(outbox, config, config.subscriptions[0], "email", NOW))
    assert sorted(found) == sorted(case["expected"])


# -- digests, delivered marks, roll-over -------------------------------------------------------


def test_items_matched_while_a_digest_is_sent_wait_for_the_next_one(store: Store) -> None:
    outbox = Outbox(store)
    store_statements(store, [Statement("a", "First"), Statement("b", "Second")])
    record = outbox.create_digest(sel(), iso(NOW) or "", max_items=100, min_items=1)
    assert record is not None and len(record.item_ids) == 2
    store_statements(store, [Statement("c", "Arrived during sending")], NOW + timedelta(seconds=5))
    outbox.record_success(record, iso(NOW) or "")
    assert pending_guids(outbox, sel()) == ["c"]
    delivered = store.db.conn.execute("SELECT count(*) FROM delivered WHERE digest_id = ?", (record.id,)).fetchone()
    assert delivered[0] == 2


def test_an_open_digest_holds_its_items_and_blocks_a_second_one(store: Store, tmp_path: Path) -> None:
    outbox = Outbox(store)
    store_statements(store, [Statement("a", "First")])
    first = outbox.create_digest(sel(), iso(NOW) or "", 100, 1)
    with Store.open(tmp_path / "dw.db") as other:  # a second process: its own connection
        assert Outbox(other).create_digest(sel(), iso(NOW) or "", 100, 1) is None
        assert Outbox(other).open_digest("desk", "email") == first
    assert pending_guids(outbox, sel()) == []  # held by the open digest, not pending twice


def test_delivery_on_one_channel_leaves_the_item_pending_on_the_other(store: Store) -> None:
    outbox = Outbox(store)
    store_statements(store, [Statement("a", "First")])
    record = outbox.create_digest(sel(), iso(NOW) or "", 100, 1)
    assert record is not None
    outbox.record_success(record, iso(NOW) or "")
    assert pending_guids(outbox, sel(channel="email")) == []
    assert pending_guids(outbox, sel(channel="webhook")) == ["a"]


def test_max_items_rolls_the_rest_over_oldest_first_and_drops_nothing(store: Store) -> None:
    outbox = Outbox(store)
    for n in range(5):
        store_statements(store, [Statement(f"s{n}", f"Statement {n}")], NOW + timedelta(minutes=n))
    sizes, seen = [], []
    while (record := outbox.create_digest(sel(), iso(NOW) or "", max_items=2, min_items=1)) is not None:
        sizes.append((len(record.item_ids), record.pending_after))
        seen += record.item_ids
        outbox.record_success(record, iso(NOW) or "")
    assert sizes == [(2, 3), (2, 1), (1, 0)]
    assert seen == sorted(seen) and len(set(seen)) == 5


@pytest.mark.parametrize(("pending", "min_items", "created"), [(0, 1, False), (0, 0, True), (2, 3, False),
                                                                (3, 3, True)])
def test_min_items(store: Store, pending: int, min_items: int, created: bool) -> None:
    store_statements(store, [Statement(f"s{n}", f"Statement {n}") for n in range(pending)])
    record = Outbox(store).create_digest(sel(), iso(NOW) or "", 100, min_items)
    assert (record is not None) == created


# -- failures, back-off, claims ----------------------------------------------------------------


@pytest.mark.parametrize(("attempts", "seconds"), [(1, 60), (2, 120), (3, 240), (6, 1920), (7, 3600), (40, 3600)])
def test_retry_delay_doubles_up_to_an_hour(attempts: int, seconds: float) -> None:
    assert retry_delay(attempts) == seconds


def test_a_failure_keeps_the_items_pending_until_the_back_off_passes(store: Store) -> None:
    outbox = Outbox(store)
    store_statements(store, [Statement("a", "First")])
    record = outbox.create_digest(sel(), iso(NOW) or "", 100, 1)
    assert record is not None
    outbox.record_failure(record, iso(NOW) or "", "HTTP 500", iso(NOW + timedelta(seconds=60)) or "")
    assert outbox.due(iso(NOW + timedelta(seconds=59)) or "") == []
    [due] = outbox.due(iso(NOW + timedelta(seconds=60)) or "")
    assert (due.id, due.attempts, due.item_ids) == (record.id, 1, record.item_ids)
    assert outbox.history(10)[0] | {"digest": None} == {
        "attempted_at": iso(NOW), "subscription": "desk", "channel": "email", "kind": "digest", "digest": None,
        "items": 1, "result": "failed", "error": "HTTP 500", "next_attempt": iso(NOW + timedelta(seconds=60))}


def test_a_claim_blocks_a_live_sender_but_not_one_that_was_killed(store: Store) -> None:
    outbox = Outbox(store)
    store_statements(store, [Statement("a", "First")])
    record = outbox.create_digest(sel(), iso(NOW) or "", 100, 1)
    assert record is not None
    until = iso(NOW + timedelta(minutes=5)) or ""
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert outbox.claim(record.id, iso(NOW) or "", until, f"{host}:{dead.stdout.strip()}:x", holder_alive)
    assert outbox.claim(record.id, iso(NOW) or "", until, holder(), holder_alive)  # the claimer is gone
    assert not outbox.claim(record.id, iso(NOW) or "", until, "other:1:x", holder_alive)  # we are alive


@pytest.mark.parametrize(("claimer", "alive"), [
    ("{host}:{pid}:{me}", True),  # this very process
    ("{host}:{pid}:earlier", False),  # an earlier process that had our pid (a restarted container)
    ("{host}:1:x", True),  # a live process of this host
    ("another-host:424242:x", True),  # another machine: its lease is trusted
    ("garbage", True),
])
def test_holder_alive(claimer: str, alive: bool) -> None:
    me = holder().rsplit(":", 1)[1]
    assert holder_alive(claimer.format(host=socket.gethostname(), pid=os.getpid(), me=me)) is alive


# -- alerts ------------------------------------------------------------------------------------

NAMES = {"mfa-example": "Mfa-Example", "news-example": "News-Example"}


def alert_changes(store: Store, at: int = 0) -> list[dict]:
    records = Outbox(store).update_alerts(lambda health: alerts.decide(health, 3, NAMES), [("desk", "email")],
                                          iso(NOW + timedelta(minutes=at)) or "")
    return [c for r in records for c in json.loads(r.payload or "[]")]


def test_a_source_failing_three_times_raises_one_alert_and_one_recovery_notice(store: Store) -> None:
    fail_polls(store, "mfa-example", 2)
    assert alert_changes(store) == []
    fail_polls(store, "mfa-example", 1)
    [raised] = alert_changes(store)
    assert (raised["source"], raised["state"], raised["consecutive_failures"]) == ("mfa-example", "failing", 3)
    assert "pw@" not in raised["error"] and "***" in raised["error"]  # credentials in URLs are redacted
    fail_polls(store, "mfa-example", 5)
    assert alert_changes(store, 1) == []  # not one per poll
    ok_poll(store, "mfa-example")
    assert [c["state"] for c in alert_changes(store, 2)] == ["recovered"]
    assert alert_changes(store, 3) == []


def test_a_blocked_source_alerts_at_once_and_unknown_sources_never(store: Store) -> None:
    fail_polls(store, "news-example", 1, status="blocked")
    fail_polls(store, "removed-source", 9)
    assert [(c["source"], c["state"]) for c in alert_changes(store)] == [("news-example", "blocked")]


def test_alerts_queue_one_notice_per_subscribed_channel(store: Store) -> None:
    fail_polls(store, "mfa-example", 3)
    records = Outbox(store).update_alerts(lambda h: alerts.decide(h, 3, NAMES),
                                          [("desk", "email"), ("desk", "webhook"), ("ops", "webhook")], iso(NOW) or "")
    assert sorted((r.subscription, r.channel, r.kind) for r in records) == [
        ("desk", "email", "alert"), ("desk", "webhook", "alert"), ("ops", "webhook", "alert")]
    assert Outbox(store).open_digest("desk", "email") is None  # alerts never block item digests
