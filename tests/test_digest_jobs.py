"""digest_jobs.py: the APScheduler wiring (one job per subscription, the outbox job), the catch-up of
a schedule missed while the service was down, and a live scheduler delivering a digest."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from digest_fixtures import Statement, store_statements, write_config
from pytest_httpserver import HTTPServer

from monitor.config import Config
from monitor.digest_jobs import add_digest_jobs, schedule
from monitor.errors import ConfigError
from monitor.models import utcnow
from monitor.store import Store
from monitor.store.outbox import Outbox

FRIDAY_7 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)  # 07:00 in Zurich
MONDAY_7 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def config_with(tmp_path: Path, schedule_line: str, url: str = "https://hooks.example.org/x") -> Config:
    return write_config(tmp_path / "sources.yaml", f"""
subscriptions:
  - name: desk
    {schedule_line}
    backfill: 1d
    webhook: {{url: "{url}"}}
""")


@pytest.mark.parametrize(("line", "last_run", "now", "missed"), [
    ('cron: "0 7 * * 1-5"\n    timezone: Europe/Zurich', FRIDAY_7, MONDAY_7 - timedelta(seconds=1), False),
    ('cron: "0 7 * * 1-5"\n    timezone: Europe/Zurich', FRIDAY_7, MONDAY_7, True),  # not on Saturday: 1-5
    ('cron: "0 7 * * 1-5"\n    timezone: Europe/Zurich', MONDAY_7, MONDAY_7 + timedelta(hours=3), False),
    ("every: 1h", MONDAY_7, MONDAY_7 + timedelta(minutes=59), False),
    ("every: 1h", MONDAY_7, MONDAY_7 + timedelta(hours=5), True),
])
def test_a_schedule_missed_while_down_runs_once_at_start(tmp_path: Path, line: str, last_run: datetime,
                                                         now: datetime, missed: bool) -> None:
    sub = config_with(tmp_path, line).subscriptions[0]
    trigger, was_missed = schedule(sub, last_run, now)
    assert was_missed is missed
    assert isinstance(trigger, CronTrigger if "cron" in line else IntervalTrigger)


def test_cron_fires_monday_to_friday_in_the_subscription_time_zone(tmp_path: Path) -> None:
    trigger, _ = schedule(config_with(tmp_path, 'cron: "0 7 * * 1-5"\n    timezone: Europe/Zurich')
                          .subscriptions[0], FRIDAY_7, FRIDAY_7)
    fires = [trigger.get_next_fire_time(None, FRIDAY_7 + timedelta(minutes=1))]
    assert fires[0].isoformat() == "2026-11-23T07:00:00+01:00"


def test_jobs_are_added_per_subscription_with_safe_options(tmp_path: Path) -> None:
    scheduler = BackgroundScheduler(timezone=UTC)
    add_digest_jobs(scheduler, config_with(tmp_path, "every: 2h"), str(tmp_path / "dw.db"))
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"digest:desk", "digest-outbox"}
    for job in jobs.values():
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, None)
    with Store.open(tmp_path / "dw.db") as store:
        assert Outbox(store).first_seen("desk") is not None  # registered at start, not at first send


def test_jobs_refuse_a_configuration_that_cannot_deliver(tmp_path: Path) -> None:
    # refused when the configuration loads (with its line), so no job is ever added for it
    with pytest.raises(ConfigError, match=r"sources\.yaml:\d+: .*needs the top-level `smtp:` block"):
        config = write_config(tmp_path / "sources.yaml", """
subscriptions:
  - name: desk
    every: 1h
    email: {to: [desk@example.org]}
""")
        add_digest_jobs(BackgroundScheduler(timezone=UTC), config, str(tmp_path / "dw.db"))


@pytest.fixture
def running() -> Iterator[BackgroundScheduler]:
    scheduler = BackgroundScheduler(timezone=UTC)
    yield scheduler
    if scheduler.running:
        scheduler.shutdown(wait=True)


def test_a_live_scheduler_delivers_the_digest_on_its_own_connection(tmp_path: Path, httpserver: HTTPServer,
                                                                   running: BackgroundScheduler) -> None:
    arrived = threading.Event()
    httpserver.expect_request("/hook").respond_with_handler(lambda request: _ack(arrived))
    db = tmp_path / "dw.db"
    with Store.open(db) as store:
        store_statements(store, [Statement("a", "Statement at the OEWG")], utcnow())
    add_digest_jobs(running, config_with(tmp_path, "every: 1s", httpserver.url_for("/hook")), str(db))
    running.start()
    assert arrived.wait(20), "no digest arrived"
    deadline = time.monotonic() + 20
    while True:  # the job records the delivery right after the receiver's answer
        with Store.open(db) as store:
            if store.db.conn.execute("SELECT count(*) FROM delivered").fetchone()[0] == 1:
                break
        assert time.monotonic() < deadline, "the delivery was not recorded"
        arrived.wait(0.05)


def _ack(arrived: threading.Event) -> object:
    from werkzeug import Response

    arrived.set()
    return Response("", status=204)
