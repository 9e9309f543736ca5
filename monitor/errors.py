"""Every error diplowatch raises on purpose, as one tree.

    DiplowatchError                 anything the user should read as a message, not a traceback
    ├── ConfigError                 sources.yaml or the environment is wrong (exit 2)
    ├── StoreError                  the SQLite file cannot be used
    │   ├── NotOurDatabase          the file is some other program's database: never touched
    │   ├── CorruptDatabase         the file is damaged: never overwritten
    │   ├── AlreadyRunning          another `diplowatch run` holds the database
    │   └── QueryError              a search query SQLite's full-text syntax rejects
    ├── SourceError                 one source failed this poll; recorded, never fatal
    │   ├── FetchError              network, timeout, HTTP status, redirects, size cap
    │   │   ├── Forbidden           HTTP 401/403
    │   │   ├── Blocked             a bot check or JavaScript challenge instead of content
    │   │   └── RateLimited         HTTP 429/503 with Retry-After: poll again no earlier than asked
    │   └── ParseError              the body is not a feed or listing we can read
    └── DeliveryError               an email or webhook was refused; the items stay pending

Library code raises these with a hint; only `cli.py` turns them into exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass


class DiplowatchError(Exception):
    """Base class: `str(error)` is a complete message for the user."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a configuration file, located by file, line and key path."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(DiplowatchError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StoreError(DiplowatchError):
    pass


class NotOurDatabase(StoreError):
    pass


class CorruptDatabase(StoreError):
    pass


class AlreadyRunning(StoreError):
    pass


class QueryError(StoreError):
    pass


class SourceError(DiplowatchError):
    """A failure of one source in one poll. `status` is the word shown in `diplowatch sources`."""

    status = "failing"


class FetchError(SourceError):
    def __init__(self, message: str, http_status: int | None = None):
        self.http_status = http_status
        super().__init__(message)


class Forbidden(FetchError):
    status = "blocked"


class Blocked(FetchError):
    status = "blocked"


class RateLimited(FetchError):
    def __init__(self, message: str, http_status: int, retry_after: float | None):
        self.retry_after = retry_after
        super().__init__(message, http_status)


class ParseError(SourceError):
    pass


class DeliveryError(DiplowatchError):
    pass
