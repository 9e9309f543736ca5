"""The `diplowatch` command. The only place that turns domain errors into messages and exit codes.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from monitor import __version__
from monitor.config import Config, load_config
from monitor.errors import ConfigError, DiplowatchError
from monitor.fetch import Fetcher
from monitor.models import PollOutcome, utcnow
from monitor.pipeline import Poller, poll_many
from monitor.redact import redact
from monitor.store import SearchQuery, Store
from monitor.web.settings import web_options, web_settings
from monitor.workers import Stages, default_workers, stages_for

if TYPE_CHECKING:
    from monitor.analyse import Analyser

log = logging.getLogger("monitor")


@dataclass
class Context:
    config_path: str
    db_path: str
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def store(self, readonly: bool = False) -> Store:
        """The database; a command that writes checks it first, so a damaged file is never written to."""
        return Store.open(self.db_path, readonly=readonly, verify=not readonly)


class DiplowatchGroup(click.Group):
    """Turns DiplowatchError into a one-paragraph message and an exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            click.echo(f"diplowatch: configuration error ({len(e.problems)} problem(s)):", err=True)
            for problem in e.problems:
                click.echo(f"  {redact(str(problem))}", err=True)
            ctx.exit(2)
        except DiplowatchError as e:
            click.echo(f"diplowatch: error: {redact(str(e))}", err=True)
            ctx.exit(1)
        except BrokenPipeError:  # `diplowatch search | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            ctx.exit(0)
        except OSError as e:
            click.echo(f"diplowatch: error: {e}", err=True)
            ctx.exit(1)


def _redact_record(record: logging.LogRecord) -> bool:
    """A log filter: credentials in URLs never reach the log, whichever library wrote the line."""
    message = record.getMessage()
    if redact(message) != message:
        record.msg, record.args = redact(message), ()
    return True


@click.group(cls=DiplowatchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="DIPLOWATCH_CONFIG", default="sources.yaml", show_default=True,
              help="The configuration file (env DIPLOWATCH_CONFIG).")
@click.option("--db", "db_path", envvar="DIPLOWATCH_DB", default="storage/diplowatch.db", show_default=True,
              help="The SQLite database (env DIPLOWATCH_DB).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(__version__, prog_name="diplowatch")
@click.pass_context
def cli(ctx: click.Context, config_path: str, db_path: str, verbose: int) -> None:
    """diplowatch: watch states' cyber and information-security diplomacy."""
    level = os.environ.get("DIPLOWATCH_LOG_LEVEL") or ("DEBUG" if verbose > 1 else "INFO" if verbose else "WARNING")
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_redact_record)
    for noisy in ("httpx", "httpcore"):  # they log every URL and header, credentials included
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx.obj = Context(config_path, db_path)


@cli.command()
@click.pass_obj
def check(obj: Context) -> None:
    """Validate the configuration and list the sources (exit 2 when it is wrong)."""
    config = obj.config
    analyser = build_analyser(config)
    for source in config.sources:
        state = "" if source.enabled else "  (disabled)"
        every = _every(source.interval)
        click.echo(f"{source.id:32} {source.kind or 'auto':5} {every:>6}  {redact(source.url)}{state}")
    click.echo(f"{config.path}: ok, {len(config.sources)} sources ({len(config.enabled_sources)} enabled), "
               f"{analyser.rule_count} rules")


@cli.command()
@click.option("--source", "source_ids", multiple=True, help="Poll only this source id (repeatable).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Processes that parse and match feeds [default: one per CPU core; 0 or 1: none].")
@click.pass_obj
def poll(obj: Context, source_ids: tuple[str, ...], workers: int | None) -> None:
    """Poll every enabled source once, now, then exit."""
    config = obj.config
    sources = _select_sources(config, source_ids)
    if not log.isEnabledFor(logging.INFO):
        logging.getLogger("monitor.pipeline").setLevel(logging.ERROR)  # the summary below says it once
    analyser = build_analyser(config)
    with obj.store() as store:
        stages = stages_for(analyser, min(default_workers() if workers is None else workers, len(sources)))
        try:
            outcomes = _with_progress(len(sources),
                                      lambda tick: asyncio.run(_poll(config, store, analyser, stages, sources, tick)))
        finally:
            stages.close()
    _print_poll_summary(outcomes)


