"""The nouns passed between stages: plain frozen dataclasses, no behaviour beyond small helpers.

Source (config.py) -> Fetched (fetch.py) -> Parsed of Items (parse/) -> stored rows (store.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime | None) -> str | None:
    """UTC ISO 8601 with a Z, the one time format in the database and the output."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Validators:
    """What a conditional GET sends back: the ETag and Last-Modified of the last good answer."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Fetched:
    """One HTTP answer. `not_modified` answers carry no body and are not parsed."""

    url: str
    status: int
    content_type: str = ""
    body: bytes = b""
    validators: Validators = field(default_factory=Validators)

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(frozen=True)
class Item:
    """One statement as read from a source, normalised. `guid` is unique within its source."""

    source: str
    guid: str
    url: str
    title: str
    summary: str
    published: datetime | None
    lang: str | None
    content_hash: str


@dataclass(frozen=True)
class Parsed:
    """What a parser read: the items and, for recoverable damage, a warning to show the user."""

    items: tuple[Item, ...]
    warning: str | None = None


@dataclass(frozen=True)
class PollOutcome:
    """The result of one source's cycle, as shown by `poll` and recorded in the store."""

    source: str
    status: str  # ok | unchanged | failing | blocked
    new_items: int = 0
    changed_items: int = 0
    seen_items: int = 0
    error: str | None = None
    warning: str | None = None
    http_status: int | None = None
