"""The process and the database under attack: kill -9, readers during heavy writes, old, foreign,
damaged, read-only and full databases. The CLI runs as real subprocesses on real SQLite files.

The invariant checked after every kill: a source's stored ETag and its items land together, so a
stored ETag of generation g means every item of generation g is stored, and nothing twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlite_utils
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from monitor.config import Config, Source
from monitor.errors import StoreError
from monitor.fetch import Fetcher
from monitor.pipeline import Poller, poll_many
from monitor.store import SearchQuery, Store
from monitor.store.core import SCHEMA_VERSION
from monitor.store.migrations import APPLICATION_ID, MIGRATIONS
from tests.conftest import REPO, run_cli, wait_until, write_config

KILLS = 15  # in the default suite; --run-slow runs SLOW_KILLS
SLOW_KILLS = 100
SOURCES = 6
BASE_ITEMS, STEP_ITEMS = 150, 40  # items per feed at generation 0, and added per generation
RULES = "rule_packs: []\nrules:\n  - name: cyber\n    any: [cyber]\n"


class GrowingFarm:
    """Feeds that grow by STEP_ITEMS items per generation, with an ETag per generation (conditional GET)."""

    def __init__(self, server: HTTPServer):
        self.server = server
        self.generation = 0
        self.hits = 0
        for s in range(SOURCES):
            server.expect_request(f"/feed/{s}").respond_with_handler(lambda request, s=s: self._answer(request, s))

    @staticmethod
    def size(generation: int) -> int:
        return BASE_ITEMS + STEP_ITEMS * generation

    @staticmethod
    def etag(source: int, generation: int) -> str:
        return f'"s{source}-g{generation}"'

    def _answer(self, request: Request, source: int) -> Response:
        self.hits += 1
        generation = self.generation
        etag = self.etag(source, generation)
        if request.headers.get("If-None-Match") == etag:
            return Response(status=304, headers={"ETag": etag})
        items = "".join(f"<item><title>Item {k} of source {source}</title><link>http://example.org/{source}/{k}</link>"
                        f"<description>Statement {k} on cyber norms</description></item>"
                        for k in range(self.size(generation)))
        body = f"<?xml version='1.0'?><rss version='2.0'><channel><title>s{source}</title>{items}</channel></rss>"
        return Response(body, content_type="application/rss+xml", headers={"ETag": etag})

    def sources(self) -> list[dict]:
        return [{"id": f"s{s}", "url": self.server.url_for(f"/feed/{s}"), "interval": "1s"} for s in range(SOURCES)]


@pytest.fixture
def server(threaded_server: HTTPServer) -> HTTPServer:
    return threaded_server


def _start(args: list[str], command: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "monitor", *args, command], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _consistent(db: Path, generation: int) -> dict[str, int]:
    """integrity_check ok, nothing stored twice, and every stored ETag's generation stored whole."""
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = dict(conn.execute("SELECT source, count(*) FROM items GROUP BY source").fetchall())
        distinct = conn.execute("SELECT count(*) FROM (SELECT DISTINCT source, guid FROM items)").fetchone()[0]
        assert distinct == sum(counts.values()), "an item stored twice"
        assert conn.execute("SELECT count(*) FROM item_versions").fetchone()[0] == 0, "an unchanged item re-stored"
        etags = dict(conn.execute("SELECT id, etag FROM sources WHERE etag IS NOT NULL").fetchall())
    for source, etag in etags.items():
        stored_generation = int(etag.strip('"').split("-g")[1])
        assert counts.get(source, 0) >= GrowingFarm.size(stored_generation), (source, etag, counts.get(source))
    assert all(n <= GrowingFarm.size(generation) for n in counts.values()), counts
    return counts


def _kill_at_a_random_moment(child: subprocess.Popen[bytes], db: Path, rng: random.Random, lifetime: float) -> str:
    """Half the kills land at a uniformly random moment, half while the database is being written."""
    wal = Path(f"{db}-wal")
    if rng.random() < 0.5:
        moment = time.monotonic() + rng.uniform(0, lifetime)
        wait_until(lambda: child.poll() is not None or time.monotonic() >= moment, timeout=lifetime + 30, interval=0.01)
        how = "at random"
    else:
        start = wal.stat().st_size if wal.exists() else 0
        give_up = time.monotonic() + lifetime + 5  # a `run` with nothing due writes nothing: kill it anyway
        wait_until(lambda: child.poll() is not None or (wal.exists() and wal.stat().st_size != start)
                   or time.monotonic() >= give_up, timeout=lifetime + 30, interval=0.005)
        how = "while writing"
    child.kill()
    _, stderr = child.communicate(timeout=10)
    assert child.returncode in (0, -9), f"{how}: exit {child.returncode}: {stderr.decode(errors='replace')[-2000:]}"
    return how


