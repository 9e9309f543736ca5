"""Polling the farm: diplowatch cold and warm, urlwatch cold and warm, a sequential feedparser loop.

Every tool runs as its own process against the same farm in the same run, measured by wait4 (wall,
CPU of all threads, peak RSS). diplowatch runs through bench/poll.py, which is `diplowatch poll`'s
code path (load_config, build_analyser, Poller, poll_many) with its own timer around the poll.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from bench.common import BENCH, FarmInfo, Measured, run_measured, write_sources_yaml


def diplowatch(farm: FarmInfo, work: Path, concurrency: int, per_host: int, timeout: float) -> dict[str, Any]:
    """Cold then warm in one process (see bench/poll.py); `process_wall_s` is the cold poll as a
    `diplowatch poll` process would take it: imports + start-up + the poll."""
    config = write_sources_yaml(work / "sources.yaml", farm, concurrency, per_host)
    db = work / "diplowatch.db"
    before = farm.stats()
    measured = run_measured([sys.executable, str(BENCH / "poll.py"), str(config), str(db)], timeout)
    _figures(measured)
    inside = _json(measured)
    start_up = inside["import_wall_s"] + inside["startup_wall_s"]
    for phase in ("cold", "warm"):
        inside[phase]["process_wall_s"] = start_up + inside[phase]["poll_wall_s"]
    return {"concurrency": concurrency, "per_host": per_host, **inside, "process": _figures(measured),
            "farm": _delta(before, farm.stats()), "db": str(db)}


def urlwatch(farm: FarmInfo, work: Path, timeout: float) -> dict[str, Any] | None:
    """urlwatch with one job per feed, its own cache and config in `work` (None if not installed)."""
    command = shutil.which("urlwatch")
    if command is None:
        return None
    home = work / "urlwatch"
    home.mkdir(exist_ok=True)
    urls = home / "urls.yaml"
    urls.write_text("\n---\n".join(f"name: feed-{i}\nurl: {farm.url(i)}" for i in range(farm.sources)) + "\n")
    cmd = [command, "--urls", str(urls), "--config", str(home / "urlwatch.yaml"), "--cache", str(home / "cache.db")]
    out: dict[str, Any] = {"version": _version(command)}
    for phase in ("cold", "warm"):
        before = farm.stats()
        measured = run_measured(cmd, timeout, cwd=home)
        out[phase] = {**_figures(measured), "farm": _delta(before, farm.stats())}
    return out


def feedparser_loop(farm: FarmInfo, work: Path, timeout: float) -> dict[str, Any]:
    urls = work / "urls.txt"
    urls.write_text("\n".join(farm.url(i) for i in range(farm.sources)) + "\n")
    before = farm.stats()
    measured = run_measured([sys.executable, str(BENCH / "feedparser_loop.py"), str(urls)], timeout)
    entries = int(measured.stdout.strip() or 0) if measured.returncode == 0 else 0
    return {**_figures(measured), "entries": entries, "farm": _delta(before, farm.stats())}


def _figures(m: Measured) -> dict[str, Any]:
    if m.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed ({m.returncode}): {m.stderr[-1500:]}")
    return {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "peak_rss_mb": m.peak_rss_mb}


def _json(m: Measured) -> dict[str, Any]:
    return json.loads([line for line in m.stdout.splitlines() if line.startswith("{")][-1])


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) - (1 if k == "requests" else 0) for k in after}  # less our /stats


def _version(command: str) -> str:
    measured = run_measured([command, "--version"], 30)
    return measured.stdout.strip()
