"""`diplowatch run` as the container runs it: a real process, SIGTERM, a second instance, restart."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import DATA, REPO, FeedFarm, run_cli, wait_until, write_config


@contextmanager
def _running(args: list[str], *options: str) -> Iterator[subprocess.Popen[str]]:
    """`diplowatch run` as a real process; killed at the end if the test did not stop it."""
    process = subprocess.Popen([sys.executable, "-m", "monitor", *args, "run", *options], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _health(args: list[str]) -> dict[str, dict]:
    result = run_cli(*args, "sources", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    return {row["id"]: row for row in map(json.loads, out)}


def test_run_polls_on_schedule_refuses_a_twin_and_stops_on_sigterm(tmp_path: Path, farm: FeedFarm) -> None:
    url = farm.add("/state.xml", (DATA / "feeds" / "rss20_plain_state.xml").read_bytes())
    slow = farm.add("/slow.xml", (DATA / "feeds" / "rss_zh_mfa.xml").read_bytes())
    config = write_config(tmp_path / "sources.yaml", [{"id": "state", "url": url, "interval": "1s"},
                                                      {"id": "mfa", "url": slow, "interval": "1h"}],
                          settings={"tick": "0.2s"})
    args = ["--config", str(config), "--db", str(tmp_path / "dw.db")]
    with _running(args) as service:
        wait_until(lambda: farm.hits.get("/state.xml", 0) >= 3, timeout=30)  # polled again and again
        assert farm.hits.get("/slow.xml") == 1  # an hourly source is polled once, not every tick
        twin = run_cli(*args, "run", timeout=30)
        assert twin.returncode == 1 and "already using" in twin.stderr
        assert _health(args)["state"]["status"] == "ok"
        started = time.monotonic()
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=15) == 0
        assert time.monotonic() - started < 8
    assert farm.not_modified >= 2  # re-polls of an unchanged feed were 304s

    # a restart picks up where it left off: the hourly source is not due again
    hits_before = farm.hits["/slow.xml"]
    with _running(args) as again:
        lock = tmp_path / "dw.db.lock"
        wait_until(lambda: lock.read_text().strip() == str(again.pid), timeout=20)  # it holds the database
        polls = farm.hits["/state.xml"]
        wait_until(lambda: farm.hits["/state.xml"] > polls, timeout=20)  # and polls the due source
        again.send_signal(signal.SIGINT)
        assert again.wait(timeout=15) == 0
    assert farm.hits["/slow.xml"] == hits_before


def test_run_serve_reports_healthy_and_stops_cleanly(tmp_path: Path, farm: FeedFarm) -> None:
    import socket
    import urllib.request

    url = farm.add("/state.xml", (DATA / "feeds" / "rss20_plain_state.xml").read_bytes())
    config = write_config(tmp_path / "sources.yaml", [{"id": "state", "url": url, "interval": "1h"}],
                          settings={"tick": "0.5s"})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["--config", str(config), "--db", str(tmp_path / "dw.db")]
    def healthz() -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                return json.loads(answer.read()) if answer.status == 200 else None
        except OSError:
            return None

    with _running(args, "--serve", "--port", str(port)) as service:
        assert wait_until(healthz, timeout=30)
        assert run_cli(*args, "health").returncode == 0  # the heartbeat of `run` is fresh
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=15) == 0