def _kill_loop(tmp_path: Path, server: HTTPServer, kills: int, seed: int) -> None:
    farm = GrowingFarm(server)
    db = tmp_path / "dw.db"
    config = write_config(tmp_path / "sources.yaml", farm.sources(), extra=RULES, settings={"tick": "0.2s"})
    args = ["--config", str(config), "--db", str(db)]
    started = time.monotonic()
    assert run_cli(*args, "poll").returncode == 0  # the first full poll measures a poll's lifetime
    lifetime = time.monotonic() - started
    rng = random.Random(seed)
    landed = []
    for kill in range(kills):
        farm.generation = kill + 1
        command = "run" if kill % 3 == 2 else "poll"
        child = _start(args, command)
        landed.append((command, _kill_at_a_random_moment(child, db, rng, lifetime), child.returncode))
        _consistent(db, farm.generation)

    again = run_cli(*args, "poll")
    assert again.returncode == 0, again.stderr
    counts = _consistent(db, farm.generation)
    assert counts == {f"s{s}": GrowingFarm.size(farm.generation) for s in range(SOURCES)}, (counts, landed)
    assert sum(code == -9 for *_, code in landed) >= kills // 2, landed  # most kills found it still running


def test_kill_9_during_poll_and_run_loses_nothing_and_stores_nothing_twice(tmp_path: Path, server: HTTPServer) -> None:
    _kill_loop(tmp_path, server, KILLS, seed=6)


@pytest.mark.slow
def test_kill_9_many_times(tmp_path: Path, server: HTTPServer) -> None:
    _kill_loop(tmp_path, server, SLOW_KILLS, seed=int(time.time()))


# -- readers during heavy writes -----------------------------------------------------------------


def _assert_readers_unhurt(readers: list[subprocess.CompletedProcess[str]]) -> None:
    for result in readers:
        assert result.returncode == 0 and "locked" not in result.stderr, result.stderr


READERS = (["search", "cyber", "--limit", "5"], ["sources", "--format", "jsonl"], ["export", "--source", "s0"])


def test_readers_never_see_database_is_locked_while_a_write_is_open(tmp_path: Path, server: HTTPServer) -> None:
    """A write transaction held open (as a 50,000-item save holds it for seconds): readers read the last commit."""
    farm = GrowingFarm(server)
    db = tmp_path / "dw.db"
    config = write_config(tmp_path / "sources.yaml", farm.sources()[:1], extra=RULES)
    args = ["--config", str(config), "--db", str(db)]
    assert run_cli(*args, "poll").returncode == 0
    with Store.open(db) as store, store.write() as conn:
        conn.executemany("INSERT INTO items (source, guid, url, title, summary, first_seen, sort_time, content_hash) "
                         "VALUES ('s0', ?, '', 'cyber', '', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', '')",
                         [(f"uncommitted-{k}",) for k in range(50_000)])
        readers = [run_cli(*args, *command, timeout=60) for command in READERS]
    _assert_readers_unhurt(readers)
    assert readers[2].stdout.count("\n") == GrowingFarm.size(0), "the last committed state, not the open write"


@pytest.mark.slow
def test_readers_in_a_loop_beside_a_real_heavy_poll(tmp_path: Path, server: HTTPServer) -> None:
    items = "".join(f"<item><title>Bulk {k} cyber</title><link>http://e.org/b/{k}</link><description>"
                    f"{'text ' * 60}{k}</description></item>" for k in range(20_000))
    server.expect_request("/bulk").respond_with_data(f"<rss version='2.0'><channel><title>b</title>{items}"
                                                     "</channel></rss>", content_type="application/rss+xml")
    farm = GrowingFarm(server)
    db = tmp_path / "dw.db"
    args = ["--config", str(write_config(tmp_path / "sources.yaml", farm.sources()[:1], extra=RULES)), "--db", str(db)]
    assert run_cli(*args, "poll").returncode == 0
    bulk = write_config(tmp_path / "bulk.yaml", [{"id": "bulk", "url": server.url_for("/bulk")}], extra=RULES)
    writer = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(bulk), "--db", str(db), "poll"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    readers: list[subprocess.CompletedProcess[str]] = []

    def read_while_writing(command: list[str]) -> None:
        while writer.poll() is None:
            readers.append(run_cli(*args, *command))

    threads = [threading.Thread(target=read_while_writing, args=(c,)) for c in READERS]
    for thread in threads:
        thread.start()
    _, writer_err = writer.communicate(timeout=600)
    for thread in threads:
        thread.join(120)
    assert writer.returncode == 0, writer_err
    assert len(readers) >= 6
    _assert_readers_unhurt(readers)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM items WHERE source = 'bulk'").fetchone()[0] == 20_000


