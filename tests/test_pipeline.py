"""The poll cycle's own bookkeeping: states read ahead in one query, polls saved together."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from monitor.analyse import build_analyser
from monitor.config import Config
from monitor.errors import StoreError
from monitor.fetch import Fetcher
from monitor.models import PollOutcome, Validators, utcnow
from monitor.pipeline import Poller
from monitor.store import PollRecord, Store

ROUND = 40  # polls finishing at about the same time, as 304s do at the start of a round


def _record(source_id: str) -> PollRecord:
    now = utcnow()
    return PollRecord(PollOutcome(source_id, "unchanged", http_status=304), f"http://feeds.test/{source_id}", now,
                      now + timedelta(minutes=30), Validators(f'"{source_id}"'))


class CountingStore:
    """The real store, counting its save_polls calls (one call is one transaction)."""

    def __init__(self, store: Store, fail: bool = False) -> None:
        self.store, self.fail, self.transactions = store, fail, []

    def save_polls(self, records: Any) -> list[tuple[int, int]]:
        self.transactions.append(len(records))
        if self.fail:
            raise StoreError("disk full (test)")
        return self.store.save_polls(records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def _save_round(store: Any) -> list[Any]:
    config = Config()
    async with Fetcher(config.settings) as fetcher:
        poller = Poller(config, store, build_analyser(config), fetcher)
        results = await asyncio.gather(*(poller.save(_record(f"s{i}")) for i in range(ROUND)), return_exceptions=True)
        await poller.saved()
        return results


def test_polls_that_finish_together_are_saved_in_few_transactions(tmp_path: Path) -> None:
    with Store.open(tmp_path / "dw.db") as real:
        store = CountingStore(real)
        results = asyncio.run(_save_round(store))
        states = real.source_states([f"s{i}" for i in range(ROUND)])

    assert results == [(0, 0)] * ROUND
    assert sum(store.transactions) == ROUND
    assert len(store.transactions) < ROUND / 4, store.transactions
    assert {s.validators.etag for s in states.values()} == {f'"s{i}"' for i in range(ROUND)}
    assert {s.status for s in states.values()} == {"ok"}  # a 304 is a successful poll


def test_a_failed_transaction_fails_every_poll_in_it(tmp_path: Path) -> None:
    with Store.open(tmp_path / "dw.db") as real:
        store = CountingStore(real, fail=True)
        results = asyncio.run(_save_round(store))
        never = real.source_states(["s0"])["s0"]

    assert all(isinstance(r, StoreError) for r in results), results
    assert never.status == "never polled"
