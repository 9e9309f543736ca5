"""The CLI as a user runs it: a real subprocess, a real HTTP server, a real SQLite file."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from pytest_httpserver import HTTPServer
from werkzeug import Response

from tests.conftest import DATA, FeedFarm, run_cli, write_config

FEEDS = DATA / "feeds"
GOOD = ["rss20_plain_state.xml", "rss_cp1251_kremlin.xml", "atom_govuk_fcdo.atom", "rss_zh_mfa.xml",
        "rss10_rdf_mofa.rdf"]


def _bad_sources(httpserver: HTTPServer) -> list[dict]:
    httpserver.expect_request("/500").respond_with_data("oops", status=500)
    httpserver.expect_request("/garbage").respond_with_data(bytes(range(256)) * 40, content_type="application/xml")
    httpserver.expect_request("/botcheck").respond_with_data(
        "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
        "<div id='challenge-platform'>Checking your browser</div></body></html>", content_type="text/html")
    httpserver.expect_request("/loop").respond_with_response(Response(status=302, headers={"Location": "/loop"}))
    bomb = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    httpserver.expect_request("/huge").respond_with_data(bomb.compress(b" " * 30_000_000) + bomb.flush(),
                                                          headers={"Content-Encoding": "gzip"})
    httpserver.expect_request("/page").respond_with_data("<html><body><p>Hello</p></body></html>",
                                                         content_type="text/html")
    return [{"id": f"bad-{p}", "url": httpserver.url_for(f"/{p}")}
            for p in ("500", "garbage", "botcheck", "loop", "huge", "page")]


def test_poll_poll_again_search_and_sources(tmp_path: Path, farm: FeedFarm, httpserver: HTTPServer) -> None:
    good = [{"id": f"good-{i}", "url": farm.add(f"/feeds/{name}", (FEEDS / name).read_bytes())}
            for i, name in enumerate(GOOD)]
    config = write_config(tmp_path / "sources.yaml", good + _bad_sources(httpserver), settings={"max_body": "5MB"})
    args = ["--config", str(config), "--db", str(tmp_path / "storage" / "dw.db")]

    first = run_cli(*args, "poll")
    assert first.returncode == 0, first.stderr
    assert "5 ok" in first.stdout and "0 unchanged" in first.stdout

    items = [json.loads(line) for line in run_cli(*args, "search", "--format", "jsonl").stdout.splitlines()]
    assert len(items) >= 20
    assert {"id", "source", "url", "title", "published", "first_seen", "lang", "summary", "rules"} <= set(items[0])
    assert any("Россия" in i["title"] or "Росси" in i["title"] for i in items), "cp1251 Cyrillic readable"
    assert {i["source"] for i in items} == {s["id"] for s in good}

    second = run_cli(*args, "poll")
    assert second.returncode == 0, second.stderr
    assert "0 ok, 5 unchanged" in second.stdout and "0 new items" in second.stdout
    assert farm.not_modified == 5  # an unchanged feed costs one 304 and no parsing

    health = {s["id"]: s for s in map(json.loads, run_cli(*args, "sources", "--format", "jsonl").stdout.splitlines())}
    assert {"id", "status", "last_success", "consecutive_failures", "last_error", "items"} <= set(health["good-0"])
    assert health["good-0"]["status"] == "ok" and health["good-0"]["items"] > 0
    expectations = {"bad-500": ("failing", "HTTP 500"), "bad-garbage": ("failing", "not a feed"),
                    "bad-botcheck": ("blocked", "bot check"), "bad-loop": ("failing", "redirect"),
                    "bad-huge": ("failing", "cap"), "bad-page": ("failing", "HTML page")}
    for source_id, (status, words) in expectations.items():
        row = health[source_id]
        assert row["status"] == status, row
        assert words in row["last_error"], row
        assert row["consecutive_failures"] == 2 and row["last_success"] is None and row["items"] == 0


def test_search_formats_and_filters(tmp_path: Path, farm: FeedFarm) -> None:
    url = farm.add("/f.xml", (FEEDS / "rss20_plain_state.xml").read_bytes())
    config = write_config(tmp_path / "sources.yaml", [{"id": "state", "url": url}])
    args = ["--config", str(config), "--db", str(tmp_path / "dw.db")]
    assert run_cli(*args, "poll").returncode == 0
    jsonl = run_cli(*args, "search", "--format", "jsonl", "--limit", "2").stdout.splitlines()
    assert len(jsonl) == 2
    csv_out = run_cli(*args, "search", "--format", "csv", "--source", "state").stdout.splitlines()
    assert csv_out[0].startswith("id,source,url,title")
    table = run_cli(*args, "search", "--format", "table").stdout.splitlines()
    assert table[0].split()[:3] == ["published", "source", "lang"]
    assert run_cli(*args, "search", "--format", "jsonl", "--source", "nothere").stdout == ""
    assert run_cli(*args, "search", "--format", "jsonl", "--since", "2999-01-01").stdout == ""


def test_bad_configuration_exits_2_with_file_line_key(tmp_path: Path) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text("sources:\n  - id: a\n    url: https://example.org/\n    colour: red\n")
    for command in ("check", "poll", "run"):
        result = run_cli("--config", str(config), "--db", str(tmp_path / "dw.db"), command)
        assert result.returncode == 2, (command, result.stderr)
        assert f"{config}:4: sources[0] (a).colour: unknown key" in result.stderr
        assert "Traceback" not in result.stderr


def test_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    for args in (["nosuchcommand"], ["search", "--limit", "zero"], ["search", "--since", "yesterday"]):
        result = run_cli("--db", str(tmp_path / "dw.db"), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and "Usage" in result.stderr + result.stdout


def test_malformed_query_is_a_clear_error(tmp_path: Path, farm: FeedFarm) -> None:
    url = farm.add("/f.xml", (FEEDS / "rss20_plain_state.xml").read_bytes())
    config = write_config(tmp_path / "sources.yaml", [{"id": "state", "url": url}])
    args = ["--config", str(config), "--db", str(tmp_path / "dw.db")]
    run_cli(*args, "poll")
    result = run_cli(*args, "search", '"cyber AND')
    assert result.returncode == 1 and "cannot read the search query" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_lists_sources(tmp_path: Path) -> None:
    config = write_config(tmp_path / "sources.yaml", [{"id": "kremlin-en", "url": "http://en.kremlin.ru/events/all/feed"}])
    result = run_cli("--config", str(config), "check")
    assert result.returncode == 0 and "kremlin-en" in result.stdout and "1 sources" in result.stdout


def test_python_dash_m_and_console_script_agree() -> None:
    import shutil
    import subprocess

    exe = shutil.which("diplowatch")
    assert exe, "the diplowatch console script is installed"
    assert subprocess.run([exe, "--version"], capture_output=True, text=True).stdout == run_cli("--version").stdout
