"""The digest cycle, top to bottom: pending items -> digest persisted -> sent -> outcome recorded.

Each step is in the store before the next begins (store/outbox.py), so a crash anywhere re-sends
the same digest id later or sends nothing: no pending item is ever lost. A failed channel is
retried with exponential back-off (RETRY_FIRST doubling up to RETRY_CAP, for ever) and holds up
nothing but itself. Used by `diplowatch digest` and by the jobs of `diplowatch run`.

What a subscription receives: items whose first match of its selection was stored at or after
the moment the subscription was first seen (by `run` or `digest`) minus its `backfill`.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from monitor import alerts
from monitor.alerts import AlertNotice
from monitor.config import Config
from monitor.config_delivery import Subscription
from monitor.deliver import Message, deliver
from monitor.digest import Digest, build_digest, neighbour_window
from monitor.errors import DeliveryError
from monitor.models import from_iso
from monitor.store import Store
from monitor.store.outbox import DigestRecord, Outbox, Selection

log = logging.getLogger(__name__)
RETRY_FIRST = 60.0  # seconds before the first retry; doubles after each failure
RETRY_CAP = 3600.0  # never wait longer than this between tries
LEASE = timedelta(minutes=5)  # how long a live process may hold a digest while sending it
_INCARNATION = uuid.uuid4().hex[:12]  # tells this process from an earlier one with the same pid


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to one (subscription, channel) in one cycle, for logs and the CLI."""

    subscription: str
    channel: str
    kind: str = "digest"
    digest_id: str | None = None
    items: int = 0
    ok: bool = True
    error: str | None = None
    note: str | None = None
    next_attempt: str | None = None
    pending_after: int = 0
    skipped: str | None = None


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed try: 60, 120, 240 ... capped at one hour."""
    return min(RETRY_FIRST * 2 ** max(attempts - 1, 0), RETRY_CAP)


def run_subscription(store: Store, config: Config, sub: Subscription, now: datetime) -> list[DeliveryResult]:
    """Send what is pending for `sub` on each of its channels now (open digests first)."""
    outbox = Outbox(store)
    outbox.register([sub.name], _at(now))
    outbox.mark_run(sub.name, _at(now))
    return [r for channel in sub.channels for r in flush_channel(outbox, config, sub, channel, now)]


def flush_channel(outbox: Outbox, config: Config, sub: Subscription, channel: str,
                  now: datetime) -> list[DeliveryResult]:
    results = [send(outbox, config, record, now) for record in outbox.open_alerts(sub.name, channel)]
    record = outbox.open_digest(sub.name, channel)
    if record is not None:
        results.append(send(outbox, config, record, now))
        if not results[-1].ok or results[-1].skipped:
            return results  # the channel is down or busy: new items wait behind the open digest
    record = outbox.create_digest(selection(outbox, config, sub, channel, now), _at(now),
                                  sub.max_items, sub.min_items)
    if record is None:
        reason = "nothing pending" if sub.min_items <= 1 else f"fewer than {sub.min_items} items pending (min_items)"
        return [*results, DeliveryResult(sub.name, channel, skipped=reason)]
    return [*results, send(outbox, config, record, now)]


def send(outbox: Outbox, config: Config, record: DigestRecord, now: datetime) -> DeliveryResult:
    """Claim, send and record one persisted digest or notice."""
    base = DeliveryResult(record.subscription, record.channel, record.kind, record.id, len(record.item_ids),
                          pending_after=record.pending_after)
    sub = subscription(config, record.subscription)
    if sub is None or record.channel not in sub.channels:
        return replace(base, skipped="no longer configured")
    if not outbox.claim(record.id, _at(now), _at(now + LEASE), holder(), holder_alive):
        return replace(base, skipped="being sent by another process")
    try:
        note = deliver(record.channel, sub, config.smtp, load_message(outbox, config, sub, record))
    except DeliveryError as e:
        return _failed(outbox, record, base, str(e), now)
    except Exception as e:  # a bug must not leave the digest claimed and silent: record it, retry later
        log.exception("%s/%s: unexpected error sending %s", record.subscription, record.channel, record.id)
        return _failed(outbox, record, base, f"unexpected error ({type(e).__name__}: {e}); please report it", now)
    outbox.record_success(record, _at(now), note)
    log.info("%s/%s: sent %s %s (%d items)", record.subscription, record.channel, record.kind, record.id,
             len(record.item_ids))
    return replace(base, note=note)


def _failed(outbox: Outbox, record: DigestRecord, base: DeliveryResult, error: str, now: datetime) -> DeliveryResult:
    next_attempt = _at(now + timedelta(seconds=retry_delay(record.attempts + 1)))
    outbox.record_failure(record, _at(now), error, next_attempt)
    log.warning("%s/%s: %s %s not delivered (retry at %s): %s", record.subscription, record.channel,
                record.kind, record.id, next_attempt, error)
    return replace(base, ok=False, error=error, next_attempt=next_attempt)


def holder() -> str:
    """Who is sending: this host, process id and process incarnation."""
    return f"{socket.gethostname()}:{os.getpid()}:{_INCARNATION}"


def holder_alive(claimed_by: str) -> bool:
    """False only when the claimer was a process of this host that no longer exists (killed)."""
    host, pid, incarnation = [*claimed_by.split(":"), "", ""][:3]
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine: trust its lease
    if int(pid) == os.getpid():
        return incarnation == _INCARNATION  # our pid, but an earlier process (a restarted container's pid 1)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_message(outbox: Outbox, config: Config, sub: Subscription, record: DigestRecord) -> Message:
    """The Digest or AlertNotice of a persisted record, rebuilt from its stored item ids."""
    if record.kind == "alert":
        return alerts.notice(record, sub.timezone)
    items = outbox.items(record.item_ids, sub.rules, sub.topics)
    window = neighbour_window(items)
    neighbours = outbox.neighbours(*window) if window else []
    return build_digest(record.id, record.subscription, record.created_at, items, neighbours,
                        source_names(config), record.pending_after, sub.timezone)


def selection(outbox: Outbox, config: Config, sub: Subscription, channel: str, now: datetime) -> Selection:
    first_seen = from_iso(outbox.first_seen(sub.name)) or now
    since = first_seen - timedelta(seconds=sub.backfill or 0)
    return Selection(sub.name, channel, _at(since), sub.rules, sub.topics, source_ids(config, sub),
                     sub.countries, sub.languages)


def source_ids(config: Config, sub: Subscription) -> tuple[str, ...] | None:
    """The sources `sub` selects by id and tags; None when it selects every source."""
    if not sub.sources and not sub.source_tags:
        return None
    return tuple(s.id for s in config.sources
                 if (not sub.sources or s.id in sub.sources)
                 and all(s.tags.get(k) == v for k, v in sub.source_tags.items()))


def source_names(config: Config) -> dict[str, str]:
    return {s.id: s.label for s in config.sources}


def subscription(config: Config, name: str) -> Subscription | None:
    return next((s for s in config.subscriptions if s.name == name), None)


# -- the outbox job: alerts and due retries ----------------------------------------------------


def outbox_tick(store: Store, config: Config, now: datetime) -> list[DeliveryResult]:
    """Raise/clear source alerts, then re-send every digest whose back-off has passed."""
    return [*raise_alerts(store, config, now), *retry_due(store, config, now)]


def raise_alerts(store: Store, config: Config, now: datetime,
                 only: set[str] | None = None) -> list[DeliveryResult]:
    """Queue one notice per change for every `alerts: true` subscription; send those in `only` now."""
    outbox = Outbox(store)
    targets = [(s.name, channel) for s in config.subscriptions if s.alerts for channel in s.channels]
    names = {s.id: s.label for s in config.enabled_sources}
    threshold = config.settings.failure_alert_after
    records = outbox.update_alerts(lambda health: alerts.decide(health, threshold, names), targets, _at(now))
    return [send(outbox, config, r, now) for r in records if only is None or r.subscription in only]


def retry_due(store: Store, config: Config, now: datetime) -> list[DeliveryResult]:
    outbox = Outbox(store)
    return [send(outbox, config, record, now) for record in outbox.due(_at(now))]


# -- a look without changes (`diplowatch digest --dry-run`) ------------------------------------


def preview(store: Store, config: Config, sub: Subscription, channel: str, now: datetime) -> list[Message]:
    """What the next cycle would send on `channel`, built without writing anything."""
    outbox = Outbox(store)
    messages: list[Digest | AlertNotice] = [load_message(outbox, config, sub, r)
                                            for r in outbox.open_alerts(sub.name, channel)]
    record = outbox.open_digest(sub.name, channel)
    if record is not None:
        return [*messages, load_message(outbox, config, sub, record)]
    pending = outbox.pending(selection(outbox, config, sub, channel, now))
    if len(pending) < sub.min_items:
        return messages
    chosen = pending[: sub.max_items]
    draft = DigestRecord("dry-run", sub.name, channel, "digest", _at(now), None, len(pending) - len(chosen),
                         0, _at(now), "pending", tuple(chosen))
    return [*messages, load_message(outbox, config, sub, draft)]
