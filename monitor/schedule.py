"""APScheduler wiring for `diplowatch run`: one short tick job, no business logic.

The tick asks the store which sources are due (next-due times, back-off and validators live in
SQLite, so a restart picks up where it left off) and starts a poll for each one not already in
flight. Polls run on one asyncio loop in its own thread, which alone touches the store.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import Config
from monitor.fetch import Fetcher
from monitor.heartbeat import write_heartbeat
from monitor.models import utcnow
from monitor.pipeline import Poller, drain
from monitor.store import Store

if TYPE_CHECKING:
    from monitor.analyse import Analyser

log = logging.getLogger(__name__)
SHUTDOWN_GRACE = 3.0  # seconds in-flight polls get to finish after SIGTERM


class Service:
    """The running service: an event loop thread that owns the store, and the scheduler."""

    def __init__(self, config: Config, store: Store, analyser: Analyser):
        self.config = config
        self.store = store
        self.analyser = analyser
        self.loop = asyncio.new_event_loop()
        self.in_flight: dict[str, asyncio.Task] = {}
        self._thread = threading.Thread(target=self.loop.run_forever, name="diplowatch-poll", daemon=True)
        self._poller: Poller | None = None
        self.extra_jobs: list[Callable[[BackgroundScheduler], None]] = []

    def call(self, coro_fn: Callable, *args: object, timeout: float | None = None) -> object:
        """Run a coroutine on the service loop from another thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro_fn(*args), self.loop).result(timeout)

    def tick(self) -> None:
        write_heartbeat(self.store.path)  # /healthz and `diplowatch health` read it
        started = self.call(self._start_due, timeout=60)
        if started:
            log.debug("tick: started %d polls", started)

    async def _start_due(self) -> int:
        if self._poller is None:
            fetcher = Fetcher(self.config.settings)
            self._poller = Poller(self.config, self.store, self.analyser, fetcher)
        sources = {s.id: s for s in self.config.enabled_sources}
        due = await self._poller.stored(self.store.due_sources, list(sources), utcnow())
        due = [sid for sid in due if sid not in self.in_flight]
        await self._poller.read_states([sources[sid] for sid in due])
        for sid in due:
            task = self.loop.create_task(self._poller.poll_source(sources[sid]))
            self.in_flight[sid] = task
            task.add_done_callback(lambda t, sid=sid: self._finished(sid, t))
        return len(due)

    def _finished(self, source_id: str, task: asyncio.Task) -> None:
        self.in_flight.pop(source_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: poll failed: %s", source_id, task.exception())

    async def _close(self) -> None:
        await drain(list(self.in_flight.values()), SHUTDOWN_GRACE)
        if self._poller is not None:
            await self._poller.saved()
            await self._poller.fetcher.__aexit__(None, None, None)

    def serve_forever(self, stop: threading.Event) -> None:
        """Poll on schedule until `stop` is set; then finish in-flight work and return."""
        self._thread.start()
        scheduler = BackgroundScheduler(
            timezone=UTC,
            # misfire_grace_time=None: a late tick still runs (the default of 1 s drops it under load)
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        scheduler.add_job(self.tick, IntervalTrigger(seconds=self.config.settings.tick, timezone=UTC),
                          id="tick", next_run_time=utcnow())
        for add_job in self.extra_jobs:
            add_job(scheduler)
        scheduler.start()
        log.info("diplowatch running: %d sources, tick every %gs", len(self.config.enabled_sources),
                 self.config.settings.tick)
        try:
            stop.wait()
        finally:
            log.info("stopping: finishing in-flight polls")
            scheduler.shutdown(wait=True)
            self.call(self._close, timeout=SHUTDOWN_GRACE + 10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            log.info("stopped")


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (call from the main thread)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
