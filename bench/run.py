"""diplowatch performance against the tools people would otherwise use, measured side by side in one run.

    python bench/run.py [--sources 1000] [--items 20] [--latency 0.1] [--quick]

Parts (each can be chosen with --only): `poll` (a local feed farm polled cold and warm by
diplowatch, by urlwatch and by a sequential feedparser loop), `ingest` (parse, normalise, match,
store with no network, against feedparser's own rate, with a profile), `search` (p50/p95 on a
generated store of --search-items items, library and API), `run` (`diplowatch run` for
--run-seconds: memory and CPU). Prints a table, writes bench/results/latest.json and the table to
bench/RESULTS.md. --quick is the smoke-test size (seconds, not minutes; no urlwatch).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import ingest, polling, search, service
from bench.common import BENCH, feed_farm

PARTS = ("poll", "ingest", "search", "run")
TARGETS = {"floor_ratio": 1.5, "warm_cpu_ms_per_source": 1.0, "search_p95_ms": 50.0, "run_rss_mb": 150.0}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _arguments(argv)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    report: dict[str, Any] = {"command": command,
                              "settings": vars(args), "machine": machine(), "load": {}}
    with tempfile.TemporaryDirectory(prefix="diplowatch-bench-") as tmp:
        work = Path(tmp)
        if "poll" in args.only:
            report["poll"] = _timed(report, "poll", lambda: poll_part(args, work))
        if "ingest" in args.only:
            report["ingest"] = _timed(report, "ingest", lambda: ingest.run(args.ingest_feeds, args.items))
        if "search" in args.only:
            report["search"] = _timed(report, "search", lambda: search.run(results, args.search_items, args.repeat))
        if "run" in args.only:
            report["run"] = _timed(report, "run", lambda: run_part(args, work, report))
    report["summary"] = summary(report)
    table = render(report)
    print(table)
    (results / "latest.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if not args.quick:
        (BENCH / "RESULTS.md").write_text(table + "\n", encoding="utf-8")
    return report


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", type=int, default=1000, help="feeds in the farm (default 1000)")
    p.add_argument("--items", type=int, default=20, help="items per feed (default 20)")
    p.add_argument("--latency", type=float, default=0.1, help="seconds the farm adds to each answer (default 0.1)")
    p.add_argument("--concurrency", type=int, default=32, help="diplowatch settings.concurrency (default 32)")
    p.add_argument("--per-host", type=int, default=2, help="diplowatch settings.per_host (default 2)")
    p.add_argument("--ingest-feeds", type=int, default=200, help="feeds parsed in the ingest part (default 200)")
    p.add_argument("--search-items", type=int, default=1_000_000, help="items in the search store (default 1e6)")
    p.add_argument("--repeat", type=int, default=20, help="runs of each search query (default 20)")
    p.add_argument("--run-seconds", type=float, default=240, help="length of the `run` part (default 240)")
    p.add_argument("--run-interval", type=float, default=60, help="poll interval in the `run` part (default 60)")
    p.add_argument("--change-every", type=float, default=600,
                   help="in the `run` part, each feed gains an item this often, in seconds (default 600)")
    p.add_argument("--no-urlwatch", action="store_true", help="skip urlwatch")
    p.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="run only these parts")
    p.add_argument("--results", default=str(BENCH / "results"), help="where latest.json and the search store go")
    p.add_argument("--quick", action="store_true", help="smoke-test size: 20 feeds x 5 items, 2,000-item store")
    args = p.parse_args(argv)
    if args.quick:
        args.sources, args.items, args.latency, args.ingest_feeds = 20, 5, 0.02, 10
        args.search_items, args.repeat, args.run_seconds, args.run_interval = 2000, 3, 4, 2
        args.change_every, args.no_urlwatch = 4, True
    return args


def poll_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    timeout = 60 + args.sources * args.latency * 2 + args.sources * args.items / 50
    with feed_farm(args.sources, args.items, args.latency) as farm:
        out: dict[str, Any] = {"sources": args.sources, "items": args.items, "latency_s": args.latency}
        # the floor's parsing term, measured just before and just after the poll on the same machine load
        sample = min(args.sources, args.ingest_feeds)
        before = ingest.feedparser_rate(sample, args.items)
        out["diplowatch"] = polling.diplowatch(farm, work, args.concurrency, args.per_host, timeout)
        after = ingest.feedparser_rate(sample, args.items)
        out["feedparser_beside_poll"] = {"feeds": sample, "before": before, "after": after,
                                         "items_per_s": (before["items_per_s"] + after["items_per_s"]) / 2}
        out["urlwatch"] = None if args.no_urlwatch else polling.urlwatch(farm, work, timeout * 4)
        out["feedparser_loop"] = polling.feedparser_loop(farm, work, timeout * 4)
        out["farm_cpu_s"] = farm.cpu_s()
    return out


def run_part(args: argparse.Namespace, work: Path, report: dict[str, Any]) -> dict[str, Any]:
    warm_db = work / "diplowatch.db"
    if not warm_db.exists():  # `run` alone: make the warm database first
        with feed_farm(args.sources, args.items, args.latency) as farm:
            polling.diplowatch(farm, work, args.concurrency, args.per_host, 60 + args.sources)
    with feed_farm(args.sources, args.items, args.latency, args.change_every) as farm:
        return service.run(farm, work, warm_db, args.run_interval, args.run_seconds)


def _timed(report: dict[str, Any], part: str, work: Any) -> Any:
    before = os.getloadavg()
    start = time.perf_counter()
    result = work()
    report["load"][part] = {"loadavg_1m_before": before[0], "loadavg_1m_after": os.getloadavg()[0],
                            "seconds": time.perf_counter() - start}
    return result


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "ram_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "versions": {p: _version(p) for p in ("feedparser", "httpx", "httpcore", "urlwatch")},
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }


def _version(package: str) -> str | None:
    try:
        return version(package)
    except Exception:
        return None


# -- the figures that matter, with their targets -------------------------------------------------


def summary(r: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = {}
    poll, ing = r.get("poll"), r.get("ingest")
    if poll:
        d = poll["diplowatch"]
        cold, warm = d["cold"], d["warm"]
        s["cold_wall_s"], s["cold_poll_wall_s"] = cold["process_wall_s"], cold["poll_wall_s"]
        s["cold_cpu_s"], s["cold_peak_rss_mb"] = cold["poll_cpu_s"], cold["peak_rss_mb"]
        s["cold_workers_rss_mb"] = cold.get("workers_peak_rss_mb", 0.0)
        s["startup_s"] = d["import_wall_s"] + d["startup_wall_s"]
        s["items_stored"] = cold["new_items"]
        s["items_per_s"] = cold["new_items"] / cold["poll_wall_s"]
        network = poll["sources"] * poll["latency_s"] / d["concurrency"]
        parsing = cold["new_items"] / poll["feedparser_beside_poll"]["items_per_s"]
        s["floor_s"] = network + parsing
        s["floor_network_s"], s["floor_parsing_s"] = network, parsing
        s["floor_ratio"] = cold["poll_wall_s"] / s["floor_s"]
        # the floor parses on one core; with W worker processes the machine could parse W times faster
        s["cold_workers"] = max(1, cold.get("workers", 1))
        s["floor_per_core_s"] = network + parsing / min(s["cold_workers"], r["machine"]["nproc"])
        s["floor_per_core_ratio"] = cold["poll_wall_s"] / s["floor_per_core_s"]
        s["warm_wall_s"], s["warm_poll_wall_s"] = warm["process_wall_s"], warm["poll_wall_s"]
        s["warm_cpu_ms_per_source"] = warm["poll_cpu_s"] / poll["sources"] * 1000
        s["warm_unchanged"] = warm["statuses"].get("unchanged", 0)
        s["feedparser_loop_wall_s"] = poll["feedparser_loop"]["wall_s"]
        s["ratio_to_feedparser_loop"] = s["cold_wall_s"] / poll["feedparser_loop"]["wall_s"]
        uw = poll.get("urlwatch")
        s["urlwatch_cold_wall_s"] = uw["cold"]["wall_s"] if uw else None
        s["urlwatch_warm_wall_s"] = uw["warm"]["wall_s"] if uw else None
        s["ratio_to_urlwatch_cold"] = s["cold_wall_s"] / uw["cold"]["wall_s"] if uw else None
        s["ratio_to_urlwatch_warm"] = s["warm_wall_s"] / uw["warm"]["wall_s"] if uw else None
    if ing:
        s["ingest_items_per_s"] = ing["diplowatch"]["items_per_s"]
        s["feedparser_items_per_s"] = ing["feedparser"]["items_per_s"]
        s["ingest_ratio_to_feedparser"] = ing["ratio_to_feedparser"]
    if r.get("search"):
        for where in ("library", "api"):
            for name, q in (r["search"][where] or {}).items():
                s[f"search_{where}_{name}_p50_ms"], s[f"search_{where}_{name}_p95_ms"] = q["p50_ms"], q["p95_ms"]
    if r.get("run"):
        s["run_rss_mb"] = r["run"]["rss_mb_max"]
        s["run_cpu_s_per_hour_at_30m"] = r["run"]["cpu_s_per_hour_at_30m"]
        s["run_cpu_s_per_hour_at_bench_interval"] = r["run"]["cpu_s_per_hour_at_bench_interval"]
    return s


def render(r: dict[str, Any]) -> str:
    s, m = r["summary"], r["machine"]
    rows: list[tuple[str, str, str]] = []
    poll = r.get("poll")
    if poll:
        d = poll["diplowatch"]
        rows += [
            (f"cold poll, {poll['sources']} feeds x {poll['items']} items, {poll['latency_s'] * 1000:g} ms latency, "
             f"concurrency {d['concurrency']} (per_host {d['per_host']}, one host per feed), "
             f"{s['cold_workers']} parse workers", "", ""),
            ("  poll wall (start-up excluded)", f"{s['cold_poll_wall_s']:.1f} s", ""),
            ("  floor: N x latency / concurrency + feedparser parse (rate taken before and after the poll)",
             f"{s['floor_s']:.1f} s ({s['floor_network_s']:.1f} + {s['floor_parsing_s']:.1f})", ""),
            ("  ratio to floor", f"{s['floor_ratio']:.2f}x", _verdict(s["floor_ratio"], TARGETS["floor_ratio"], "x")),
            (f"  stricter floor, parsing spread over {s['cold_workers']} cores / ratio",
             f"{s['floor_per_core_s']:.1f} s / {s['floor_per_core_ratio']:.2f}x", ""),
            ("  poll CPU (all threads and workers) / peak RSS (main, largest worker)",
             f"{s['cold_cpu_s']:.1f} s / {s['cold_peak_rss_mb']:.0f} MB, {s['cold_workers_rss_mb']:.0f} MB", ""),
            ("  start-up: imports, config, rules, entity tables, store", f"{s['startup_s']:.1f} s", ""),
            ("  items stored per second (poll wall)", f"{s['items_per_s']:.0f} ({s['items_stored']} items)", ""),
            ("warm poll (every answer 304)", "", ""),
            ("  poll wall / with start-up", f"{s['warm_poll_wall_s']:.1f} s / {s['warm_wall_s']:.1f} s", ""),
            ("  CPU per unchanged source", f"{s['warm_cpu_ms_per_source']:.2f} ms",
             _verdict(s["warm_cpu_ms_per_source"], TARGETS["warm_cpu_ms_per_source"], " ms")),
            ("the same farm, other tools (process wall; diplowatch: start-up + poll)", "", ""),
            ("  sequential feedparser.parse(url) loop",
             f"{s['feedparser_loop_wall_s']:.1f} s; diplowatch cold = {s['ratio_to_feedparser_loop']:.2f}x", ""),
        ]
        if s.get("urlwatch_cold_wall_s") is not None:
            uw = poll["urlwatch"]
            rows += [(f"  urlwatch {uw['version'].split()[-1]} cold (10 threads, no item parsing)",
                      f"{s['urlwatch_cold_wall_s']:.1f} s; diplowatch cold = {s['ratio_to_urlwatch_cold']:.2f}x", ""),
                     ("  urlwatch warm (304s)",
                      f"{s['urlwatch_warm_wall_s']:.1f} s; diplowatch warm = {s['ratio_to_urlwatch_warm']:.2f}x", "")]
    if r.get("ingest"):
        ing = r["ingest"]["diplowatch"]
        rows += [
            ("ingest, no network (parse, normalise, match, entities, store)", "", ""),
            ("  diplowatch", f"{s['ingest_items_per_s']:.0f} items/s", ""),
            ("  feedparser.parse alone on the same bytes (ceiling)", f"{s['feedparser_items_per_s']:.0f} items/s", ""),
            ("  ratio to ceiling", f"{s['ingest_ratio_to_feedparser']:.2f}", ""),
            ("  CPU split: parse / match+entities / store",
             f"{ing['parse_cpu_s']:.1f} / {ing['match_cpu_s']:.1f} / {ing['store_cpu_s']:.1f} s", ""),
        ]
        rows += [(f"  profile: {name}", f"{share:.0%}", "")
                 for name, share in r["ingest"].get("profile", {}).get("share_by_part", {}).items()]
    if r.get("search"):
        rows.append((f"search, {r['search']['items']:,} items, limit 50: p50 / p95", "", ""))
        for where in ("library", "api"):
            for name, q in (r["search"][where] or {}).items():
                rows.append((f"  {where}: {name}", f"{q['p50_ms']:.1f} / {q['p95_ms']:.1f} ms",
                             _verdict(q["p95_ms"], TARGETS["search_p95_ms"], " ms")))
    if r.get("run"):
        run = r["run"]
        rows += [
            (f"`diplowatch run`, {run['sources']} feeds every {run['interval_s']:g} s, "
             f"{run['measured_s']:.0f} s measured, {run['polls']} polls", "", ""),
            ("  RSS median / max", f"{run['rss_mb_median']:.0f} / {run['rss_mb_max']:.0f} MB",
             _verdict(run["rss_mb_max"], TARGETS["run_rss_mb"], " MB")),
            ("  CPU per poll", f"{run['cpu_ms_per_poll']:.2f} ms", ""),
            ("  CPU per hour: at this interval / at 30 m intervals",
             f"{run['cpu_s_per_hour_at_bench_interval']:.0f} s / {run['cpu_s_per_hour_at_30m']:.1f} s", ""),
        ]
    width = max(len(a) for a, _, _ in rows)
    vwidth = max(len(b) for _, b, _ in rows)
    loads = ", ".join(f"{k} {v['loadavg_1m_before']:.1f}-{v['loadavg_1m_after']:.1f}" for k, v in r["load"].items())
    head = [f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, Python {m['python']}, "
            f"SQLite {m['sqlite']}; load average (1 min) during parts: {loads}",
            f"command: {r['command']}", "",
            f"| {'figure'.ljust(width)} | {'value'.ljust(vwidth)} | target |",
            f"| {'-' * width} | {'-' * vwidth} | ------ |"]
    return "\n".join(head + [f"| {a.ljust(width)} | {b.ljust(vwidth)} | {c} |" for a, b, c in rows])


def _verdict(value: float, target: float, unit: str) -> str:
    return f"{'met' if value < target else 'MISSED'} (< {target:g}{unit})"


if __name__ == "__main__":
    main()
