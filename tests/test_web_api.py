"""The web app's routes and JSON API, in process (Starlette's TestClient) over a real SQLite file.

The database is filled from tests/data/web/items.yaml through the Store API (the same save_poll the
pipeline uses); the searches and their expected results are in tests/data/web/searches.yaml.
The real-socket, real-browser tests are in test_web_browser.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
import socket
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from monitor.cli import cli
from monitor.heartbeat import heartbeat_path, pulse, read_heartbeat, write_heartbeat
from monitor.match import Hit, Match
from monitor.models import Item, PollOutcome, iso, utcnow
from monitor.store import Analysis, PollRecord, Store
from monitor.web.app import create_app
from monitor.web.chart import nice_ceiling, week_range, weekly_chart
from monitor.web.diff import word_diff
from monitor.web.highlight import excerpt, query_terms, term_pattern
from monitor.web.server import WebServer
from monitor.web.settings import WebSettings

DATA = Path(__file__).parent / "data" / "web"
ATOM = "{http://www.w3.org/2005/Atom}"


# -- the database every test here reads --------------------------------------------------------


def load_yaml(name: str) -> Any:
    return YAML(typ="safe").load((DATA / name).read_text(encoding="utf-8"))


def build_database(path: Path, now: datetime | None = None) -> dict[str, int]:
    """Store the statements of items.yaml into a new database at `path`; returns guid -> item id."""
    now = now or utcnow()
    entries = load_yaml("items.yaml")["items"]
    with Store.open(path) as store:
        for entry in entries:
            published = now - timedelta(days=entry["days_ago"])
            item = _item(entry, published, entry["title"], entry["summary"])
            _save(store, item, entry, min(published + timedelta(hours=1), now))
            for number, edit in enumerate(entry.get("edits", []), start=1):
                edited = _item(entry, published, edit["title"], edit["summary"])
                _save(store, edited, entry, min(published + timedelta(days=number), now))
        rows = store.db.conn.execute("SELECT guid, id FROM items").fetchall()
    return dict(rows)


def _item(entry: dict[str, Any], published: datetime, title: str, summary: str) -> Item:
    digest = hashlib.sha256(f"{title}\n{summary}".encode()).hexdigest()
    return Item(entry["source"], entry["guid"], entry["url"], title, summary, published, entry["lang"], digest)


def _save(store: Store, item: Item, entry: dict[str, Any], at: datetime) -> None:
    analysis = Analysis(tuple(entry["countries"]), tuple(entry["orgs"]), entry["doc_type"],
                        tuple(_match(m, item.summary) for m in entry["matches"]))
    outcome = PollOutcome(item.source, "ok", new_items=1)
    record = PollRecord(outcome, f"https://{item.source}.example/feed", at, at + timedelta(minutes=15),
                        items=[item], analyses={item.guid: analysis})
    store.save_poll(record)


def _match(spec: dict[str, Any], text: str) -> Match:
    """A rule match as the rule stage stores it, its marks found from its terms."""
    def spans(body: str) -> list[tuple[int, int]]:
        return [m.span() for t in spec["terms"] for m in re.finditer(re.escape(t), body, re.IGNORECASE)]

    hits = tuple(Hit(spec["terms"][0], "text", s, e) for s, e in spans(text)[:1])
    return Match(spec["rule"], spec["topic"], hits, spec["snippet"], tuple(sorted(spans(spec["snippet"]))))


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("web") / "diplowatch.db"
    return path, build_database(path)


@pytest.fixture(scope="module")
def db_path(database: tuple[Path, dict[str, int]]) -> Path:
    return database[0]


@pytest.fixture(scope="module")
def ids(database: tuple[Path, dict[str, int]]) -> dict[str, int]:
    return database[1]


@contextmanager
def running(settings: WebSettings) -> Iterator[httpx.Client]:
    """The app under uvicorn on a free 127.0.0.1 port, on a thread (as `run --serve` runs it)."""
    server = WebServer(replace(settings, port=0))
    server.start()
    try:
        with httpx.Client(base_url=server.url.rstrip("/"), timeout=10) as client:
            yield client
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(db_path: Path) -> Iterator[httpx.Client]:
    with running(WebSettings(db_path)) as http:
        yield http


def asgi_get(settings: WebSettings, path: str, **kwargs: Any) -> httpx.Response:
    """One request straight into the app, no socket: for settings that would bind a public address."""
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://diplowatch.test") as http:
            return await http.get(path, **kwargs)

    return asyncio.run(call())


# -- searching: tests/data/web/searches.yaml through the API and the page -----------------------

SEARCHES = load_yaml("searches.yaml")["searches"]


def search_params(spec: dict[str, Any], now: datetime) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in spec.items():
        if key.endswith("_days_ago"):
            out.append((key.removesuffix("_days_ago"), (now - timedelta(days=value)).date().isoformat()))
        else:
            out.extend((key, v) for v in (value if isinstance(value, list) else [value]))
    return out


@pytest.mark.parametrize("case", SEARCHES, ids=[c["name"] for c in SEARCHES])
def test_api_search(client: httpx.Client, ids: dict[str, int], case: dict[str, Any]) -> None:
    response = client.get("/api/items", params=search_params(case["params"], utcnow()))
    if "error" in case:
        assert response.status_code == case["error"]["status"]
        assert case["error"]["says"] in response.json()["error"]
        return
    assert response.status_code == 200, response.text
    assert [row["guid"] for row in response.json()["items"]] == case["expect"]


@pytest.mark.parametrize("case", SEARCHES, ids=[c["name"] for c in SEARCHES])
def test_search_page(client: httpx.Client, ids: dict[str, int], case: dict[str, Any]) -> None:
    response = client.get("/", params=search_params(case["params"], utcnow()))
    if "error" in case:
        assert response.status_code == case["error"]["status"]
        assert case["error"]["says"] in html.unescape(response.text)
        assert 'role="alert"' in response.text
        return
    assert response.status_code == 200
    shown = [int(i) for i in re.findall(r'data-item="(\d+)"', response.text)]
    assert shown == [ids[guid] for guid in case["expect"]]


def test_search_page_highlights_query_terms_and_shows_rules(client: httpx.Client) -> None:
    chinese = client.get("/", params={"q": "网络安全"}).text
    assert "<mark>网络安全</mark>" in chinese
    assert 'class="tag rule"' in chinese and "cn-cyber-sovereignty" in chinese
    french = client.get("/", params={"q": "securite"}).text
    assert "<mark>sécurité</mark>" in french  # found without the accent, marked with it
    phrase = client.get("/", params={"q": '"voluntary norms"'}).text
    assert "<mark>voluntary norms</mark>" in phrase


def test_search_page_without_text_shows_the_rules_evidence(client: httpx.Client) -> None:
    page = client.get("/", params={"rule": "cyber-sanctions"}).text
    assert "<mark>cyber sanctions</mark>" in page and "<mark>attribution</mark>" in page


def test_pages_escape_what_sources_wrote(client: httpx.Client, ids: dict[str, int]) -> None:
    for path in ("/", f"/items/{ids['script-title']}", "/?q=markup"):
        page = client.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(" in page or "&lt;img src=x" in page
    item = client.get(f"/items/{ids['script-title']}").text
    assert 'href="javascript:' not in item  # shown as text, never a link


def test_api_pages_walk_to_the_end_without_repeats(client: httpx.Client) -> None:
    seen: list[str] = []
    url: str | None = "/api/items?limit=2"
    while url:
        body = client.get(url).json()
        assert len(body["items"]) <= 2
        seen.extend(row["guid"] for row in body["items"])
        url = body["next"]
    assert seen == SEARCHES[0]["expect"]


def test_search_page_links_to_the_next_page(client: httpx.Client) -> None:
    from monitor.web import pages

    first = client.get("/")
    assert 'rel="next"' not in first.text  # 9 items fit on one page of PAGE_SIZE
    assert pages.PAGE_SIZE > 9
    assert "No more results" in client.get("/", params={"page": "2"}).text
    assert client.get("/", params={"page": "0"}).status_code == 400
    assert client.get("/", params={"page": "401"}).status_code == 400


@pytest.mark.parametrize(("query", "says"), [
    ("limit=0", "limit"), ("limit=501", "limit"), ("limit=ten", "limit"), ("offset=-1", "offset"),
    ("offset=10001", "narrow the filters"), ("offset=1e3", "offset"),
])
def test_api_rejects_bad_paging(client: httpx.Client, query: str, says: str) -> None:
    response = client.get(f"/api/items?{query}")
    assert response.status_code == 400
    assert says in response.json()["error"]


# -- one item ----------------------------------------------------------------------------------


def test_api_item_has_matches_entities_and_earlier_versions(client: httpx.Client, ids: dict[str, int]) -> None:
    body = client.get(f"/api/items/{ids['state-edited-statement']}").json()
    assert body["title"] == "Statement on Cyber Norms Implementation (updated)"
    assert [m["rule"] for m in body["matches"]] == ["un-cyber-norms"]
    assert body["entities"] == {"country": ["US"], "org": ["UN"]}
    assert [v["title"] for v in body["versions"]] == ["Statement on Cyber Norms Implementation"]
    assert "consensus" not in body["versions"][0]["summary"]


def test_api_unknown_item_is_a_json_404(client: httpx.Client) -> None:
    response = client.get("/api/items/999999")
    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_item_page_shows_text_rules_and_a_readable_diff(client: httpx.Client, ids: dict[str, int]) -> None:
    page = client.get(f"/items/{ids['state-edited-statement']}").text
    assert "<ins> consensus</ins>" in page
    assert "<ins>, including hospitals</ins>" in page
    assert "<ins> (updated)</ins>" in page
    assert "<mark>norm against attacks</mark>" in page
    assert 'id="item-text"' in page and "un-cyber-norms" in page


def test_item_page_highlights_the_search_that_led_there(client: httpx.Client, ids: dict[str, int]) -> None:
    page = client.get(f"/items/{ids['mfa-cn-2024-0611']}", params={"q": "网络空间"}).text
    assert page.count("<mark>网络空间</mark>") >= 2


def test_unknown_page_is_an_html_404(client: httpx.Client) -> None:
    response = client.get("/items/999999")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "no such page or item" in response.text


# -- timeline, sources, stats ------------------------------------------------------------------


@pytest.mark.parametrize("by", ["topic", "country"])
def test_timeline_page_draws_bars(client: httpx.Client, by: str) -> None:
    page = client.get("/timeline", params={"by": by, "weeks": "8"}).text
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart"' in page
    assert page.count('<rect class="bar"') >= 4
    assert "http://" not in page.split('class="chart"', 1)[1].split("</svg>", 1)[0].replace(
        "http://www.w3.org/2000/svg", "")  # nothing fetched from elsewhere


def test_api_timeline_counts_matched_items_per_week(client: httpx.Client) -> None:
    body = client.get("/api/timeline", params={"by": "topic", "weeks": "8"}).json()
    assert len(body["weeks"]) == 8
    totals = {s["name"]: s["total"] for s in body["series"]}
    assert totals == {"norms": 3, "attribution": 2, "un-processes": 3, "ict-security": 1}
    assert all(len(s["counts"]) == 8 for s in body["series"])
    assert client.get("/api/timeline", params={"by": "colour"}).status_code == 400


def test_api_sources_and_sources_page(client: httpx.Client) -> None:
    rows = {row["id"]: row for row in client.get("/api/sources").json()["sources"]}
    assert rows["us-state"]["items"] == 3 and rows["us-state"]["status"] == "ok"
    assert rows["us-state"]["polls"] == 4  # one per stored version
    page = client.get("/sources").text
    assert "us-state" in page and "cn-mfa" in page


def test_api_stats(client: httpx.Client) -> None:
    body = client.get("/api/stats").json()
    assert body["items"] == 9 and body["matched_items"] == 8 and body["edited_items"] == 1
    assert body["topics"] == {"norms": 3, "un-processes": 3, "attribution": 2, "ict-security": 1}
    assert body["sources"] == {"ok": 6}


# -- feeds -------------------------------------------------------------------------------------


def feed_entries(response: httpx.Response) -> list[ET.Element]:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(response.content)
    assert root.tag == f"{ATOM}feed"
    return root.findall(f"{ATOM}entry")


def test_topic_feed(client: httpx.Client) -> None:
    entries = feed_entries(client.get("/feeds/topic/norms.atom"))
    titles = [e.findtext(f"{ATOM}title") for e in entries]
    assert titles == ["Joint Statement on Advancing Responsible State Behavior in Cyberspace",
                      "外交部发言人就网络安全问题答记者问", "Statement on Cyber Norms Implementation (updated)"]
    related = entries[0].find(f"{ATOM}link[@rel='related']")
    assert related is not None and re.search(r"/items/\d+$", related.get("href", ""))


def test_search_feed_follows_the_filters(client: httpx.Client) -> None:
    entries = feed_entries(client.get("/feeds/search.atom", params={"q": "网络安全"}))
    assert [e.findtext(f"{ATOM}title") for e in entries] == ["外交部发言人就网络安全问题答记者问"]
    escaped = feed_entries(client.get("/feeds/search.atom", params={"rule": "oewg"}))
    assert "<script>" in (escaped[-1].findtext(f"{ATOM}title") or "")  # as text, parsed back intact


def test_feed_answers_304_when_unchanged(client: httpx.Client) -> None:
    first = client.get("/feeds/topic/norms.atom")
    again = client.get("/feeds/topic/norms.atom", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and not again.content


# -- read-only, tokens, headers ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", "/api/items", "/api/items/1", "/healthz", "/nowhere"])
def test_anything_but_get_and_head_is_405(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_head_answers_without_a_body(client: httpx.Client) -> None:
    response = client.head("/api/items")
    assert response.status_code == 200 and response.content == b""


def test_security_headers(client: httpx.Client) -> None:
    headers = client.get("/").headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in headers["content-security-policy"]


@pytest.mark.parametrize(("host", "token", "needed"), [
    ("127.0.0.1", "s3cret", False), ("::1", "s3cret", False), ("localhost", "s3cret", False),
    ("0.0.0.0", "s3cret", True), ("192.0.2.10", "s3cret", True), ("0.0.0.0", None, False),
])
def test_token_is_needed_only_off_loopback(host: str, token: str | None, needed: bool) -> None:
    assert WebSettings(Path("x.db"), host=host, token=token).token_required is needed


@pytest.mark.parametrize(("path", "how", "status"), [
    ("/api/items", {}, 401),
    ("/api/items", {"headers": {"Authorization": "Bearer s3cret"}}, 200),
    ("/api/items", {"headers": {"Authorization": "Bearer wrong"}}, 401),
    ("/api/items?token=s3cret", {}, 200),
    ("/api/items?token=wrong", {}, 401),
    ("/metrics", {}, 401),
    ("/feeds/topic/norms.atom?token=s3cret", {}, 200),
    ("/", {}, 401),
    ("/healthz", {}, 200),
    ("/healthz?token=wrong", {}, 200),
])
def test_token_off_loopback(db_path: Path, path: str, how: dict[str, Any], status: int) -> None:
    settings = WebSettings(db_path, host="0.0.0.0", token="s3cret")
    response = asgi_get(settings, path, **how)
    assert response.status_code == status
    if "token=wrong" in path:
        assert "set-cookie" not in response.headers  # a wrong token never earns the cookie


def test_query_token_becomes_a_cookie_and_never_appears_in_output(db_path: Path) -> None:
    settings = WebSettings(db_path, host="0.0.0.0", token="s3cret")
    feed = asgi_get(settings, "/feeds/search.atom?token=s3cret&q=cyber")
    assert "s3cret" not in feed.text and "token" not in feed.text
    cookie = feed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "s3cret" not in cookie
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    assert asgi_get(settings, "/api/stats", headers={"Cookie": f"diplowatch_token={value}"}).status_code == 200
    assert asgi_get(settings, "/api/stats", headers={"Cookie": "diplowatch_token=forged"}).status_code == 401


# -- health and metrics ------------------------------------------------------------------------


def test_healthz(db_path: Path, tmp_path: Path) -> None:
    with running(WebSettings(db_path)) as http:
        assert http.get("/healthz").json() == {
            "status": "ok", "database": "ok", "scheduler": "none", "heartbeat_age_seconds": None}


def test_healthz_under_run_needs_a_fresh_heartbeat(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    Store.open(db).close()
    with running(WebSettings(db, under_run=True, heartbeat_max_age=60)) as http:
        assert http.get("/healthz").status_code == 503  # no heartbeat yet
        write_heartbeat(db)
        assert http.get("/healthz").json()["scheduler"] == "alive"
        write_heartbeat(db, utcnow() - timedelta(minutes=5))
        body = http.get("/healthz")
        assert body.status_code == 503 and body.json()["scheduler"] == "stale"


def metric_values(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = metric_values(response.text)
    assert values["diplowatch_items"] == 9
    assert values["diplowatch_polls_total"] == 10 and values["diplowatch_poll_failures_total"] == 0
    assert values['diplowatch_source_polls_total{source="us-state"}'] == 4
    assert values['diplowatch_matches{topic="norms"}'] == 3
    assert values["diplowatch_item_versions"] == 1
    assert values["diplowatch_delivery_errors_total"] == 0  # an outbox, nothing sent yet
    for line in response.text.splitlines():  # every sample line is `name{labels} number`
        assert line.startswith("#") or re.fullmatch(r'[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+',
                                                    line), line


def copy_database(source: Path, target: Path) -> Path:
    with sqlite3.connect(source) as old, sqlite3.connect(target) as new:
        old.backup(new)
    new.close()
    old.close()
    return target


def test_metrics_count_deliveries_from_the_outbox(db_path: Path, tmp_path: Path) -> None:
    copy = copy_database(db_path, tmp_path / "with-deliveries.db")
    with sqlite3.connect(copy) as conn:
        conn.executemany(
            "INSERT INTO digests (id, subscription, channel, kind, created_at, state, next_attempt)"
            " VALUES (?, 'analysts', ?, 'digest', '2024-06-01T00:00:00Z', ?, '2024-06-01T00:00:00Z')",
            [("d1", "email", "delivered"), ("d2", "webhook", "pending")])
        conn.executemany("INSERT INTO delivery_attempts (digest_id, attempted_at, ok, error) VALUES (?, ?, ?, ?)", [
            ("d1", "2024-06-01T00:00:00Z", 0, "SMTP 451"), ("d1", "2024-06-01T00:05:00Z", 1, None),
            ("d2", "2024-06-01T00:00:00Z", 0, "HTTP 500"),
        ])
        conn.executemany(
            "INSERT INTO delivered (subscription, channel, item_id, digest_id, delivered_at)"
            " VALUES ('analysts', 'email', ?, 'd1', '2024-06-01T00:05:00Z')", [(1,), (2,)])
    conn.close()
    with running(WebSettings(copy)) as http:
        values = metric_values(http.get("/metrics").text)
    assert values['diplowatch_delivery_attempts_total{channel="email",result="ok"}'] == 1
    assert values['diplowatch_delivery_attempts_total{channel="email",result="error"}'] == 1
    assert values['diplowatch_delivery_attempts_total{channel="webhook",result="error"}'] == 1
    assert values["diplowatch_delivery_errors_total"] == 2
    assert values['diplowatch_deliveries_total{channel="email"}'] == 2
    assert values['diplowatch_digests{state="pending"}'] == 1


def test_metrics_without_an_outbox(db_path: Path, tmp_path: Path) -> None:
    copy = copy_database(db_path, tmp_path / "no-outbox.db")
    with sqlite3.connect(copy) as conn:
        conn.execute("DROP TABLE delivered")  # as in a database from before the digest stage
    conn.close()
    with running(WebSettings(copy)) as http:
        response = http.get("/metrics")
    assert response.status_code == 200
    assert "diplowatch_items 9" in response.text and "deliver" not in response.text


# -- `diplowatch health` and `serve` on the command line ---------------------------------------


def health(db: Path, *extra: str) -> Any:
    return CliRunner().invoke(cli, ["--db", str(db), "health", *extra])


def test_health_command(db_path: Path, tmp_path: Path) -> None:
    missing = health(tmp_path / "nothing.db")
    assert missing.exit_code == 1 and "no database at" in missing.output
    assert not (tmp_path / "nothing.db").exists()  # checking never creates it
    copy = copy_database(db_path, tmp_path / "h.db")
    ok = health(copy)
    assert ok.exit_code == 0, ok.output
    assert "database: ok" in ok.output and "no scheduler heartbeat" in ok.output
    write_heartbeat(copy, utcnow() - timedelta(minutes=10))
    stale = health(copy)
    assert stale.exit_code == 1 and "stale" in stale.output
    assert health(copy, "--max-age", "3600").exit_code == 0
    write_heartbeat(copy)
    assert health(copy).exit_code == 0


def test_health_command_refuses_a_file_that_is_not_ours(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    other.write_bytes(b"not a database at all" * 10)
    result = health(other)
    assert result.exit_code == 1 and "not an SQLite database" in result.output


def test_serve_reports_a_port_in_use(db_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["--db", str(db_path), "--config", "/nonexistent.yaml", "serve",
                                          "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


def test_heartbeat_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    assert read_heartbeat(db) is None and not pulse(db).fresh
    moment = utcnow() - timedelta(seconds=30)
    write_heartbeat(db, moment)
    assert heartbeat_path(db).read_text().strip() == iso(moment)
    beat = pulse(db, max_age=60)
    assert beat.fresh and 29 <= (beat.age or 0) <= 40
    assert not pulse(db, max_age=10).fresh


# -- the pieces: highlighting, diffs, the chart's arithmetic -----------------------------------


@pytest.mark.parametrize(("query", "terms"), [
    ("cyber", [("cyber", False)]),
    ('"norms of responsible" AND sovereignty', [("norms of responsible", False), ("sovereignty", False)]),
    ("cyber NOT ransomware", [("cyber", False)]),
    ("attrib* OR (sanction AND EU)", [("attrib", True), ("sanction", False), ("EU", False)]),
    ("title:cyber", [("cyber", False)]),
    ("网络安全", [("网络安全", False)]),
    ("AND OR NOT", []),
])
def test_query_terms(query: str, terms: list[tuple[str, bool]]) -> None:
    assert query_terms(query) == terms


@pytest.mark.parametrize(("query", "text", "marked"), [
    ("cyber", "Cyber-attacks and cyberspace", ["Cyber"]),
    ("cyber*", "Cyber-attacks and cyberspace", ["Cyber", "cyberspace"]),
    ('"state behaviour"', "responsible State  behaviour in", ["State  behaviour"]),
    ("securite", "la sécurité numérique", ["sécurité"]),
    ("网络", "维护网络空间和平", ["网络"]),
    ("ransomware NOT cyber", "ransomware and cyber", ["ransomware"]),
])
def test_highlighting(query: str, text: str, marked: list[str]) -> None:
    segments = excerpt(text, term_pattern(query))
    assert [t for t, hit in segments if hit] == marked
    assert "".join(t for t, _ in segments) == text


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("We call on states.", "We call on all states.", [("equal", "We call on "), ("insert", "all "),
                                                      ("equal", "states.")]),
    ("维护网络安全", "维护网络空间安全", [("equal", "维护网络"), ("insert", "空间"), ("equal", "安全")]),
    ("norm A", "norm B", [("equal", "norm "), ("delete", "A"), ("insert", "B")]),
])
def test_word_diff(old: str, new: str, expected: list[tuple[str, str]]) -> None:
    assert [(c.op, c.text) for c in word_diff(old, new)] == expected


def test_word_diff_elides_long_unchanged_runs() -> None:
    body = "unchanged words " * 100
    ops = [c.op for c in word_diff(body + "old end", body + "new end")]
    assert ops[0] == "skip" and "delete" in ops and "insert" in ops


@pytest.mark.parametrize(("value", "ceiling"), [(0, 1), (1, 1), (3, 5), (7, 10), (11, 20), (180, 200), (501, 1000)])
def test_nice_ceiling(value: int, ceiling: int) -> None:
    assert nice_ceiling(value) == ceiling


def test_chart_stacks_bars_and_groups_the_rest_as_other() -> None:
    from monitor.store.queries import WeekCount

    weeks = week_range(utcnow().date(), 4)
    counts = [WeekCount(weeks[-1], f"topic{n}", n + 1) for n in range(10)] + [WeekCount(weeks[0], "topic9", 5)]
    chart = weekly_chart(counts, weeks, top=3)
    assert [s.name for s in chart.series] == ["topic9", "topic8", "topic7", "other"]
    assert sum(b.count for b in chart.bars) == sum(c.items for c in counts)
    last_week = [b for b in chart.bars if b.week == weeks[-1]]
    assert min(b.y for b in last_week) >= chart.plot[1]  # the tallest stack fits the plot
    assert all(b.height > 0 for b in chart.bars)


# -- docs/web.md says what the app does --------------------------------------------------------

DOC = (Path(__file__).parent.parent / "docs" / "web.md").read_text(encoding="utf-8")


def test_every_route_is_documented(db_path: Path) -> None:
    app = create_app(WebSettings(db_path))
    paths = [route.path.replace("{item_id:int}", "{id}") for route in app.routes]
    assert len(paths) >= 13
    for path in paths:
        assert f"`{path}" in DOC or f"`GET {path}`" in DOC, f"{path} is not in docs/web.md"


def test_every_filter_and_metric_is_documented(client: httpx.Client) -> None:
    from monitor.web.filters import LIST_FILTERS

    for name in (*LIST_FILTERS, "q", "since", "until", "matched", "limit", "offset"):
        assert f"`{name}`" in DOC, name
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("# TYPE"):
            assert f"`{line.split()[2]}`" in DOC, line


@pytest.mark.parametrize("command", [
    line.strip() for line in DOC.splitlines() if line.strip().startswith("sqlite-utils ")
])
def test_documented_sqlite_utils_commands_work(db_path: Path, command: str) -> None:
    argv = [part.replace("storage/diplowatch.db", str(db_path)) for part in command.split()]
    result = subprocess.run([sys.executable, "-m", "sqlite_utils", *argv[1:]], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "items" in result.stdout or "guid" in result.stdout


def test_summaries_are_reused_for_a_while_then_recomputed() -> None:
    from monitor.web.app import Summaries

    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    reused = Summaries(seconds=3600)
    assert [reused.get("k", compute), reused.get("k", compute), reused.get("other", compute)] == [1, 1, 2]
    fresh = Summaries(seconds=0)
    assert fresh.get("k", compute) != fresh.get("k", compute)
