"""The cycle for one source, top to bottom: fetch -> parse -> match -> store.

`poll_source` never raises for a source's own failure: it records it and returns the outcome, so
one broken source never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import InitVar, dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from monitor.config import Config, Source
from monitor.errors import SourceError, StoreError
from monitor.fetch import Fetcher
from monitor.models import PollOutcome, utcnow
from monitor.redact import redact
from monitor.store import PollRecord, SourceState, Store
from monitor.workers import InThread, Stages

if TYPE_CHECKING:
    from monitor.analyse import Analyser

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Poller:
    """What every poll in one process shares: configuration, store, rules, HTTP client, and where
    parsing and matching run (a thread of this process unless `stages` says otherwise)."""

    config: Config
    store: Store
    analyser: Analyser
    fetcher: Fetcher
    stages: InitVar[Stages | None] = None  # kept as `cpu`
    rng: random.Random = field(default_factory=random.Random)
    _store_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _states: dict[str, SourceState] = field(default_factory=dict)  # read ahead for a round of polls
    _unsaved: list[tuple[PollRecord, asyncio.Future]] = field(default_factory=list)
    _saver: asyncio.Task | None = None

    def __post_init__(self, stages: Stages | None) -> None:
        self.cpu: Stages = stages or InThread(self.analyser)

    async def read_states(self, sources: Sequence[Source]) -> None:
        """Read the state of every source about to be polled in one query, not one each."""
        self._states.update(await self.stored(self.store.source_states, [s.id for s in sources]))

    async def stored(self, call: Callable[..., T], *args: Any) -> T:
        """Run a store call off the event loop, one at a time on the shared connection.

        Storing 50,000 items takes seconds; on the loop, that stall would time out every other poll.
        """
        async with self._store_lock:
            work = asyncio.ensure_future(asyncio.to_thread(call, *args))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                await asyncio.wait([work])  # a started transaction ends (commit or rollback) before the lock is freed
                raise

    async def save(self, record: PollRecord) -> tuple[int, int]:
        """Save one poll; polls that finish while a save runs are saved next, together, in one transaction."""
        saved = asyncio.get_running_loop().create_future()
        self._unsaved.append((record, saved))
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save_waiting())
        return await saved

    async def saved(self) -> None:
        """Wait until every poll handed to `save` is in the database (before closing the store)."""
        if self._saver is not None:
            await asyncio.wait([self._saver])

    async def _save_waiting(self) -> None:
        while self._unsaved:
            batch, self._unsaved = self._unsaved, []
            try:
                counts = await self.stored(self.store.save_polls, [record for record, _ in batch])
            except BaseException as e:  # each waiting poll gets the error, as if it had saved alone
                for _, saved in batch:
                    if not saved.done():
                        saved.set_exception(e)
                if not isinstance(e, Exception):  # cancelled, interrupted: the saver stops too
                    raise
                continue
            for (_, saved), count in zip(batch, counts, strict=True):
                if not saved.done():
                    saved.set_result(count)

    async def poll_source(self, source: Source) -> PollOutcome:
        state = self._states.pop(source.id, None) or await self.stored(self.store.source_state, source.id)
        now = utcnow()
        try:
            fetched = await self.fetcher.fetch(source, state.validators)
            if fetched.not_modified:
                return await self._record(source, state, now, PollOutcome(source.id, "unchanged", http_status=304))
            parsed = await self.cpu.parse(fetched, source)
            known = await self.stored(self.store.known_hashes, source.id, [i.guid for i in parsed.items])
            fresh = [i for i in parsed.items if known.get(i.guid) != i.content_hash]
            analyses = await self.cpu.analyse(fresh, source) if fresh else {}
            outcome = PollOutcome(source.id, "ok", seen_items=len(parsed.items), warning=parsed.warning,
                                  http_status=fetched.status)
            record = PollRecord(outcome, redact(source.url), now, self._next_due(source, now, 0),
                                fetched.validators, fresh, analyses)
            new, changed = await self.save(record)
            outcome = replace(outcome, new_items=new, changed_items=changed)
        except SourceError as e:
            status = getattr(e, "http_status", None)
            outcome = PollOutcome(source.id, e.status, error=redact(str(e)), http_status=status)
            return await self._record(source, state, now, outcome, e)
        except (StoreError, asyncio.CancelledError):
            raise
        except Exception as e:  # a bug or a library surprise: recorded for this source, never fatal
            log.exception("%s: unexpected error", source.id)
            error = SourceError(redact(f"unexpected error ({type(e).__name__}: {e}); please report it"))
            return await self._record(source, state, now, PollOutcome(source.id, "failing", error=str(error)), error)
        log.info("%s: %d new, %d changed, %d in feed", source.id, outcome.new_items, outcome.changed_items,
                 outcome.seen_items)
        return outcome

    async def _record(self, source: Source, state: SourceState, now: datetime, outcome: PollOutcome,
                      error: SourceError | None = None) -> PollOutcome:
        failures = state.consecutive_failures + 1 if error else 0
        next_due = self._next_due(source, now, failures, getattr(error, "retry_after", None))
        await self.save(PollRecord(outcome, redact(source.url), now, next_due))
        if error:
            log.warning("%s: %s", source.id, outcome.error)
        return outcome

    def _next_due(self, source: Source, now: datetime, failures: int, retry_after: float | None = None) -> datetime:
        """Interval plus jitter; after failures, exponential back-off up to max_backoff."""
        wait = source.interval * 2 ** min(failures - 1, 16) if failures else source.interval
        wait = min(wait, max(self.config.settings.max_backoff, source.interval))
        if retry_after is not None:
            wait = max(wait, retry_after)
        jitter = self.rng.uniform(0, min(wait * 0.1, 300))
        return now + timedelta(seconds=wait + jitter)


async def poll_many(poller: Poller, sources: Sequence[Source], on_done: Callable[[PollOutcome], None] | None = None,
                    stop: asyncio.Event | None = None, grace: float = 5.0) -> list[PollOutcome]:
    """Poll `sources` concurrently (bounded by the fetcher); stop early when `stop` is set."""

    async def one(source: Source) -> PollOutcome:
        outcome = await poller.poll_source(source)
        if on_done:
            on_done(outcome)
        return outcome

    await poller.read_states(sources)
    tasks = [asyncio.create_task(one(s)) for s in sources]
    if stop is None:
        return list(await asyncio.gather(*tasks))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    while not stopper.done() and not all(t.done() for t in tasks):
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    await drain(tasks, grace)
    return [t.result() for t in tasks if t.done() and not t.cancelled() and t.exception() is None]


async def drain(tasks: Sequence[asyncio.Task], grace: float) -> None:
    """Let in-flight polls finish for `grace` seconds, then cancel the rest (they stay due)."""
    pending = [t for t in tasks if not t.done()]
    if pending:
        _, late = await asyncio.wait(pending, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


