"""The SQLite store: every SQL statement of diplowatch lives in this package.

core.py        opening safely, migrations, sources, items, matches, search
migrations.py  versioned schema steps
outbox.py      digests' pending items and delivery history
queries.py     read-only views for the web page and API (stats, timeline, item detail)
"""

from monitor.store.core import (
    Analysis,
    PollRecord,
    SearchQuery,
    SourceState,
    Store,
    fts_query,
    fts_text,
    replace_matches,
    run_lock,
)

__all__ = [
    "Analysis",
    "PollRecord",
    "SearchQuery",
    "SourceState",
    "Store",
    "fts_query",
    "fts_text",
    "replace_matches",
    "run_lock",
]
