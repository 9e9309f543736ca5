"""Search latency on a generated store: p50 and p95 of typical queries, through the library and the API.

The store is made fast but faithfully: the schema comes from Store.open (the real migrations), the
rows from the labelled texts in tests/data/detection with their real analysis (rules, countries,
organisations), the full-text rows from the store's own `fts_text`. It is written in transactions
of 50,000 rows and cached under bench/results/, so a rerun reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.corpus import EPOCH, Text, feed_lang, texts_by_lang
from bench.ingest import bundled_analyser
from monitor.models import iso
from monitor.store import Analysis, SearchQuery, Store, fts_text

GENERATOR = 1  # bump when the generated rows change, so cached stores are rebuilt
BATCH = 50_000
SPAN_DAYS = 5 * 365  # items published over five years, newest last
# the typical queries: (name, library query, API query string)
QUERIES = (
    ("phrase", SearchQuery(text='"information security"', limit=50), {"q": '"information security"'}),
    ("boolean", SearchQuery(text="ransomware OR (cyber AND sanctions)", limit=50),
     {"q": "ransomware OR (cyber AND sanctions)"}),
    ("country + dates", SearchQuery(countries=("RU",), since="2025-01-01T00:00:00Z",
                                    until="2025-07-01T00:00:00Z", limit=50),
     {"country": "RU", "since": "2025-01-01", "until": "2025-07-01"}),
    ("chinese term", SearchQuery(text="网络安全", limit=50), {"q": "网络安全"}),
    ("common word", SearchQuery(text="cyber", limit=50), {"q": "cyber"}),
)


def store_path(results: Path, items: int) -> Path:
    return results / f"search-{items}-g{GENERATOR}.db"


def ensure_store(path: Path, items: int) -> dict[str, Any]:
    """Build the store unless a complete one is cached; returns how long building took (0 if cached)."""
    if path.exists():
        with Store.open(path) as store:  # migrates a cached store to the current schema
            if store.count_items() == items:
                return {"built": False, "build_s": 0.0}
        for stale in path.parent.glob(path.name + "*"):
            stale.unlink()
    start = time.perf_counter()
    tmp = path.with_suffix(".building")
    for stale in path.parent.glob(tmp.name + "*"):
        stale.unlink()
    Store.open(tmp).close()
    _fill(tmp, items)
    with Store.open(tmp) as store:
        store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    tmp.rename(path)
    return {"built": True, "build_s": time.perf_counter() - start}


def _fill(path: Path, items: int) -> None:
    analysed = _analysed_texts()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    rng = random.Random(7)
    for start in range(0, items, BATCH):
        rows = [_row(k, items, rng, analysed) for k in range(start, min(items, start + BATCH))]
        conn.execute("BEGIN")
        conn.executemany(
            """INSERT INTO items (id, source, guid, url, title, summary, published, first_seen, updated,
                 sort_time, lang, content_hash, doc_type, countries, orgs)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)""", [r[0] for r in rows])
        conn.executemany("INSERT INTO items_fts (rowid, title, summary) VALUES (?, ?, ?)", [r[1] for r in rows])
        conn.executemany("INSERT OR IGNORE INTO entities (item_id, kind, value) VALUES (?, ?, ?)",
                         [e for r in rows for e in r[2]])
        conn.executemany(
            "INSERT INTO matches (item_id, rule, topic, hits, snippet, marks, matched_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [m for r in rows for m in r[3]])
        conn.execute("COMMIT")
    conn.close()


def _analysed_texts() -> dict[str, list[tuple[Text, Analysis]]]:
    analyser = bundled_analyser()
    return {lang: [(t, analyser.analyse_text(t.title, t.text, lang)) for t in texts]
            for lang, texts in texts_by_lang().items()}


def _row(k: int, items: int, rng: random.Random, analysed: dict[str, list[tuple[Text, Analysis]]]) -> tuple:
    source = k % 1000
    lang = feed_lang(source)
    text, analysis = rng.choice(analysed[lang])
    padding = [rng.choice(analysed[lang])[0].text for _ in range(rng.randint(1, 3))]
    title = f"{text.title} ({k})"
    summary = " ".join([text.text, *padding])
    published = EPOCH - timedelta(days=SPAN_DAYS * (1 - k / items) + rng.uniform(-2, 2))
    moment = iso(published)
    item_id = k + 1
    digest = hashlib.sha256(f"{title}\n{summary}".encode()).hexdigest()[:20]
    item = (item_id, f"farm-{source}", f"https://src{source}.example/id/{k}", f"https://src{source}.example/{k}.html",
            title, summary, moment, moment, moment, lang, digest, analysis.doc_type,
            json.dumps(list(analysis.countries)), json.dumps(list(analysis.orgs)))
    fts = (item_id, fts_text(title), fts_text(summary))
    entities = [(item_id, "country", c) for c in analysis.countries] + [(item_id, "org", o) for o in analysis.orgs]
    matches = [(item_id, m.rule, m.topic, json.dumps([asdict(h) for h in m.hits], ensure_ascii=False), m.snippet,
                json.dumps([list(s) for s in m.marks]), moment) for m in analysis.matches]
    return item, fts, entities, matches


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return {"p50_ms": pick(0.5) * 1000, "p95_ms": pick(0.95) * 1000, "max_ms": ordered[-1] * 1000}


def library_latency(path: Path, repeat: int) -> dict[str, dict[str, float]]:
    out = {}
    with Store.open(path, readonly=True) as store:
        for name, query, _ in QUERIES:
            found = len(list(store.search(query)))  # warm-up; also checks the query finds something
            samples = []
            for _ in range(repeat):
                start = time.perf_counter()
                list(store.search(query))
                samples.append(time.perf_counter() - start)
            out[name] = {**percentiles(samples), "results": found}
    return out


def explain(path: Path) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of each query's page of ids (for text, the first window), as SQLite plans it."""
    from monitor.store.core import _FIRST_WINDOW, _search_sql

    plans = {}
    with Store.open(path, readonly=True) as store:
        newest = store.db.conn.execute("SELECT max(rowid) FROM items_fts").fetchone()[0] or 0
        for name, query, _ in QUERIES:
            above = newest - _FIRST_WINDOW if query.text else None
            sql, params = _search_sql(query, store._dense_filters(query), "items.id, items.sort_time", above)
            plans[name] = [row[3] for row in store.db.conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    return plans


def api_latency(path: Path, repeat: int) -> dict[str, dict[str, float]]:
    with _server(path) as base:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        out = {}
        for name, _, params in QUERIES:
            url = f"{base}/api/items?{urllib.parse.urlencode({**params, 'limit': 50})}"
            with opener.open(url, timeout=60) as answer:  # warm-up
                found = len(json.loads(answer.read())["items"])
            samples = []
            for _ in range(repeat):
                start = time.perf_counter()
                with opener.open(url, timeout=60) as answer:
                    answer.read()
                samples.append(time.perf_counter() - start)
            out[name] = {**percentiles(samples), "results": found}
        return out


class _server:
    """`diplowatch serve` on a free loopback port, as a subprocess, for the length of a `with`."""

    def __init__(self, db: Path):
        self.db = db

    def __enter__(self) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--db", str(self.db), "--config", "/nonexistent.yaml", "serve",
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "NO_PROXY": "*"})
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return base
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"diplowatch serve exited: {self.proc.stderr.read().decode()[-500:]}") from None
                time.sleep(0.1)
        raise RuntimeError("diplowatch serve did not start within 60 s")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def run(results: Path, items: int, repeat: int = 20, api: bool = True) -> dict[str, Any]:
    path = store_path(results, items)
    built = ensure_store(path, items)
    out: dict[str, Any] = {"items": items, "db": str(path), "db_mb": path.stat().st_size / 2**20, **built,
                           "library": library_latency(path, repeat), "plans": explain(path)}
    out["api"] = api_latency(path, repeat) if api and _web_available() else None
    return out


def _web_available() -> bool:
    return (Path(__file__).resolve().parents[1] / "monitor" / "web").is_dir()


def iter_queries() -> Iterator[str]:
    yield from (name for name, _, _ in QUERIES)


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]), int(sys.argv[2]), api="--no-api" not in sys.argv), indent=1,
                     ensure_ascii=False))