# -- old, foreign and damaged databases -------------------------------------------------------


def _v1_database(path: Path) -> None:
    """A database as the previous schema version left it, with real rows in every table."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    for step in MIGRATIONS[:1]:
        step(sqlite_utils.Database(conn))
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO sources (id, url, status, etag, polls) VALUES ('mid-ru', 'https://mid.ru/rss', 'ok', "
                 "'\"e1\"', 3)")
    conn.execute("""INSERT INTO items (id, source, guid, url, title, summary, published, first_seen, sort_time,
                    lang, content_hash, countries, orgs) VALUES (1, 'mid-ru', 'g1', 'https://mid.ru/1',
                    'Statement on international information security', 'cyber norms', '2026-03-01T00:00:00Z',
                    '2026-03-01T00:00:00Z', '2026-03-01T00:00:00Z', 'en', 'h1', '["RU"]', '["UN"]')""")
    conn.execute("INSERT INTO items_fts (rowid, title, summary) VALUES (1, "
                 "'Statement on international information security', 'cyber norms')")
    conn.execute("INSERT INTO entities (kind, value, item_id) VALUES ('country', 'RU', 1)")
    conn.execute("INSERT INTO matches (item_id, rule, topic, hits, snippet, marks, matched_at) VALUES "
                 "(1, 'cyber', 'custom', '[]', 'cyber norms', '[]', '2026-03-01T00:00:00Z')")
    conn.execute("INSERT INTO item_versions (item_id, title, summary, content_hash, seen_from, replaced_at) VALUES "
                 "(1, 'Draft', '', 'h0', '2026-02-28T00:00:00Z', '2026-03-01T00:00:00Z')")
    conn.execute("COMMIT")
    conn.close()


def test_a_database_of_the_previous_schema_opens_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "dw.db"
    _v1_database(path)
    assert run_cli("--db", str(path), "search", "--format", "jsonl", "information").stdout.count("\n") == 1

    with Store.open(path) as store:
        assert store.db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        found = list(store.search(SearchQuery(text="information security", countries=("RU",), rules=("cyber",))))
        assert [r["guid"] for r in found] == ["g1"] and found[0]["orgs"] == ["UN"]
        assert store.source_state("mid-ru").validators.etag == '"e1"'
        assert store.db.conn.execute("SELECT count(*) FROM item_versions").fetchone()[0] == 1
        assert {"digests", "subscriptions", "delivered"} <= set(store.db.table_names())
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _ours(path: Path) -> None:
    with Store.open(path) as store:
        store.db.conn.execute("CREATE TABLE filler (x)")
        store.db.conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 2000)


def _damaged_in_the_middle(path: Path) -> None:
    _ours(path)
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(page * 3, len(data) - page, page * 7):
        data[offset:offset + 64] = b"\xa5" * 64
    path.write_bytes(bytes(data))


def _truncated(path: Path) -> None:
    _ours(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE accounts (id INTEGER, owner TEXT)")
    conn.execute("INSERT INTO accounts VALUES (1, 'someone else')")
    conn.commit()
    conn.close()


def _newer(path: Path) -> None:
    _ours(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


BAD_FILES = {
    "text file": (lambda p: p.write_text("name,email\nx,y@example.org\n" * 50), "not an SQLite database"),
    "another program's database": (_foreign, "another program"),
    "damaged in the middle": (_damaged_in_the_middle, "damaged"),
    "truncated": (_truncated, "damaged"),
    "damaged header": (lambda p: (_ours(p), p.write_bytes(b"SQLite format 2\0" + p.read_bytes()[16:]))[1],
                       "not an SQLite database"),
    "newer schema": (_newer, "newer diplowatch"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_database_not_ours_or_damaged_is_refused_and_never_touched(tmp_path: Path, kind: str) -> None:
    make, words = BAD_FILES[kind]
    db = tmp_path / "dw.db"
    make(db)
    config = write_config(tmp_path / "sources.yaml", [{"id": "a", "url": "http://127.0.0.1:9/feed"}], extra=RULES)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "sources.yaml"}
    for command in ("poll", "run", "sources", "search"):
        result = run_cli("--config", str(config), "--db", str(db), command, timeout=60)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert words in result.stderr and str(db) in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name not in ("sources.yaml", "dw.db.lock")}
    assert after == before, "the file was modified or new files appeared beside it"


# -- read-only and full storage -------------------------------------------------------------------


def _read_only_mounts_work() -> bool:
    probe = Path(f"/tmp/dw-ro-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        shell = f"mount --bind {probe} {probe} && mount -o remount,bind,ro {probe} && ! touch {probe}/x 2>/dev/null"
        return shutil.which("unshare") is not None and subprocess.run(
            ["unshare", "--mount", "sh", "-c", shell], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _in_read_only_folder(folder: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """The CLI with `folder` mounted read-only for it alone (a private mount namespace: root cannot write either)."""
    command = " ".join(["exec", sys.executable, "-m", "monitor", *args])
    shell = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && {command}"
    return subprocess.run(["unshare", "--mount", "sh", "-c", shell], capture_output=True, text=True, timeout=60,
                          cwd=REPO)


@pytest.mark.skipif(not _read_only_mounts_work(), reason="needs `unshare --mount` to mount a folder read-only")
def test_read_only_storage_is_a_clear_error_for_writers_and_still_readable(tmp_path: Path, server: HTTPServer) -> None:
    farm = GrowingFarm(server)
    storage = tmp_path / "storage"
    storage.mkdir()
    db = storage / "dw.db"
    config = write_config(tmp_path / "sources.yaml", farm.sources()[:2], extra=RULES)
    args = ["--config", str(config), "--db", str(db)]
    assert run_cli(*args, "poll").returncode == 0
    before = {p.name: p.read_bytes() for p in storage.iterdir()}
    farm.generation = 1

    for command in ("poll", "run"):
        result = _in_read_only_folder(storage, [*args, command])
        assert result.returncode == 1, (command, result.stderr)
        assert "read-only" in result.stderr.lower() and "Traceback" not in result.stderr, result.stderr
    search = _in_read_only_folder(storage, [*args, "search", "--format", "jsonl"])
    assert search.returncode == 0 and search.stdout.count("\n") == 2 * GrowingFarm.size(0), search.stderr
    assert _in_read_only_folder(storage, [*args, "sources", "--format", "jsonl"]).returncode == 0
    assert {p.name: p.read_bytes() for p in storage.iterdir()} == before


def test_a_database_path_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("x")
    config = write_config(tmp_path / "sources.yaml", [{"id": "a", "url": "http://127.0.0.1:9/feed"}], extra=RULES)
    for command in ("poll", "run"):
        result = run_cli("--config", str(config), "--db", str(tmp_path / "not-a-folder" / "dw.db"), command)
        assert result.returncode == 1 and "is a file, not a folder" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


class _NoAnalysis:
    def analyse(self, items: object, source: object) -> dict:
        return {}


def test_a_full_disk_is_a_clear_error_and_no_poll_is_half_written(tmp_path: Path, server: HTTPServer) -> None:
    """SQLite's max_page_count, lowered on the connection, stands in for a full disk."""
    farm = GrowingFarm(server)
    config = Config(sources=tuple(Source(**s) for s in farm.sources()[:2]), rule_packs=())
    with Store.open(tmp_path / "dw.db") as store:
        pages = store.db.conn.execute("PRAGMA page_count").fetchone()[0]
        store.db.conn.execute(f"PRAGMA max_page_count = {pages + 3}")

        def poll() -> list:
            async def go() -> list:
                async with Fetcher(config.settings) as fetcher:
                    return await poll_many(Poller(config, store, _NoAnalysis(), fetcher), config.sources)  # type: ignore[arg-type]
            return asyncio.run(go())

        with pytest.raises(StoreError, match="disk is full"):
            poll()
        assert store.count_items() == 0 and store.source_state("s0").validators.etag is None
        store.db.conn.execute("PRAGMA max_page_count = 1073741823")
        assert {o.status for o in poll()} == {"ok"}
        assert store.count_items() == 2 * GrowingFarm.size(0)
        assert store.source_state("s0").validators.etag == GrowingFarm.etag(0, 0)
