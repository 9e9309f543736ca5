"""The scheduler's heartbeat: `run` touches `<db>.heartbeat` every tick; `health` and /healthz read it.

A plain file beside the database holding one UTC timestamp, replaced atomically so a reader never
sees half of it. A missing file means "no `run` on this database", not "dead": only a caller that
knows a scheduler should be there (`run --serve`) treats a missing heartbeat as a failure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path

from monitor.models import from_iso, iso, utcnow

MAX_AGE = 120.0  # seconds: well above the default 5 s tick, below anything an operator would call "up"


@dataclass(frozen=True)
class Pulse:
    """What the heartbeat file says, judged at one moment."""

    beat: datetime | None  # None: no heartbeat file (no `run` on this database)
    age: float | None
    max_age: float

    @property
    def fresh(self) -> bool:
        return self.age is not None and self.age <= self.max_age

    def describe(self) -> str:
        if self.beat is None or self.age is None:
            return "no scheduler heartbeat (no `diplowatch run` on this database)"
        stale = f"stale (more than {self.max_age:g}s old: is `run` stuck or stopped?)"
        state = "alive" if self.fresh else stale
        return f"scheduler {state}: last heartbeat {iso(self.beat)}, {self.age:.0f}s ago"


def heartbeat_path(db_path: str | Path) -> Path:
    return Path(f"{db_path}.heartbeat")


def write_heartbeat(db_path: str | Path, now: datetime | None = None) -> None:
    """Record that the scheduler is alive now (called from `run`'s tick)."""
    path = heartbeat_path(db_path)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(f"{iso(now or utcnow())}\n", encoding="ascii")
    os.replace(temporary, path)


def read_heartbeat(db_path: str | Path) -> datetime | None:
    """The last heartbeat's time, or None when there is none (or it cannot be read)."""
    try:
        return from_iso(heartbeat_path(db_path).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def pulse(db_path: str | Path, max_age: float = MAX_AGE, now: datetime | None = None) -> Pulse:
    beat = read_heartbeat(db_path)
    if beat is None:
        return Pulse(None, None, max_age)
    return Pulse(beat, max(0.0, ((now or utcnow()) - beat).total_seconds()), max_age)


class Scheduler(Enum):
    """How much a health check cares about the heartbeat."""

    REQUIRED = "required"  # under `run --serve`: the scheduler must be alive
    IF_PRESENT = "if-present"  # `diplowatch health`: a heartbeat, when there is one, must be fresh
    IGNORED = "ignored"  # plain `serve`: reported, never a failure


@dataclass(frozen=True)
class Health:
    database_problem: str | None  # None: the database opened and answered
    pulse: Pulse
    scheduler: Scheduler

    @property
    def scheduler_ok(self) -> bool:
        if self.scheduler is Scheduler.REQUIRED:
            return self.pulse.fresh
        if self.scheduler is Scheduler.IF_PRESENT:
            return self.pulse.beat is None or self.pulse.fresh
        return True

    @property
    def ok(self) -> bool:
        return self.database_problem is None and self.scheduler_ok

    def lines(self) -> list[str]:
        return [f"database: {self.database_problem or 'ok'}", self.pulse.describe()]
