"""Soak: `diplowatch run` against N local sources polled every few seconds, for M minutes.

    python bench/soak.py [--sources 200] [--minutes 10] [--interval 5] [--sample 5]

Samples the service's resident memory and open file descriptors from /proc every --sample
seconds, and counts the polls made (the farm's request count and the database's `sources.polls`)
against the polls due (each source once per interval, plus up to 10% jitter). Feeds change every
minute, so some polls store new items and most are 304s. Prints a table and writes
bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import feed_farm, write_sources_yaml

RESULTS = Path(__file__).resolve().parent / "results"
TICK = 1.0  # seconds between the service's looks for due sources


def sample(pid: int) -> tuple[float, int]:
    """Resident memory in MB and open file descriptors of process `pid`."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def polls_recorded(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT coalesce(sum(polls), 0) FROM sources").fetchone()[0]


def soak(sources: int, minutes: float, interval: float, every: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="dw-soak-"))
    with feed_farm(sources, items=20, latency=0.05, change_every=60) as farm:
        config = write_sources_yaml(work / "sources.yaml", farm, concurrency=32, per_host=2,
                                    interval=f"{interval:g}s", tick=f"{TICK:g}s")
        db = work / "dw.db"
        service = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "--db", str(db), "run"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples, clock, stop = [], threading.Event(), time.monotonic() + minutes * 60
        started = time.monotonic()
        while time.monotonic() < stop and service.poll() is None:
            rss, fds = sample(service.pid)
            samples.append({"t": round(time.monotonic() - started, 1), "rss_mb": round(rss, 1), "fds": fds})
            clock.wait(every)
        elapsed = time.monotonic() - started
        farm_requests = farm.stats()["requests"]
        service.send_signal(signal.SIGTERM)
        exit_code = service.wait(timeout=30)
        made = polls_recorded(db)
    # the least a correct scheduler makes: one poll per interval, + up to 10% jitter, + up to one tick of lag
    due = sources * (1 + int(elapsed / (interval * 1.1 + TICK)))
    warm = [s for s in samples if s["t"] >= min(60, elapsed / 2)]  # after start-up and the first full cycle
    return {
        "sources": sources, "minutes": round(elapsed / 60, 2), "interval_s": interval,
        "rss_mb": {"first": samples[0]["rss_mb"], "after_warmup": warm[0]["rss_mb"], "last": samples[-1]["rss_mb"],
                   "max": max(s["rss_mb"] for s in samples)},
        "fds": {"first": samples[0]["fds"], "after_warmup": warm[0]["fds"], "last": samples[-1]["fds"],
                "max": max(s["fds"] for s in samples)},
        "polls": {"made": made, "farm_requests": farm_requests, "due_at_least": due},
        "exit_code_on_sigterm": exit_code, "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=float, default=5, help="seconds between polls of one source")
    parser.add_argument("--sample", type=float, default=5, help="seconds between samples")
    args = parser.parse_args()
    result = soak(args.sources, args.minutes, args.interval, args.sample)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=2))
    rss, fds, polls = result["rss_mb"], result["fds"], result["polls"]
    print(f"soak: {result['sources']} sources every {result['interval_s']:g}s for {result['minutes']} min")
    print(f"  RSS MB   first {rss['first']}  after warm-up {rss['after_warmup']}  last {rss['last']}  max {rss['max']}")
    print(f"  fds      first {fds['first']}  after warm-up {fds['after_warmup']}  last {fds['last']}  max {fds['max']}")
    print(f"  polls    made {polls['made']} (farm saw {polls['farm_requests']})  due at least {polls['due_at_least']}")
    print(f"  SIGTERM  exit {result['exit_code_on_sigterm']}")


if __name__ == "__main__":
    main()
