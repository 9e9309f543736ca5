"""APScheduler wiring for digests: one job per subscription and one short outbox job. No business
logic (that is monitor/digest_cycle.py); each job opens its own store connection and closes it.

A schedule missed while the service was down (a cron time, or `every` elapsed since the last run)
runs once at start-up; pending items themselves never depend on the schedule: they wait in SQLite.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import Config
from monitor.config_delivery import Subscription, cron_trigger, require_delivery_settings
from monitor.deliver import describe
from monitor.digest_cycle import outbox_tick, run_subscription, subscription
from monitor.errors import DiplowatchError
from monitor.models import from_iso, iso, utcnow
from monitor.store import Store
from monitor.store.outbox import Outbox

log = logging.getLogger(__name__)
OUTBOX_EVERY = 30.0  # seconds between alert checks and due retries
_JOB_OPTIONS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}


def add_digest_jobs(scheduler: BackgroundScheduler, config: Config, db_path: str) -> None:
    """Add one job per subscription and the outbox job; registers new subscriptions first."""
    require_delivery_settings(config)
    now = utcnow()
    with Store.open(db_path) as store:
        outbox = Outbox(store)
        outbox.register([s.name for s in config.subscriptions], iso(now) or "")
        last_runs = {s.name: from_iso(outbox.last_run(s.name)) or now for s in config.subscriptions}
    for sub in config.subscriptions:
        trigger, missed = schedule(sub, last_runs[sub.name], now)
        extra = {"next_run_time": now} if missed else {}
        scheduler.add_job(_subscription_job, trigger, args=(config, db_path, sub.name), id=f"digest:{sub.name}",
                          name=f"digest {sub.name}", **_JOB_OPTIONS, **extra)
        _log_channels(config, sub)
    scheduler.add_job(_outbox_job, IntervalTrigger(seconds=OUTBOX_EVERY, timezone=UTC), args=(config, db_path),
                      id="digest-outbox", name="digest outbox", next_run_time=now, **_JOB_OPTIONS)


def schedule(sub: Subscription, last_run: datetime, now: datetime) -> tuple[BaseTrigger, bool]:
    """The subscription's trigger, and whether a run was missed since `last_run`."""
    if sub.cron is not None:
        trigger = cron_trigger(sub.cron, sub.timezone)
        due = trigger.get_next_fire_time(None, last_run + timedelta(seconds=1))  # strictly after the last run
        return trigger, due is not None and due <= now
    every = timedelta(seconds=sub.every or 3600)
    return IntervalTrigger(seconds=every.total_seconds(), start_date=last_run, timezone=UTC), last_run + every <= now


def _subscription_job(config: Config, db_path: str, name: str) -> None:
    sub = subscription(config, name)
    if sub is None:
        return
    try:
        with Store.open(db_path) as store:
            run_subscription(store, config, sub, utcnow())
    except DiplowatchError as e:
        log.error("digest %s: %s", name, e)


def _outbox_job(config: Config, db_path: str) -> None:
    try:
        with Store.open(db_path) as store:
            outbox_tick(store, config, utcnow())
    except DiplowatchError as e:
        log.error("digest outbox: %s", e)


def _log_channels(config: Config, sub: Subscription) -> None:
    for channel in sub.channels:
        log.info("subscription %s: %s", sub.name, describe(channel, sub, config.smtp))
    secrets = [config.smtp.password_env if config.smtp and sub.email else None,
               sub.webhook.secret_env if sub.webhook else None]
    for name in filter(None, secrets):
        if not os.environ.get(name):
            log.warning("subscription %s: $%s is not set: its deliveries will fail until it is", sub.name, name)
