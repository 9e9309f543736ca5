"""`diplowatch run` against the farm for a few minutes: steady memory and CPU, extrapolated to an hour.

The run starts from the warm database of the polling part (every feed already stored), with each
source's next poll spread evenly over the first interval, as jittered schedules are after a while.
The farm adds one item to each feed every `change_every` seconds, so some polls find news. RSS and
CPU are read from /proc once a second from the first poll on; the first interval (or half the
run, if shorter) is a warm-up and is left out.

CPU per hour is extrapolated two ways: as measured (the bench's short interval), and for the
default 30 m interval, as CPU per poll x polls per hour (1,000 sources x 2) -- conservative, since
the per-poll figure also carries the ticks and idle time of the short run.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import NO_PROXY_ENV, ROOT, FarmInfo, write_sources_yaml

DEFAULT_INTERVAL_S = 1800.0


def run(farm: FarmInfo, work: Path, warm_db: Path, interval: float, duration: float) -> dict[str, Any]:
    config = write_sources_yaml(work / "run-sources.yaml", farm, 32, 2, interval=f"{interval:g}s", tick="1s")
    db = work / "run.db"
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{warm_db}{suffix}").exists():
            shutil.copy(f"{warm_db}{suffix}", f"{db}{suffix}")
    _spread_due_times(db, interval)
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "--db", str(db), "run"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **NO_PROXY_ENV})
    samples: list[tuple[float, float, float, int]] = []  # (time, cpu_s, rss_mb, polls so far)
    try:
        _wait_for_first_poll(proc, db, _polls(db))
        start = time.monotonic()
        while time.monotonic() - start < duration and proc.poll() is None:
            samples.append((time.monotonic() - start, *_usage(proc.pid), _polls(db)))
            time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    if proc.returncode not in (0, -signal.SIGTERM) or len(samples) < 3:
        raise RuntimeError(f"diplowatch run failed ({proc.returncode}): {stderr.decode()[-1500:]}")
    return _summary(samples, interval, farm.sources)


def _wait_for_first_poll(proc: subprocess.Popen, db: Path, polls_before: int, timeout: float = 120) -> None:
    """The clock starts once the service polls (imports and start-up are not steady state)."""
    deadline = time.monotonic() + timeout
    while _polls(db) == polls_before:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("diplowatch run did not start polling")
        time.sleep(0.2)


def _summary(samples: list[tuple[float, float, float, int]], interval: float, sources: int) -> dict[str, Any]:
    warm = [s for s in samples if s[0] >= min(interval, samples[-1][0] / 2)]  # leave the first interval out
    first, last = warm[0], warm[-1]
    seconds, cpu, polls = last[0] - first[0], last[1] - first[1], last[3] - first[3]
    rss = sorted(s[2] for s in warm)
    cpu_per_poll = cpu / polls if polls else 0.0
    return {
        "sources": sources, "interval_s": interval, "measured_s": seconds, "polls": polls,
        "rss_mb_median": rss[len(rss) // 2], "rss_mb_max": rss[-1], "rss_mb_peak_all": max(s[2] for s in samples),
        "cpu_fraction": cpu / seconds if seconds else 0.0, "cpu_ms_per_poll": cpu_per_poll * 1000,
        "cpu_s_per_hour_at_bench_interval": cpu / seconds * 3600 if seconds else 0.0,
        "cpu_s_per_hour_at_30m": cpu_per_poll * sources * 3600 / DEFAULT_INTERVAL_S,
    }


def _usage(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and resident memory in MB of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return cpu, rss


def _polls(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT coalesce(sum(polls), 0) FROM sources").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _spread_due_times(db: Path, interval: float) -> None:
    """Each source due once within the first interval, evenly spread (bench set-up, not diplowatch's own)."""
    conn = sqlite3.connect(db)
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM sources ORDER BY id")]
        now = time.time()
        conn.executemany(
            "UPDATE sources SET next_due = ? WHERE id = ?",
            [(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + interval * k / max(1, len(ids)))), sid)
             for k, sid in enumerate(ids)])
        conn.commit()
    finally:
        conn.close()