async def _poll(config: Config, store: Store, analyser: Analyser, stages: Stages, sources: list,
                tick: Callable) -> list[PollOutcome]:
    async with Fetcher(config.settings) as fetcher:
        return await poll_many(Poller(config, store, analyser, fetcher, stages), sources, on_done=tick)


def _with_progress(total: int, work: Callable[[Callable[[PollOutcome], None]], list[PollOutcome]]) -> list[PollOutcome]:
    if not sys.stderr.isatty():
        return work(lambda _: None)
    with click.progressbar(length=total, label="polling", file=sys.stderr, show_pos=True) as bar:
        return work(lambda _: bar.update(1))


def _print_poll_summary(outcomes: list[PollOutcome]) -> None:
    for o in sorted(outcomes, key=lambda o: o.source):
        if o.error:
            click.echo(f"{o.source}: {o.status}: {redact(o.error)}", err=True)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("ok", "unchanged", "failing", "blocked")}
    new = sum(o.new_items for o in outcomes)
    changed = sum(o.changed_items for o in outcomes)
    click.echo(f"polled {len(outcomes)} sources: {counts['ok']} ok, {counts['unchanged']} unchanged, "
               f"{counts['failing']} failing, {counts['blocked']} blocked; {new} new items, {changed} changed")


@cli.command()
@click.option("--serve", "with_web", is_flag=True, help="Also serve the web page and API (see `serve`).")
@web_options
@click.pass_obj
def run(obj: Context, with_web: bool, host: str, port: int) -> None:
    """Poll each source on its own schedule and send digests until SIGTERM or Ctrl-C (the container's main process)."""
    from monitor.digest_jobs import add_digest_jobs
    from monitor.schedule import Service, stop_on_signals
    from monitor.store import run_lock

    stop = stop_on_signals()
    config = obj.config
    analyser = build_analyser(config)
    with run_lock(obj.db_path), obj.store() as store:
        service = Service(config, store, analyser)
        service.extra_jobs.append(lambda scheduler: add_digest_jobs(scheduler, config, obj.db_path))
        with _web_server(obj, config, host, port, with_web):
            service.serve_forever(stop)


