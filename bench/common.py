"""Shared by the benchmark parts: the farm as a subprocess, measured subprocesses, the sources.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
from bench.corpus import COUNTRIES, feed_lang  # noqa: E402
from bench.farm import feed_url, host  # noqa: E402

# the loopback farm must never be reached through a proxy from the environment
NO_PROXY_ENV = {"NO_PROXY": "*", "no_proxy": "*", "HTTP_PROXY": "", "http_proxy": "", "HTTPS_PROXY": "",
                "https_proxy": "", "ALL_PROXY": "", "all_proxy": ""}


@dataclass(frozen=True)
class Measured:
    """A finished subprocess: wall and CPU seconds (user + system, children included), peak RSS."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(cmd: Sequence[str], timeout: float, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> Measured:
    """Run `cmd` to completion and read its resource usage from wait4 (not from a sampler)."""
    out_path, err_path = Path(f"/tmp/bench-{os.getpid()}.out"), Path(f"/tmp/bench-{os.getpid()}.err")
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd or ROOT,
                                env={**os.environ, **NO_PROXY_ENV, **(env or {})})
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    out_path.unlink(missing_ok=True)
    err_path.unlink(missing_ok=True)
    return Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode, stdout, stderr)


@dataclass(frozen=True)
class FarmInfo:
    sources: int
    port: int
    process: subprocess.Popen

    def url(self, i: int) -> str:
        return feed_url(i, self.port)

    def stats(self) -> dict[str, int]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{host(0)}:{self.port}/stats", timeout=10) as answer:
            return json.loads(answer.read())

    def cpu_s(self) -> float:
        """CPU seconds the farm process has used so far (from /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def feed_farm(sources: int, items: int, latency: float, change_every: float = 0.0) -> Iterator[FarmInfo]:
    cmd = [sys.executable, str(BENCH / "farm.py"), "--sources", str(sources), "--items", str(items),
           "--latency", str(latency), "--change-every", str(change_every), "--max-seconds", "7200"]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line:
            raise RuntimeError("the feed farm did not start")
        yield FarmInfo(sources, json.loads(line)["port"], process)
    finally:
        process.terminate()
        process.wait(timeout=10)


def write_sources_yaml(path: Path, farm: FarmInfo, concurrency: int, per_host: int, interval: str = "30m",
                       tick: str = "5s") -> Path:
    """sources.yaml for every farm feed, tagged with its country as real sources are."""
    lines = ["settings:", f"  concurrency: {concurrency}", f"  per_host: {per_host}", f"  tick: {tick}",
             "sources:"]
    for i in range(farm.sources):
        lang = feed_lang(i)
        lines += [f"  - id: farm-{i}", f"    url: {farm.url(i)}", f"    interval: {interval}",
                  f"    tags: {{country: {COUNTRIES[lang]}, type: ministry}}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
