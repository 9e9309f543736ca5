"""`diplowatch digest` (send what is pending now, or show it) and `diplowatch deliveries` (history)."""

from __future__ import annotations

import sys

import click

from monitor import alerts
from monitor.cli import Context, _emit, cli
from monitor.config import Config
from monitor.config_delivery import Subscription, require_delivery_settings
from monitor.deliver import Message, describe
from monitor.digest import Digest, render_text
from monitor.digest_cycle import DeliveryResult, preview, raise_alerts, run_subscription
from monitor.errors import DeliveryError
from monitor.models import utcnow
from monitor.redact import redact
from monitor.store import Store
from monitor.store.outbox import Outbox

_DELIVERY_TABLE = (("attempted_at", 20), ("subscription", 16), ("channel", 7), ("kind", 6), ("items", 5),
                   ("result", 9), ("next_attempt", 20), ("error", 50), ("digest", 35))


@cli.command()
@click.option("--subscription", "names", multiple=True, help="Only this subscription (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print what would be sent; send nothing and record nothing.")
@click.pass_obj
def digest(obj: Context, names: tuple[str, ...], dry_run: bool) -> None:
    """Send the digests pending now (and queued source alerts) by email and webhook.

    Exits 1 when a delivery failed: its items stay pending and are retried later.
    """
    config = obj.config
    require_delivery_settings(config)
    subs = _select(config, names)
    if dry_run:
        with obj.store() as store:
            _print_preview(store, config, subs)
        return
    now = utcnow()
    with obj.store() as store:
        results = raise_alerts(store, config, now, {s.name for s in subs})
        for sub in subs:
            results += run_subscription(store, config, sub, now)
    for result in results:
        click.echo(_describe(result))
    failed = [r for r in results if not r.ok]
    if failed:
        raise DeliveryError(f"{len(failed)} deliver{'ies' if len(failed) > 1 else 'y'} failed; the items stay "
                            "pending and are retried (see `diplowatch deliveries`)")


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default=None,
              help="Output format [default: table on a terminal, else jsonl].")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most N attempts.")
@click.pass_obj
def deliveries(obj: Context, fmt: str | None, limit: int) -> None:
    """Delivery history, newest first: each attempt's digest, items, result and error."""
    with obj.store() as store:
        rows = Outbox(store).history(limit)
    rows = [{**row, "error": redact(row["error"]) if row["error"] else None} for row in rows]
    _emit(rows, fmt or ("table" if sys.stdout.isatty() else "jsonl"), _DELIVERY_TABLE)


def _select(config: Config, names: tuple[str, ...]) -> list[Subscription]:
    if not config.subscriptions:
        raise click.UsageError(f"{config.path} has no `subscriptions:`; see docs/digests.md")
    if not names:
        return list(config.subscriptions)
    known = {s.name: s for s in config.subscriptions}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.BadParameter(f"no subscription named {', '.join(unknown)} in {config.path}",
                                 param_hint="--subscription")
    return [known[n] for n in names]


def _describe(r: DeliveryResult) -> str:
    where = f"{r.subscription}/{r.channel}"
    if r.skipped:
        return f"{where}: {r.skipped}"
    what = f"{r.kind} {r.digest_id}" + (f" ({r.items} items)" if r.kind == "digest" else "")
    if not r.ok:
        return f"{where}: FAILED {what}: {redact(r.error or '')}; retry after {r.next_attempt}"
    later = f"; {r.pending_after} more wait for the next digest" if r.pending_after else ""
    note = f" ({r.note})" if r.note else ""
    return f"{where}: sent {what}{later}{note}"


def _print_preview(store: Store, config: Config, subs: list[Subscription]) -> None:
    now = utcnow()
    for sub in subs:
        for channel in sub.channels:
            click.echo(f"== {sub.name} -> {describe(channel, sub, config.smtp)}")
            messages = preview(store, config, sub, channel, now)
            if not messages:
                click.echo(f"nothing to send (min_items {sub.min_items})\n")
            for message in messages:
                click.echo(_preview_text(message))


def _preview_text(message: Message) -> str:
    body = render_text(message) if isinstance(message, Digest) else alerts.render_text(message)
    return f"-- {message.id}\n{body}"
