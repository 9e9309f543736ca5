"""feedparser's own parse rate on the farm's bytes: the parsing term of the floor and the ingest ceiling.

    python bench/feedparser_rate.py FEEDS ITEMS

Runs in a process that imports nothing of diplowatch, so feedparser runs exactly as a plain
feedparser user runs it (`feedparser.parse(body)`, default options): monitor/parse/feed.py makes
feedparser remember its URL joins in any process that imports it. Prints one JSON object:
{"items": N, "cpu_s": S, "items_per_s": R}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import feedparser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.corpus import feed_body


def main() -> None:
    feeds, items = int(sys.argv[1]), int(sys.argv[2])
    bodies = [feed_body(i, 0, items) for i in range(feeds)]
    start = time.process_time()
    entries = sum(len(feedparser.parse(body).entries) for body in bodies)
    seconds = time.process_time() - start
    print(json.dumps({"items": entries, "cpu_s": seconds, "items_per_s": entries / seconds}))


if __name__ == "__main__":
    main()
