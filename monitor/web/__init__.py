"""The read-only web page, JSON API and Atom feeds over the diplowatch database (`diplowatch serve`).

settings.py WebSettings and the --host/--port options (light: imported by the CLI at start-up)
app.py      the connection pool, error pages, create_app()
guard.py    405 for anything but GET/HEAD, the API token, security headers
filters.py  the query string shared by pages, API and feeds -> SearchQuery
pages.py    search, item, timeline, sources (Jinja2 templates/, autoescaped)
api.py      /api/items, /api/items/{id}, /api/sources, /api/stats, /api/timeline
feeds.py    /feeds/topic/{topic}.atom, /feeds/search.atom
ops.py      /healthz, /metrics
results.py, highlight.py, diff.py, chart.py, sources.py: what the pages show, as plain data
server.py   uvicorn: foreground (`serve`) or a thread (`run --serve`)

It never writes to the database: every SQL statement it runs is in monitor/store/queries.py or
Store.search, on connections opened with PRAGMA query_only.
"""

from monitor.web.settings import WebSettings, web_options, web_settings

__all__ = ["WebSettings", "web_options", "web_settings"]
