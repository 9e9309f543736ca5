"""Parse-and-match worker processes (`poll --workers`): the same result as one process, and no
worker outlives a failure, its own or its parent's."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import DATA, REPO, FeedFarm, run_cli, wait_until, write_config
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from monitor.analyse import build_analyser
from monitor.config import Config, Source
from monitor.models import Fetched, Validators
from monitor.parse import parse
from monitor.workers import InProcesses, InThread, stages_for

FEEDS = DATA / "feeds"
FEED_FILES = sorted(p for p in FEEDS.iterdir() if p.suffix in (".xml", ".atom", ".rdf"))
# what a user reads of an item, without the row ids and times of the poll that stored it
COMPARED = ("source", "url", "title", "published", "lang", "summary", "rules", "countries", "orgs", "doc_type")


def _poll_and_export(tmp_path: Path, name: str, sources: list[dict], workers: int) -> list[dict]:
    args = ["--config", str(write_config(tmp_path / f"{name}.yaml", sources)), "--db", str(tmp_path / f"{name}.db")]
    polled = run_cli(*args, "poll", "--workers", str(workers), timeout=120)
    assert polled.returncode == 0, polled.stderr
    assert "Traceback" not in polled.stderr, polled.stderr
    exported = run_cli(*args, "export", "--format", "jsonl")
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    return sorted(({k: row.get(k) for k in COMPARED} for row in rows), key=lambda r: (r["source"], r["url"] or ""))


def test_workers_store_exactly_what_one_process_stores(tmp_path: Path, farm: FeedFarm) -> None:
    sources = [{"id": p.stem.replace("_", "-"), "url": farm.add(f"/{p.name}", p.read_bytes())} for p in FEED_FILES]

    alone = _poll_and_export(tmp_path, "alone", sources, workers=0)
    shared = _poll_and_export(tmp_path, "shared", sources, workers=2)

    assert len(alone) > 50, "the fixtures hold many items"
    assert any(row["rules"] for row in alone), "some fixture items match the pack"
    assert shared == alone


def _fetched(name: str) -> Fetched:
    return Fetched(f"http://feeds.test/{name}", 200, "application/rss+xml", (FEEDS / name).read_bytes(), Validators())


def test_a_dead_worker_never_loses_a_source(caplog: pytest.LogCaptureFixture) -> None:
    analyser = build_analyser(Config())
    source = Source(id="state", url="http://feeds.test/rss20_plain_state.xml")
    fetched = _fetched("rss20_plain_state.xml")
    expected = parse(fetched, source)
    stages = InProcesses(analyser, 2)
    try:
        for pid in stages.pids():
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: all(_gone(pid) for pid in stages.pids()))
        with caplog.at_level(logging.WARNING, logger="monitor.workers"):
            parsed = asyncio.run(stages.parse(fetched, source))
            analyses = asyncio.run(stages.analyse(parsed.items, source))
    finally:
        stages.close()
    assert parsed == expected
    assert analyses == analyser.analyse(expected.items, source)
    assert "worker process died" in caplog.text
    assert stages.pids() == []


def test_one_worker_or_none_runs_in_this_process() -> None:
    analyser = build_analyser(Config())
    assert isinstance(stages_for(analyser, 1), InThread)
    assert isinstance(stages_for(analyser, 0), InThread)


def _gone(pid: int) -> bool:
    """The process has exited (a zombie still waiting for its parent to reap it counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel ends workers via prctl on Linux")
def test_workers_die_with_a_killed_poll(tmp_path: Path, httpserver: HTTPServer) -> None:
    stall = threading.Event()

    def slow(request: Request) -> Response:
        stall.wait(30)
        return Response("too late", status=503)

    httpserver.expect_request("/slow").respond_with_handler(slow)
    slow_sources = [{"id": f"slow-{i}", "url": httpserver.url_for("/slow")} for i in range(2)]  # a worker each
    config = write_config(tmp_path / "sources.yaml", slow_sources,
                          settings={"read_timeout": "30s", "fetch_deadline": "30s"})
    args = ["--config", str(config), "--db", str(tmp_path / "dw.db"), "poll", "--workers", "2"]
    poll = subprocess.Popen([sys.executable, "-m", "monitor", *args], cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        workers = wait_until(lambda: len(_children(poll.pid)) >= 2 and _children(poll.pid), timeout=60)
        poll.kill()  # SIGKILL: the parent gets no chance to stop its workers
        poll.wait(timeout=10)
        wait_until(lambda: all(_gone(pid) for pid in workers), timeout=20)
    finally:
        stall.set()
        if poll.poll() is None:
            poll.kill()
            poll.wait(timeout=10)