@contextmanager
def _web_server(obj: Context, config: Config, host: str, port: int, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    from monitor.web.server import WebServer

    server = WebServer(web_settings(obj.db_path, config, host, port, under_run=True))
    server.start()
    log.warning("serving the web page and API on %s", server.url)
    try:
        yield
    finally:
        server.stop()


def search_filters(command: Callable) -> Callable:
    """The filters shared by `search` and `export`."""
    options = [
        click.argument("query", nargs=-1),
        click.option("--source", "sources", multiple=True, help="Only items of this source id (repeatable)."),
        click.option("--rule", "rules", multiple=True, help="Only items this rule matched (repeatable)."),
        click.option("--topic", "topics", multiple=True, help="Only items matched under this topic (repeatable)."),
        click.option("--country", "countries", multiple=True, help="Only items naming this ISO 3166 country (RU...)."),
        click.option("--org", "orgs", multiple=True, help="Only items naming this organisation (OEWG, BRICS...)."),
        click.option("--type", "doc_types", multiple=True,
                     help="Only this document type: statement, joint-statement, resolution, press-briefing, "
                          "interview, speech, agreement, news-report."),
        click.option("--lang", "langs", multiple=True, help="Only items in this language (ISO 639-1)."),
        click.option("--matched", is_flag=True, help="Only items that matched a rule."),
        click.option("--since", help="Only items published on or after this date (YYYY-MM-DD or ISO 8601)."),
        click.option("--until", help="Only items published before this date."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _query(query: tuple[str, ...], since: str | None, until: str | None, limit: int | None = None,
           **filters: Any) -> SearchQuery:
    return SearchQuery(text=" ".join(query) or None, since=_date_option(since, "--since"),
                       until=_date_option(until, "--until"), limit=limit, **filters)


@cli.command()
@search_filters
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default=None,
              help="Output format [default: table on a terminal, else jsonl].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N items.")
@click.pass_obj
def search(obj: Context, fmt: str | None, **filters: Any) -> None:
    """Search stored items: words, "phrases", AND/OR/NOT, prefix*; newest first."""
    query = _query(**filters)  # bad usage is reported before any database is opened
    with obj.store(readonly=True) as store:
        _emit(store.search(query), fmt or ("table" if sys.stdout.isatty() else "jsonl"), _ITEM_TABLE)


@cli.command()
@search_filters
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.pass_obj
def export(obj: Context, fmt: str, **filters: Any) -> None:
    """Stream every stored item matching the filters (any size; nothing held in memory)."""
    query = _query(**filters)
    with obj.store(readonly=True) as store:
        _emit(store.search(query), fmt, _ITEM_TABLE)


@cli.group()
def rules() -> None:
    """Watch rules: try them on a text."""


@rules.command("test")
@click.argument("text", required=False)
@click.option("--file", "file", type=click.File("r", encoding="utf-8"), help="Read the text from a file (- for stdin).")
@click.option("--url", help="Fetch this page or feed and test each item.")
@click.option("--title", default="", help="A title to test with the text.")
@click.option("--lang", help="The text's language (ISO 639-1), for rules limited to languages.")
@click.option("--source", "source_id", default="", help="Pretend the text came from this source (for scoped rules).")
@click.pass_obj
def rules_test(obj: Context, text: str | None, file: Any, url: str | None, title: str, lang: str | None,
               source_id: str) -> None:
    """Print which rules fire on a text, and why (the terms and where they stand)."""
    from monitor.explain import explain_lines, fetch_documents

    config = obj.config
    analyser = build_analyser(config)
    source = config.source(source_id)
    tags = source.tag_pairs() if source else ()
    if url:
        documents = asyncio.run(fetch_documents(config, url))
    elif file is not None or text is not None:
        documents = [(title, file.read() if file is not None else text or "", lang)]
    else:
        raise click.UsageError("give a TEXT, --file or --url")
    fired = 0
    for doc_title, doc_text, doc_lang in documents:
        analysis = analyser.analyse_text(doc_title, doc_text, doc_lang, source_id, tags)
        fired += bool(analysis.matches)
        for line in explain_lines(doc_title, doc_text, analysis, color=sys.stdout.isatty()):
            click.echo(line)
    click.echo(f"{fired} of {len(documents)} text(s) matched; {analyser.rule_count} rules loaded")


@cli.command()
@click.option("--since", help="Only items published on or after this date.")
@click.pass_obj
def rematch(obj: Context, since: str | None) -> None:
    """Run the current rules over stored history (after a rule changes)."""
    config = obj.config
    analyser = build_analyser(config)
    tags = {s.id: s.tag_pairs() for s in config.sources}
    done = matched = 0
    with obj.store() as store:
        for batch in store.item_batches(_date_option(since, "--since")):
            analyses = [(row["id"], analyser.analyse_text(row["title"], row["summary"], row["lang"], row["source"],
                                                          tags.get(row["source"], ()))) for row in batch]
            store.save_analyses(analyses, utcnow())
            done += len(analyses)
            matched += sum(bool(a.matches) for _, a in analyses)
    click.echo(f"re-matched {done} items: {matched} match a rule")


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default=None,
              help="Output format [default: table on a terminal, else jsonl].")
@click.pass_obj
def sources(obj: Context, fmt: str | None) -> None:
    """Each source's health: ok / failing / blocked / never polled."""
    config = obj.config
    health = {}
    if Path(obj.db_path).is_file():  # never polled: nothing to read, and nothing to create
        with obj.store(readonly=True) as store:
            health = store.sources_health()
    rows = [_source_row(s.id, s.label, s.url, s.enabled, health.get(s.id)) for s in config.sources]
    _emit(rows, fmt or ("table" if sys.stdout.isatty() else "jsonl"), _SOURCE_TABLE)


def _source_row(source_id: str, name: str, url: str, enabled: bool, row: dict | None) -> dict[str, Any]:
    row = row or {}
    return {
        "id": source_id,
        "name": name,
        "url": redact(url),
        "enabled": enabled,
        "status": row.get("status", "never polled") if enabled else "disabled",
        "last_attempt": row.get("last_attempt"),
        "last_success": row.get("last_success"),
        "last_status": row.get("last_status"),
        "consecutive_failures": row.get("consecutive_failures", 0),
        "last_error": row.get("last_error"),
        "last_warning": row.get("last_warning"),
        "next_due": row.get("next_due"),
        "items": row.get("items", 0),
    }


_ITEM_TABLE = (("published", 20), ("source", 22), ("lang", 4), ("title", 70), ("rules", 30))
_SOURCE_TABLE = (("id", 30), ("status", 12), ("items", 6), ("consecutive_failures", 3), ("last_success", 20),
                 ("last_error", 60))


# line breaks to str.splitlines() that json.dumps leaves raw: escaped, so one item stays one line
_JSON_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})
# bidi embeddings, overrides and isolates: in a terminal table they could reverse the columns after them
_BIDI_CONTROLS = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs such a cell as a formula


