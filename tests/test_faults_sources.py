"""One `diplowatch poll` against twenty good sources and every kind of misbehaving one, on 127.0.0.1.

The poll is the real CLI in a subprocess; its own peak memory comes from os.wait4 (the rusage of that
one child, not of every child pytest ever had). Bad sources answer from pytest-httpserver (threaded)
or from small raw-socket servers for what HTTP servers will not do: never answer, trickle, reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import random
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from tests.conftest import DATA, REPO, run_cli, write_config

FAULTS = DATA / "faults"
GOOD_SOURCES = 20
ITEMS_PER_GOOD = 5
HUGE_FEED_ITEMS = 50_000
# The bound we hold: one poll of all of the below peaks under this RSS. The 50,000-item feed
# dominates (feedparser keeps every entry as dicts); the 200 MB body and the gzip bomb are cut at
# max_body (10 MB) and never held whole.
MAX_POLL_RSS_MB = 450
# The poll's time budget: start-up + the slowest bad source (fetch_deadline) + parsing, matching
# and storing 50,000 items on a loaded 2-core runner.
POLL_BUDGET_S = 100
SETTINGS = {"connect_timeout": "1s", "read_timeout": "1s", "fetch_deadline": "3s", "per_host": 64,
            "concurrency": 64, "max_body": "10MB"}
# a tiny rule of our own instead of the bundled pack: this suite is about faults, not rules
RULES = "rule_packs: []\nrules:\n  - name: cyber\n    any: [cyber]\n"


# -- feeds -------------------------------------------------------------------------------------


def rss(title: str, items: list[str]) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>{title}</title>'
            f'<link>http://example.org/</link>{"".join(items)}</channel></rss>').encode()


def rss_item(guid: str, title: str, when: datetime | None = None) -> str:
    date = f"<pubDate>{when.strftime('%a, %d %b %Y %H:%M:%S GMT')}</pubDate>" if when else ""
    return (f"<item><title>{title}</title><link>http://example.org/{guid}</link><guid>{guid}</guid>{date}"
            f"<description>Statement {guid} on cyber norms</description></item>")


def good_feed(index: int, count: int = ITEMS_PER_GOOD) -> bytes:
    """A healthy feed; odd ones are Atom, so both readers run under load."""
    now = datetime.now(UTC).replace(microsecond=0)
    if index % 2 == 0:
        return rss(f"good {index}", [rss_item(f"good-{index}-{k}", f"Good {index} item {k}", now - timedelta(hours=k))
                                      for k in range(count)])
    entries = "".join(
        f"<entry><id>urn:good:{index}:{k}</id><title>Good {index} entry {k}</title>"
        f"<link href='http://example.org/atom/{index}/{k}'/><updated>{(now - timedelta(hours=k)).isoformat()}</updated>"
        f"<summary>Atom text {k}</summary></entry>" for k in range(count))
    return (f"<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'><title>good {index}"
            f"</title><id>urn:good:{index}</id><updated>{now.isoformat()}</updated>{entries}</feed>").encode()


def huge_feed(count: int) -> bytes:
    items = [f"<item><title>Bulk {i}</title><link>http://example.org/bulk/{i}</link><description>cyber {i}"
             "</description></item>" for i in range(count)]
    return rss("fifty thousand", items)


def gzip_bomb(size: int) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    return b"".join(squeeze.compress(chunk) for _ in range(size >> 20)) + squeeze.flush()


def endless(total: int, chunk: int = 1 << 16) -> Iterator[bytes]:
    """`total` bytes of an RSS-looking body, made as they are sent: never held in memory."""
    yield b"<?xml version='1.0'?><rss version='2.0'><channel><title>big</title>"
    block = b"<!-- " + b"x" * (chunk - 9) + b" -->"
    for _ in range(total // chunk):
        yield block


# -- raw-socket servers for what an HTTP server will not do -------------------------------------


class RawServer:
    """Accepts connections on 127.0.0.1 and hands each to `behave(conn, stop)` in its own thread."""

    def __init__(self, behave: Callable[[socket.socket, threading.Event], None]):
        self.behave = behave
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/feed"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client gave up on us, as it should
            self.behave(conn, self.stop)

    def close(self) -> None:
        self.stop.set()
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(5)
        self.sock.close()


def never_answers(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(60)


def trickles(conn: socket.socket, stop: threading.Event) -> None:
    """Headers, then a byte every 0.3 s: each read beats the 1 s read timeout, the whole answer never comes."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: 100000\r\n\r\n")
    while not stop.wait(0.3):
        conn.sendall(b" ")


