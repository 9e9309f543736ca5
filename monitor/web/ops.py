"""For operators: /healthz (no token needed, says little) and /metrics in Prometheus text format."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute, Route

from monitor.errors import StoreError
from monitor.heartbeat import Health, Pulse, Scheduler, pulse
from monitor.models import from_iso
from monitor.store.queries import MetricsCounts, metrics_counts, ping
from monitor.web.app import Web, web

PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def routes() -> list[BaseRoute]:
    return [Route("/healthz", healthz, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])]


def health(state: Web) -> Health:
    settings = state.settings
    mode = Scheduler.REQUIRED if settings.under_run else Scheduler.IGNORED
    return Health(_database_problem(state), pulse(settings.db_path, settings.heartbeat_max_age), mode)


def _database_problem(state: Web) -> str | None:
    try:
        with state.pool.store() as store:
            return None if ping(store) > 0 else "no diplowatch tables yet"
    except (StoreError, sqlite3.Error) as e:
        return f"unreachable ({type(e).__name__})"


def healthz(request: Request) -> JSONResponse:
    report = health(web(request))
    body = {
        "status": "ok" if report.ok else "unhealthy",
        "database": report.database_problem or "ok",
        "scheduler": "alive" if report.pulse.fresh else "stale" if report.pulse.beat else "none",
        "heartbeat_age_seconds": None if report.pulse.age is None else round(report.pulse.age, 1),
    }
    return JSONResponse(body, status_code=200 if report.ok else 503)


def metrics(request: Request) -> PlainTextResponse:
    state = web(request)
    with state.pool.store() as store:
        counts = metrics_counts(store)
    beat = pulse(state.settings.db_path, state.settings.heartbeat_max_age)
    return PlainTextResponse("".join(exposition(counts, beat)), media_type=PROMETHEUS)


# -- the text format ---------------------------------------------------------------------------

Sample = tuple[dict[str, str], float]


def exposition(counts: MetricsCounts, beat: Pulse) -> Iterator[str]:
    src = counts.sources
    yield from family("diplowatch_up", "gauge", "1 when the database answered this scrape.", [({}, 1)])
    yield from family("diplowatch_polls_total", "counter", "Polls of all sources.",
                      [({}, sum(s.polls for s in src))])
    yield from family("diplowatch_poll_failures_total", "counter", "Failed polls of all sources.",
                      [({}, sum(s.failures for s in src))])
    yield from family("diplowatch_source_polls_total", "counter", "Polls of each source.",
                      [({"source": s.id}, s.polls) for s in src])
    yield from family("diplowatch_source_poll_failures_total", "counter", "Failed polls of each source.",
                      [({"source": s.id}, s.failures) for s in src])
    yield from family("diplowatch_source_consecutive_failures", "gauge", "Failures in a row, per source.",
                      [({"source": s.id}, s.consecutive_failures) for s in src])
    yield from family("diplowatch_source_up", "gauge", "1 when the source's last poll succeeded.",
                      [({"source": s.id}, int(s.status == "ok")) for s in src])
    yield from family("diplowatch_source_last_success_timestamp_seconds", "gauge",
                      "Unix time of each source's last good poll.", list(_last_success(counts)))
    yield from family("diplowatch_items", "gauge", "Statements stored.", [({}, counts.items)])
    yield from family("diplowatch_item_versions", "gauge", "Earlier versions kept of edited statements.",
                      [({}, counts.versions)])
    yield from family("diplowatch_matches", "gauge", "Rule matches stored, by topic.",
                      [({"topic": t}, n) for t, n in counts.matches_by_topic.items()])
    yield from _deliveries(counts)
    if beat.age is not None:
        yield from family("diplowatch_scheduler_heartbeat_age_seconds", "gauge",
                          "Seconds since `run` last ticked.", [({}, round(beat.age, 1))])


def _last_success(counts: MetricsCounts) -> Iterator[Sample]:
    for s in counts.sources:
        moment = from_iso(s.last_success)
        if moment is not None:
            yield {"source": s.id}, moment.timestamp()


def _deliveries(counts: MetricsCounts) -> Iterator[str]:
    d = counts.deliveries
    if d is None:
        return
    yield from family("diplowatch_delivery_attempts_total", "counter", "Deliveries tried, by channel and result.",
                      [({"channel": c, "result": "ok" if ok else "error"}, n) for c, ok, n in d.attempts])
    yield from family("diplowatch_delivery_errors_total", "counter", "Deliveries that failed (retried later).",
                      [({}, d.errors)])
    yield from family("diplowatch_deliveries_total", "counter", "Statements delivered, by channel.",
                      [({"channel": c}, n) for c, n in d.delivered])
    yield from family("diplowatch_digests", "gauge", "Digests by state (pending ones wait for delivery).",
                      [({"state": s}, n) for s, n in d.digests])


def family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> Iterator[str]:
    yield f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"
    for labels, value in samples:
        yield f"{name}{_labels(labels)} {_number(value)}\n"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    escaped = (f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + ",".join(escaped) + "}"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
