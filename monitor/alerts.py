"""Broken sources are news too: when a source's failures become one alert, and one recovery notice.

A source raises an alert when it is blocked (a bot check, HTTP 401/403) or has failed
`settings.failure_alert_after` polls in a row (sources.consecutive_failures, kept by the store);
it raises no other until it has recovered (one successful or unchanged poll), which sends one
notice. Pure decisions and rendering; the outbox records the state and queues the notices.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from monitor.digest import one_line, templates
from monitor.models import from_iso
from monitor.redact import redact
from monitor.store.outbox import DigestRecord, SourceHealth


@dataclass(frozen=True)
class SourceChange:
    """A source that broke (`failing`, `blocked`) or `recovered`."""

    source: str
    name: str
    state: str
    error: str | None
    consecutive_failures: int
    last_success: str | None


@dataclass(frozen=True)
class AlertNotice:
    """One message about one or more sources' changes; `id` is stable across re-sends."""

    id: str
    subscription: str
    created_at: datetime
    changes: tuple[SourceChange, ...]
    timezone: str = "UTC"

    @property
    def broken(self) -> tuple[SourceChange, ...]:
        return tuple(c for c in self.changes if c.state != "recovered")

    @property
    def recovered(self) -> tuple[SourceChange, ...]:
        return tuple(c for c in self.changes if c.state == "recovered")

    @property
    def subject(self) -> str:
        parts = []
        if self.broken:
            parts.append(f"{_sources(len(self.broken))} broken: {', '.join(c.source for c in self.broken)}")
        if self.recovered:
            parts.append(f"{_sources(len(self.recovered))} recovered: {', '.join(c.source for c in self.recovered)}")
        return one_line("[diplowatch] " + "; ".join(parts), 200)


def _sources(n: int) -> str:
    return f"{n} source{'s' * (n > 1)}"


def decide(health: Sequence[SourceHealth], threshold: int, names: Mapping[str, str]) -> list[dict[str, Any]]:
    """The changes worth telling, as JSON-ready dicts; only sources in `names` (the enabled ones)."""
    changes = []
    for h in health:
        if h.source not in names:
            continue
        broken = h.status == "blocked" or h.consecutive_failures >= threshold
        if broken and not h.alerted:
            state = "blocked" if h.status == "blocked" else "failing"
        elif h.alerted and h.consecutive_failures == 0:
            state = "recovered"
        else:
            continue
        error = one_line(redact(h.last_error), 500) if h.last_error and state != "recovered" else None
        change = SourceChange(h.source, names[h.source], state, error, h.consecutive_failures, h.last_success)
        changes.append(asdict(change))
    return changes


def notice(record: DigestRecord, timezone: str = "UTC") -> AlertNotice:
    created = from_iso(record.created_at)
    assert created is not None
    changes = tuple(SourceChange(**c) for c in json.loads(record.payload or "[]"))
    return AlertNotice(record.id, record.subscription, created, changes, timezone)


def render_text(alert: AlertNotice) -> str:
    return templates().get_template("alert.txt.j2").render(alert=alert, tz=alert.timezone)


def render_html(alert: AlertNotice) -> str:
    return templates().get_template("alert.html.j2").render(alert=alert, tz=alert.timezone)
