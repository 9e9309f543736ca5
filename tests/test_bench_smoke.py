"""The benchmark (bench/run.py) runs end to end at its smallest size and reports every figure.

No timing thresholds here: those are the benchmark's own business on a quiet machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from numbers import Number
from pathlib import Path

from tests.conftest import REPO

FIGURES = (
    "cold_wall_s", "cold_poll_wall_s", "cold_cpu_s", "cold_peak_rss_mb", "startup_s", "items_stored", "items_per_s",
    "floor_s", "floor_ratio", "warm_wall_s", "warm_poll_wall_s", "warm_cpu_ms_per_source", "warm_unchanged",
    "feedparser_loop_wall_s", "ratio_to_feedparser_loop", "ingest_items_per_s", "feedparser_items_per_s",
    "ingest_ratio_to_feedparser", "floor_per_core_ratio", "cold_workers", "run_rss_mb", "run_cpu_s_per_hour_at_30m",
    "run_cpu_s_per_hour_at_bench_interval",
)
QUERIES = ("phrase", "boolean", "country + dates", "chinese term")


def test_quick_bench_reports_every_figure(tmp_path: Path) -> None:
    committed = REPO / "bench" / "RESULTS.md"
    before = committed.stat().st_mtime_ns if committed.exists() else None
    result = subprocess.run([sys.executable, "bench/run.py", "--quick", "--results", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    summary = report["summary"]
    missing = [f for f in FIGURES if not isinstance(summary.get(f), Number)]
    assert not missing, missing
    for where in ("library", "api"):
        for query in QUERIES:
            for p in ("p50", "p95"):
                assert isinstance(summary[f"search_{where}_{query}_{p}_ms"], Number), (where, query, p)
    assert summary["items_stored"] == 20 * 5
    assert summary["warm_unchanged"] == 20  # every warm answer was a 304
    assert report["poll"]["diplowatch"]["farm"]["not_modified"] == 20
    assert report["ingest"]["profile"]["share_by_part"]
    assert {"nproc", "cpu", "ram_gb", "python"} <= report["machine"].keys()
    assert "| figure" in result.stdout  # the table was printed
    assert (committed.stat().st_mtime_ns if committed.exists() else None) == before  # a quick run leaves it alone


def test_http_clients_bench_measures_every_client_on_304s() -> None:
    result = subprocess.run([sys.executable, "bench/http_clients.py", "--sources", "20", "--rounds", "1"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("httpx (as fetch.py)") and lines[-1].startswith("bare asyncio socket"), lines
    assert all("ms CPU per request" in line and "(statuses [304])" in line for line in lines), lines