def _emit(rows: Iterable[dict[str, Any]], fmt: str, table: tuple[tuple[str, int], ...]) -> None:
    out = click.get_text_stream("stdout")
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False).translate(_JSON_LINE_BREAKS) + "\n")
    elif fmt == "csv":
        _write_csv(out, rows)
    else:
        for line in _table_lines(rows, table):
            out.write(line + "\n")


def _write_csv(out: Any, rows: Iterable[dict[str, Any]]) -> None:
    writer = None
    for row in rows:
        flat = {k: _csv_cell("; ".join(v) if isinstance(v, list) else v) for k, v in row.items()}
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=list(flat))
            writer.writeheader()
        writer.writerow(flat)


def _csv_cell(value: Any) -> Any:
    """Feed text that starts like a formula (=HYPERLINK(...)) is quoted with ' so it stays text."""
    return f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def _table_lines(rows: Iterable[dict[str, Any]], table: tuple[tuple[str, int], ...]) -> Iterator[str]:
    yield "  ".join(name.ljust(width)[:width] for name, width in table)
    for row in rows:
        cells = []
        for name, width in table:
            value = row.get(name)
            text = ", ".join(value) if isinstance(value, list) else "" if value is None else str(value)
            text = " ".join(text.translate(_BIDI_CONTROLS).split())
            cells.append((text[: width - 1] + "…" if len(text) > width else text).ljust(width))
        yield "  ".join(cells).rstrip()


def _select_sources(config: Config, ids: tuple[str, ...]) -> list:
    if not ids:
        return list(config.enabled_sources)
    known = {s.id: s for s in config.sources}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise click.BadParameter(f"no source with id {', '.join(unknown)} in {config.path}", param_hint="--source")
    return [known[i] for i in ids]


def _date_option(value: str | None, name: str) -> str | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date: write YYYY-MM-DD or ISO 8601", param_hint=name) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _every(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def build_analyser(config: Config) -> Analyser:
    """The rule engine, imported only by the commands that match (it is slow to import)."""
    from monitor.analyse import build_analyser as build

    return build(config)


def main() -> None:
    cli(prog_name="diplowatch")


__all__ = ["Path", "cli", "main"]


# -- commands defined in other modules register themselves on `cli` here (one import line each) --
from monitor import cli_digest  # noqa: E402,F401,I001
from monitor import cli_web  # noqa: E402,F401
