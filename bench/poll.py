"""diplowatch polls every source, cold then warm, timed from inside: `diplowatch poll`'s code path.

    python bench/poll.py CONFIG DB [WORKERS]

load_config, build_analyser, Store.open, then poll_many over a Poller (as `diplowatch poll` does),
twice: cold (empty database) and warm (every feed unchanged: every answer a 304), each with a new
Fetcher and its own parse workers (WORKERS, default one per core, as `poll --workers`), so the
warm poll opens its own connections as a poll 30 minutes later would. Prints one JSON object:
imports, start-up and each poll as wall and CPU seconds (all threads, and the workers, which end
with their poll), outcomes, and the peak RSS of this process and of the largest worker.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter(), time.process_time()  # before the imports, which count as start-up

import asyncio  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.analyse import Analyser, build_analyser  # noqa: E402
from monitor.config import Config, load_config  # noqa: E402
from monitor.fetch import Fetcher  # noqa: E402
from monitor.models import PollOutcome  # noqa: E402
from monitor.pipeline import Poller, poll_many  # noqa: E402
from monitor.store import Store  # noqa: E402
from monitor.workers import Stages, default_workers, stages_for  # noqa: E402


async def _poll(config: Config, store: Store, analyser: Analyser, stages: Stages) -> list[PollOutcome]:
    async with Fetcher(config.settings) as fetcher:
        return await poll_many(Poller(config, store, analyser, fetcher, stages), list(config.enabled_sources))


def _phase(config: Config, store: Store, analyser: Analyser, workers: int) -> dict[str, Any]:
    wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    stages = stages_for(analyser, workers)
    try:
        outcomes = asyncio.run(_poll(config, store, analyser, stages))
    finally:
        stages.close()  # the workers end here, so their CPU is counted below
    own_cpu, workers_cpu = time.process_time() - cpu, _children_cpu() - children
    return {
        "poll_wall_s": time.perf_counter() - wall, "poll_cpu_s": own_cpu + workers_cpu,
        "workers": workers, "workers_cpu_s": workers_cpu,
        "sources": len(outcomes), "statuses": dict(Counter(o.status for o in outcomes)),
        "errors": sorted({o.error for o in outcomes if o.error})[:5],
        "new_items": sum(o.new_items for o in outcomes), "seen_items": sum(o.seen_items for o in outcomes),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    config_path, db_path = sys.argv[1], sys.argv[2]
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else default_workers()
    imported = time.perf_counter(), time.process_time()
    config = load_config(config_path)
    analyser = build_analyser(config)
    analyser.analyse_text("warm-up", "Russia", "en")  # entities.py reads its tables on first use: start-up
    store = Store.open(db_path)
    ready = time.perf_counter(), time.process_time()
    cold = _phase(config, store, analyser, workers)
    warm = _phase(config, store, analyser, workers)
    store.close()
    print(json.dumps({
        "import_wall_s": imported[0] - STARTED[0], "import_cpu_s": imported[1] - STARTED[1],
        "startup_wall_s": ready[0] - imported[0], "startup_cpu_s": ready[1] - imported[1],
        "cold": cold, "warm": warm,
    }))


if __name__ == "__main__":
    main()