def resets(conn: socket.socket, stop: threading.Event) -> None:
    """Reads the request, then closes with a TCP RST (SO_LINGER 0)."""
    conn.recv(4096)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.fixture
def raw_servers() -> Iterator[dict[str, RawServer]]:
    servers = {"silent": RawServer(never_answers), "trickle": RawServer(trickles), "reset": RawServer(resets)}
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but never listening: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture
def server(threaded_server: HTTPServer) -> HTTPServer:
    return threaded_server


# -- what each bad source is and what must be recorded for it -----------------------------------


@dataclass(frozen=True)
class Bad:
    id: str
    url: str
    status: str  # as `diplowatch sources` shows it
    words: str  # in last_error (or last_warning for a source that is ok)


def serve_bad(server: HTTPServer, raw: dict[str, RawServer], closed_port: int) -> list[Bad]:
    def data(path: str, body: bytes | str, status: int = 200, **headers: str) -> str:
        content_type = headers.pop("content_type", "application/rss+xml")
        server.expect_request(path).respond_with_data(body, status=status, content_type=content_type,
                                                      headers=headers)
        return server.url_for(path)

    def redirect(path: str, location: str) -> str:
        server.expect_request(path).respond_with_response(Response(status=302, headers={"Location": location}))
        return server.url_for(path)

    def stream(path: str, total: int) -> str:
        server.expect_request(path).respond_with_handler(
            lambda _request: Response(endless(total), content_type="application/rss+xml"))
        return server.url_for(path)

    def fixture(name: str) -> bytes:
        return (FAULTS / name).read_bytes()

    bot_check = ("<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
                 "<div id='challenge-platform'>Checking your browser before accessing</div></body></html>")
    noise = random.Random(6).randbytes(200_000)
    return [
        Bad("refused", f"http://127.0.0.1:{closed_port}/feed", "failing", "cannot connect"),
        Bad("dns", "http://no-such-ministry.invalid/feed", "failing", "cannot resolve the host name"),
        Bad("silent", raw["silent"].url, "failing", "read timeout"),
        Bad("trickle", raw["trickle"].url, "failing", "too slow"),
        Bad("reset", raw["reset"].url, "failing", "closed the connection"),
        Bad("http-500", data("/500", "oops", 500), "failing", "HTTP 500"),
        Bad("http-503", data("/503", "later", 503, **{"Retry-After": "3600"}), "failing", "retry after 3600s"),
        Bad("http-429", data("/429", "slow down", 429), "failing", "HTTP 429"),
        Bad("http-404", data("/404", "gone", 404), "failing", "not found (HTTP 404)"),
        Bad("http-410", data("/410", "gone for good", 410), "failing", "not found (HTTP 410)"),
        Bad("loop", redirect("/loop", "/loop"), "failing", "too many redirects"),
        Bad("to-ftp", redirect("/to-ftp", "ftp://127.0.0.1/feed"), "failing", "not http(s)"),
        Bad("to-js", redirect("/to-js", "javascript:alert(1)"), "failing", "not http(s)"),
        Bad("bot-check", data("/bot", bot_check, content_type="text/html"), "blocked", "bot check"),
        Bad("empty", data("/empty", b""), "failing", "empty answer"),
        Bad("noise", data("/noise", noise, content_type="application/octet-stream"), "failing", "not a feed"),
        Bad("truncated", data("/truncated", fixture("truncated.xml")), "ok", "recoverable feed damage"),
        Bad("200mb", stream("/200mb", 200 * 2**20), "failing", "10240 KiB cap"),
        Bad("gzip-bomb", data("/bomb", gzip_bomb(1 << 30), **{"Content-Encoding": "gzip"}), "failing", "cap"),
        Bad("laughs", data("/laughs", fixture("billion_laughs.xml")), "ok", "entities"),
        Bad("xxe", data("/xxe", fixture("external_entities.xml")), "ok", "entities"),
        Bad("duplicates", data("/dups", fixture("all_duplicates.xml")), "ok", ""),
        Bad("missing", data("/missing", fixture("missing_fields.xml")), "ok", ""),
        Bad("future", data("/future", fixture("future_dates.xml")), "ok", ""),
        Bad("huge", data("/huge", huge_feed(HUGE_FEED_ITEMS)), "ok", ""),
    ]


