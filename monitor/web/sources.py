"""Each source's health for the sources page and /api/sources: the store's rows, named by the config."""

from __future__ import annotations

from typing import Any

from monitor.config import Config
from monitor.redact import redact
from monitor.store import Store

_FIELDS = ("status", "last_attempt", "last_success", "last_status", "consecutive_failures", "last_error",
           "last_warning", "next_due", "polls", "failures", "items")


def source_rows(store: Store, config: Config | None) -> list[dict[str, Any]]:
    """Configured sources in config order, then any the database knows that the config no longer lists."""
    health = store.sources_health()
    rows = []
    for source in config.sources if config else ():
        row = _row(source.id, health.pop(source.id, {"url": source.url}), source.label, source.enabled)
        rows.append(row)
    rows.extend(_row(sid, stored, None, None) for sid, stored in sorted(health.items()))
    return rows


def _row(source_id: str, stored: dict[str, Any], name: str | None, enabled: bool | None) -> dict[str, Any]:
    row: dict[str, Any] = {"id": source_id, "name": name or source_id, "url": redact(stored.get("url") or ""),
                           "enabled": enabled}
    row.update({key: stored.get(key) for key in _FIELDS})
    row["status"] = "disabled" if enabled is False else row["status"] or "never polled"
    row["items"] = row["items"] or 0
    for key in ("last_error", "last_warning"):
        row[key] = redact(row[key]) if row[key] else row[key]
    return row
