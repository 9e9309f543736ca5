"""Ingest with no network: parse, normalise, match, extract entities and store farm feeds, in items/s.

The ceiling is feedparser's own rate on the same bytes (`feedparser.parse(body)` with its default
options, as a plain feedparser user runs it, in a process of its own): while feedparser is the
parser, ingest cannot beat it.
A cProfile run then says where the rest of the time goes, by owner, so a slow stage is named with
numbers rather than guessed.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.corpus import COUNTRIES, feed_body, feed_lang
from monitor.analyse import Analyser, build_analyser
from monitor.config import Config, Source
from monitor.models import Fetched, PollOutcome, Validators, utcnow
from monitor.parse import parse
from monitor.store import PollRecord, Store

# the parts of ingest: time spent in the callee files when called from the caller files (inclusive)
PARTS = (
    ("feedparser.parse (the ceiling's own work)", "site-packages/feedparser/api.py", "monitor/parse/"),
    ("ours: monitor/normalise.py (HTML to text, URLs, dates)", "monitor/normalise.py", "monitor/parse/"),
    ("ours: monitor/store (SQL, FTS text, JSON)", "monitor/store/", "bench/ingest.py"),
    ("others': monitor/match.py (rules)", "monitor/match.py", "monitor/analyse.py"),
    ("others': monitor/entities.py", "monitor/entities.py", "monitor/analyse.py"),
    ("others': monitor/textnorm.py (within the two above)", "monitor/textnorm.py", "monitor/"),
)


@cache
def bundled_analyser() -> Analyser:
    """The analyser of the bundled rule pack, built once per bench process (ingest and search share it)."""
    analyser = build_analyser(Config())
    analyser.analyse_text("warm-up", "Russia China cyber", "en")  # entity tables load on first use
    return analyser


def bodies(feeds: int, items: int) -> list[tuple[Source, bytes]]:
    return [(Source(id=f"farm-{i}", url=f"http://farm.test/feed/{i}.xml", tags={"country": COUNTRIES[feed_lang(i)]}),
             feed_body(i, 0, items)) for i in range(feeds)]


def feedparser_rate(feeds: int, items: int) -> dict[str, float]:
    """feedparser.parse on the bytes of farm feeds 0..feeds-1, in a process of its own (see feedparser_rate.py)."""
    script = Path(__file__).resolve().parent / "feedparser_rate.py"
    done = subprocess.run([sys.executable, str(script), str(feeds), str(items)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def ingest(feeds: list[tuple[Source, bytes]], analyser: Analyser, store: Store) -> dict[str, float]:
    """What Poller.poll_source does after the fetch, stage by stage, timed in CPU seconds."""
    stages: dict[str, float] = defaultdict(float)
    stored = 0
    for source, body in feeds:
        t0 = time.process_time()
        parsed = parse(Fetched(source.url, 200, "application/rss+xml", body, Validators('"1"')), source)
        t1 = time.process_time()
        known = store.known_hashes(source.id, [i.guid for i in parsed.items])
        fresh = [i for i in parsed.items if known.get(i.guid) != i.content_hash]
        analyses = analyser.analyse(fresh, source)
        t2 = time.process_time()
        now = utcnow()
        outcome = PollOutcome(source.id, "ok", seen_items=len(parsed.items), http_status=200)
        new, _ = store.save_poll(PollRecord(outcome, source.url, now, now + timedelta(minutes=30),
                                            Validators('"1"'), fresh, analyses))
        t3 = time.process_time()
        stored += new
        stages["parse"] += t1 - t0
        stages["match"] += t2 - t1
        stages["store"] += t3 - t2
    total = sum(stages.values())
    return {"items": stored, "cpu_s": total, "items_per_s": stored / total if total else 0.0,
            **{f"{k}_cpu_s": v for k, v in stages.items()}}


def profile(feeds: list[tuple[Source, bytes]], analyser: Analyser, store: Store) -> dict[str, Any]:
    """cProfile of the same ingest: the share of each part (see PARTS) and the costliest functions."""
    profiler = cProfile.Profile()
    profiler.enable()
    ingest(feeds, analyser, store)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(self_time for _, _, self_time, _, _ in stats.values()) or 1.0
    shares = {name: round(_inclusive(stats, callee, caller) / total, 3) for name, callee, caller in PARTS}
    rest = 1 - sum(list(shares.values())[:5])  # textnorm is inside match and entities
    shares["the rest (parse/feed.py's own, analyse.py, dataclasses, ...)"] = round(rest, 3)
    rows = sorted(((v[2], v[1], _short(f"{k[0]}:{k[1]}({k[2]})")) for k, v in stats.items()), reverse=True)
    return {
        "profiled_cpu_s": total,
        "share_by_part": shares,
        "top_self_time": [{"function": f, "self_share": round(s / total, 3), "calls": c} for s, c, f in rows[:12]],
    }


def _inclusive(stats: dict, callee: str, caller: str) -> float:
    """Time spent in files matching `callee` when entered from files matching `caller` (and not `callee`)."""
    return sum(edge[3] for (file, _, _), value in stats.items() if callee in file
               for source, edge in value[4].items() if caller in source[0] and callee not in source[0])


def _short(where: str) -> str:
    for marker in ("site-packages/", "python3.11/"):
        if marker in where:
            return where.split(marker, 1)[1]
    return where.replace(str(Path(__file__).resolve().parents[1]) + "/", "")


def run(feeds: int, items: int, with_profile: bool = True) -> dict[str, Any]:
    data = bodies(feeds, items)
    start = time.process_time()
    analyser = bundled_analyser()
    startup = time.process_time() - start
    ceiling = feedparser_rate(feeds, items)
    with tempfile.TemporaryDirectory() as tmp:
        with Store.open(Path(tmp) / "ingest.db") as store:
            ours = ingest(data, analyser, store)
        result: dict[str, Any] = {"feeds": feeds, "analyser_startup_cpu_s": startup, "feedparser": ceiling,
                                  "diplowatch": ours,
                                  "ratio_to_feedparser": ours["items_per_s"] / ceiling["items_per_s"]}
        if with_profile:
            with Store.open(Path(tmp) / "profile.db") as store:
                result["profile"] = profile(data, analyser, store)
    return result


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 100, 20), indent=2))