# -- running the CLI and measuring it --------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float


def run_measured(args: list[str], tmp_path: Path, timeout: float, env: dict[str, str] | None = None) -> Measured:
    """Run the CLI as a subprocess; its peak RSS is its own, read from os.wait4."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    started = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:
        child = subprocess.Popen([sys.executable, "-m", "monitor", *args], cwd=REPO, stdout=stdout, stderr=stderr,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    killer = threading.Timer(timeout, lambda: os.kill(child.pid, signal.SIGKILL))
    killer.start()
    try:
        _, status, usage = os.wait4(child.pid, 0)
    finally:
        killer.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so tell Popen
    seconds = time.monotonic() - started
    assert seconds < timeout, f"killed after {timeout}s"
    return Measured(child.returncode, out.read_text(), err.read_text(), seconds, usage.ru_maxrss / 1024)


def sources_health(args: list[str]) -> dict[str, dict]:
    result = run_cli(*args, "sources", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return {row["id"]: row for row in map(json.loads, result.stdout.splitlines())}


# -- the test ------------------------------------------------------------------------------------


def test_one_poll_twenty_good_sources_beside_every_bad_one(tmp_path: Path, server: HTTPServer,
                                                           raw_servers: dict[str, RawServer], closed_port: int) -> None:
    good = []
    for i in range(GOOD_SOURCES):
        path = f"/good/{i}"
        server.expect_request(path).respond_with_data(good_feed(i), content_type="application/rss+xml")
        good.append({"id": f"good-{i:02}", "url": server.url_for(path)})
    bad = serve_bad(server, raw_servers, closed_port)
    sources = good + [{"id": b.id, "url": b.url} for b in bad]
    config = write_config(tmp_path / "sources.yaml", sources, extra=RULES, settings=SETTINGS)
    db = tmp_path / "dw.db"
    args = ["--config", str(config), "--db", str(db)]

    poll = run_measured([*args, "poll"], tmp_path, timeout=POLL_BUDGET_S * 2)

    assert poll.returncode == 0, poll.stderr
    assert "Traceback" not in poll.stderr, poll.stderr
    print(f"poll of {len(sources)} sources: {poll.seconds:.1f}s, peak RSS {poll.max_rss_mb:.0f} MB")
    assert poll.seconds < POLL_BUDGET_S
    assert poll.max_rss_mb < MAX_POLL_RSS_MB
    health = sources_health(args)
    _good_sources_stored(health, db)
    _bad_sources_recorded(health, bad)
    _hostile_content_stored_harmlessly(db)


def _good_sources_stored(health: dict[str, dict], db: Path) -> None:
    for i in range(GOOD_SOURCES):
        row = health[f"good-{i:02}"]
        assert (row["status"], row["items"], row["last_error"]) == ("ok", ITEMS_PER_GOOD, None), row
    assert health["huge"]["items"] == HUGE_FEED_ITEMS, health["huge"]
    assert health["duplicates"]["items"] == 1
    assert health["missing"]["items"] == 4  # the one with neither guid nor link is skipped
    assert health["truncated"]["items"] == 3
    assert health["future"]["items"] == 3
    with sqlite3.connect(db) as conn:
        twice = conn.execute("SELECT count(*) FROM (SELECT 1 FROM items GROUP BY source, guid HAVING count(*) > 1)")
        assert twice.fetchone()[0] == 0


def _bad_sources_recorded(health: dict[str, dict], bad: list[Bad]) -> None:
    for b in bad:
        row = health[b.id]
        assert row["status"] == b.status, (b.id, row)
        if b.status != "ok":
            assert b.words in (row["last_error"] or ""), (b.id, row["last_error"])
            assert row["items"] == 0 and row["consecutive_failures"] == 1, row
        else:
            assert b.words in (row["last_warning"] or ""), (b.id, row["last_warning"])
    due = datetime.fromisoformat(health["http-503"]["next_due"].replace("Z", "+00:00"))
    assert due >= datetime.now(UTC) + timedelta(seconds=3500), "Retry-After: 3600 was respected"


def _hostile_content_stored_harmlessly(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        longest = conn.execute("SELECT max(length(title) + length(summary)) FROM items WHERE source = 'laughs'")
        assert longest.fetchone()[0] < 200, "no entity was expanded"
        top = conn.execute("SELECT title, sort_time FROM items ORDER BY sort_time DESC LIMIT 1").fetchone()
    assert not top[0].startswith("Dated"), "an item dated 2099 never sorts above today's"
    assert b"root:x:0:0" not in db.read_bytes()
    for wal in db.parent.glob(f"{db.name}-*"):
        assert b"root:x:0:0" not in wal.read_bytes()


def test_unasked_encoding_and_damaged_gzip_are_named(server: HTTPServer, tmp_path: Path) -> None:
    """A body that says `br` (we only ask for gzip/deflate) and a gzip body damaged mid-stream."""
    server.expect_request("/br").respond_with_data(b"\x1b\x00", headers={"Content-Encoding": "br"})
    packed = bytearray(gzip.compress(good_feed(0, count=200)))
    packed[200:260] = b"\xff" * 60
    server.expect_request("/broken").respond_with_data(bytes(packed), headers={"Content-Encoding": "gzip"})
    config = write_config(tmp_path / "sources.yaml", [{"id": "br", "url": server.url_for("/br")},
                                                      {"id": "broken", "url": server.url_for("/broken")}],
                          extra=RULES, settings=SETTINGS)
    args = ["--config", str(config), "--db", str(tmp_path / "dw.db")]
    assert run_cli(*args, "poll").returncode == 0
    health = sources_health(args)
    assert "content-encoding 'br'" in health["br"]["last_error"]
    assert health["broken"]["status"] == "failing" and "damaged" in health["broken"]["last_error"]


class _NoAnalysis:
    """The match stage left out: this test is about the event loop, not about rules."""

    def analyse(self, items: object, source: object) -> dict:
        return {}


def test_a_slow_save_never_times_out_the_other_polls(server: HTTPServer, tmp_path: Path) -> None:
    """A 50,000-item save (or a slow disk) takes seconds; the other polls' answers must still be read."""
    from monitor.config import Config, Source
    from monitor.fetch import Fetcher
    from monitor.pipeline import Poller, poll_many
    from monitor.store import Store

    saving = threading.Event()
    server.expect_request("/big").respond_with_data(good_feed(0))
    server.expect_request("/other").respond_with_handler(
        lambda _request: (saving.wait(10), Response(good_feed(1), content_type="application/rss+xml"))[1])
    sources = (Source(id="big", url=server.url_for("/big")), Source(id="other", url=server.url_for("/other")))
    config = Config(sources=sources,
                    settings={"read_timeout": 5, "fetch_deadline": 1.5})

    with Store.open(tmp_path / "dw.db") as store:
        save_polls = store.save_polls

        def slow_save(records: list) -> list[tuple[int, int]]:
            if any(record.outcome.source == "big" for record in records):
                saving.set()
                threading.Event().wait(3)  # the disk is slow: longer than the other poll's deadline
            return save_polls(records)

        store.save_polls = slow_save  # type: ignore[method-assign]

        async def go() -> list:
            async with Fetcher(config.settings) as fetcher:
                return await poll_many(Poller(config, store, _NoAnalysis(), fetcher), config.sources)  # type: ignore[arg-type]

        outcomes = {o.source: o for o in asyncio.run(go())}
    assert outcomes["other"].status == "ok", outcomes["other"].error
    assert outcomes["big"].new_items == ITEMS_PER_GOOD and outcomes["other"].new_items == ITEMS_PER_GOOD
