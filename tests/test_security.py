"""Secrets never leak and feed content never becomes markup or terminal control, through the real CLI.

Every secret below is a recognisable string; each command's stdout and stderr, the database, its WAL
and every file beside it are searched for all of them. Web pages and emails are their owners'
tests (test_web_*, test_digest*, test_deliver_*); here: the CLI's table, jsonl and csv.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import signal
import socket
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from tests.conftest import DATA, REPO, FeedFarm, run_cli, wait_until, write_config

URL_PASSWORD = "url-pass-5e1f0c"
URL_TOKEN = "url-token-5e1f0c"
SMTP_PASSWORD = "smtp-pass-5e1f0c"
HOOK_SECRET = "hook-secret-5e1f0c"
HOOK_PATH = "hook-path-5e1f0c"
SECRETS = (URL_PASSWORD, URL_TOKEN, SMTP_PASSWORD, HOOK_SECRET, HOOK_PATH)
ENV = {"DW_TEST_SMTP_PASSWORD": SMTP_PASSWORD, "DW_TEST_HOOK_SECRET": HOOK_SECRET, "DIPLOWATCH_LOG_LEVEL": "DEBUG"}
FAULTS = DATA / "faults"
RULES = "rule_packs: []\nrules:\n  - name: statement\n    any: [statement, cyber]\n"


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def _with_credentials(url: str, userinfo: str) -> str:
    return url.replace("http://", f"http://{userinfo}@", 1)


def _delivery_config(httpserver: HTTPServer, closed_port: int) -> str:
    httpserver.expect_request(f"/hooks/T000/{HOOK_PATH}").respond_with_data("no", status=500)
    hook = httpserver.url_for(f"/hooks/T000/{HOOK_PATH}")
    return (f"smtp: {{host: 127.0.0.1, port: {closed_port}, security: tls, username: bot, "
            "password_env: DW_TEST_SMTP_PASSWORD, sender: dw@example.org, timeout: 2s}\n"
            "subscriptions:\n  - name: desk\n    every: 1h\n    backfill: 30d\n    min_items: 0\n    alerts: true\n"
            "    email: {to: [desk@example.org]}\n"
            f"    webhook: {{url: \"{hook}\", format: json, secret_env: DW_TEST_HOOK_SECRET}}\n")


def _sources(httpserver: HTTPServer, closed_port: int) -> list[dict]:
    basic = base64.b64encode(f"analyst:{URL_PASSWORD}".encode()).decode()
    httpserver.expect_request("/private.xml", headers={"Authorization": f"Basic {basic}"}).respond_with_data(
        (FAULTS / "hostile_markup.xml").read_bytes(), content_type="application/rss+xml")
    page = (f"<!DOCTYPE html><html><head><link rel='alternate' type='application/rss+xml' "
            f"href='http://analyst:{URL_PASSWORD}@127.0.0.1/feed.xml'></head><body>Home</body></html>")
    httpserver.expect_request("/home").respond_with_data(page, content_type="text/html")
    httpserver.expect_request("/moved").respond_with_response(
        Response(status=302, headers={"Location": f"ftp://analyst:{URL_PASSWORD}@127.0.0.1/feed"}))
    return [
        {"id": "private", "url": _with_credentials(httpserver.url_for("/private.xml"), f"analyst:{URL_PASSWORD}"),
         "interval": "1s"},
        {"id": "names-a-feed", "url": _with_credentials(httpserver.url_for("/home"), f"analyst:{URL_PASSWORD}")},
        {"id": "moved", "url": _with_credentials(httpserver.url_for("/moved"), f"analyst:{URL_PASSWORD}")},
        {"id": "token", "url": f"http://{URL_TOKEN}@127.0.0.1:{closed_port}/feed"},
    ]


def _leaks(text: str | bytes) -> list[str]:
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return [s for s in SECRETS if s.encode() in data]


def test_secrets_never_reach_output_logs_or_database(tmp_path: Path, httpserver: HTTPServer,
                                                     closed_port: int) -> None:
    config = write_config(tmp_path / "sources.yaml", _sources(httpserver, closed_port),
                          extra=RULES + _delivery_config(httpserver, closed_port))
    db = tmp_path / "storage" / "dw.db"
    args = ["--config", str(config), "--db", str(db), "-vv"]
    outputs: dict[str, str] = {}

    def cli(*command: str) -> subprocess.CompletedProcess[str]:
        result = run_cli(*args, *command, env=ENV)
        outputs[" ".join(command)] = result.stdout + result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        return result

    assert cli("check").returncode == 0
    assert cli("poll").returncode == 0
    health = {r["id"]: r for r in map(json.loads, cli("sources", "--format", "jsonl").stdout.splitlines())}
    cli("sources", "--format", "table")
    for fmt in ("jsonl", "table", "csv"):
        cli("search", "--format", fmt)
    assert cli("digest", "--dry-run").returncode == 0
    assert cli("digest").returncode == 1  # SMTP refused, webhook 500: both recorded as failed
    cli("deliveries", "--format", "jsonl")
    outputs["run"] = _run_until_polled_again(args, httpserver)

    assert health["private"]["status"] == "ok" and health["private"]["items"] > 0, health["private"]
    assert health["private"]["url"].startswith("http://***:***@"), health["private"]["url"]
    assert health["token"]["url"].startswith("http://***@127.0.0.1:"), health["token"]["url"]
    assert "http://***:***@127.0.0.1/feed.xml" in health["names-a-feed"]["last_error"]
    assert health["moved"]["status"] == "failing" and "not http(s)" in health["moved"]["last_error"]
    assert "***:***@" in outputs["check"]
    for command, text in outputs.items():
        assert not _leaks(text), (command, [line for line in text.splitlines() if _leaks(line)])
    for path in sorted(db.parent.iterdir()):
        assert not _leaks(path.read_bytes()), (path.name, _leaks(path.read_bytes()))


def _run_until_polled_again(args: list[str], httpserver: HTTPServer) -> str:
    def private_hits() -> int:
        return sum(1 for request, _ in httpserver.log if request.path == "/private.xml")

    before = private_hits()
    service = subprocess.Popen([sys.executable, "-m", "monitor", *args, "run"], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**_env(), **ENV})
    try:
        wait_until(lambda: private_hits() > before + 1, timeout=30)
        service.send_signal(signal.SIGTERM)
        stdout, stderr = service.communicate(timeout=20)
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
    assert service.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    return stdout + stderr


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_config_error_with_a_credential_url_is_redacted(tmp_path: Path) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(f"sources:\n  - id: a\n    url: ftp://analyst:{URL_PASSWORD}@example.org/feed\n")
    result = run_cli("--config", str(config), "check")
    assert result.returncode == 2 and f"{config}:3: sources[0] (a).url" in result.stderr
    assert not _leaks(result.stderr + result.stdout), result.stderr


# -- feed content stays text --------------------------------------------------------------------

BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def _poll_hostile(tmp_path: Path, farm: FeedFarm) -> list[str]:
    listing = {"item": "ul.news li", "date": "span"}
    sources = [{"id": "hostile-feed", "url": farm.add("/hostile.xml", (FAULTS / "hostile_markup.xml").read_bytes())},
               {"id": "hostile-page", "url": farm.add("/news", (FAULTS / "hostile_listing.html").read_bytes(),
                                                       content_type="text/html"),
                "kind": "html", "selectors": listing}]
    config = write_config(tmp_path / "sources.yaml", sources, extra=RULES)
    args = ["--config", str(config), "--db", str(tmp_path / "dw.db")]
    assert run_cli(*args, "poll").returncode == 0
    return args


def test_feed_content_is_plain_text_in_every_cli_format(tmp_path: Path, farm: FeedFarm) -> None:
    args = _poll_hostile(tmp_path, farm)

    jsonl = run_cli(*args, "search", "--format", "jsonl").stdout
    items = [json.loads(line) for line in jsonl.splitlines()]  # splitlines: U+2028 and NEL must not split an item
    assert len(items) == 6
    for item in items:
        assert not item["url"] or item["url"].startswith("http://"), item["url"]  # no javascript: or data:
        assert "<script" not in item["title"].lower() and "onerror" not in item["summary"], item
        assert not [c for c in item["title"] + item["summary"] if unicodedata.category(c) == "Cc"], item["title"]
    assert {"Statement bold" in i["title"] for i in items} >= {True}

    table = run_cli(*args, "search", "--format", "table").stdout
    assert not [c for c in table if unicodedata.category(c) == "Cc" and c != "\n"], repr(table)
    assert not BIDI & set(table), "bidi overrides could reorder the columns after them"
    assert len(table.splitlines()) == len(items) + 1

    cells = [cell for row in csv.reader(io.StringIO(run_cli(*args, "search", "--format", "csv").stdout))
             for cell in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@"))], "a spreadsheet would run these"
    assert "'=HYPERLINK(\"http://evil.example/\",\"click me\")" in cells
