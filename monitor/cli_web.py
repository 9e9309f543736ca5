"""`diplowatch serve` and `diplowatch health`, registered on the `diplowatch` command group.

`run --serve` uses the same pieces: `monitor.web.settings.web_options` / `web_settings` for
--host/--port/DIPLOWATCH_API_TOKEN and `monitor.web.server.WebServer(...).start()/.stop()`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click

from monitor.cli import Context, cli
from monitor.errors import StoreError
from monitor.heartbeat import MAX_AGE, Health, Scheduler, pulse
from monitor.store import Store
from monitor.store.queries import ping
from monitor.web.settings import web_options, web_settings


@cli.command()
@web_options
@click.pass_obj
def serve(obj: Context, host: str, port: int) -> None:
    """Serve the search page, timeline, sources, JSON API and Atom feeds (read-only; docs/web.md)."""
    from monitor.schedule import stop_on_signals
    from monitor.web.server import WebServer

    config = obj.config if Path(obj.config_path).exists() else None  # it only names the sources
    server = WebServer(web_settings(obj.db_path, config, host, port))
    click.echo(f"diplowatch: serving {obj.db_path} on {server.url} (Ctrl-C stops)", err=True)
    stop_on_signals()  # uvicorn re-raises the signal it stopped on; this makes that a clean exit
    server.run()


@cli.command()
@click.option("--max-age", type=click.FloatRange(min=1), default=MAX_AGE, show_default=True,
              help="Seconds after which the heartbeat of `run` counts as stale.")
@click.pass_context
def health(ctx: click.Context, max_age: float) -> None:
    """Exit 0 when the database opens and `run`'s heartbeat, if there is one, is fresh (for HEALTHCHECK)."""
    db_path = ctx.obj.db_path
    report = Health(database_problem(db_path), pulse(db_path, max_age), Scheduler.IF_PRESENT)
    for line in report.lines():
        click.echo(line)
    click.echo("healthy" if report.ok else "unhealthy")
    if not report.ok:
        ctx.exit(1)


def database_problem(db_path: str | Path) -> str | None:
    """Why the database cannot be used, or None. Never creates a missing file."""
    if not Path(db_path).is_file():
        return f"no database at {db_path} (`diplowatch run` or `poll` creates it)"
    try:
        with Store.open(db_path, readonly=True) as store:
            version = ping(store)
    except StoreError as e:
        return str(e)
    except (sqlite3.Error, OSError) as e:
        return f"{db_path}: {e}"
    return None if version > 0 else f"{db_path} has no diplowatch tables yet"
