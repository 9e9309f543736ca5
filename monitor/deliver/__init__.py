"""Delivery: send one Digest or AlertNotice on one channel, chosen by the channel's name.

    email     deliver/email.py    smtplib, multipart text + HTML
    webhook   deliver/webhook.py  httpx, JSON (versioned schema), Slack or Teams bodies, HMAC-signed

Every channel raises DeliveryError on any failure and touches neither the store nor the logs'
secrets; the outbox (store/outbox.py) decides what is pending and records the outcome.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from monitor.alerts import AlertNotice
from monitor.config_delivery import SmtpSettings, Subscription
from monitor.deliver import email, webhook
from monitor.digest import Digest
from monitor.errors import DeliveryError

Message = Digest | AlertNotice


def deliver(channel: str, subscription: Subscription, smtp: SmtpSettings | None, message: Message) -> str | None:
    """Send `message`; return a note for a partial success; raise DeliveryError on failure."""
    if channel == "email" and subscription.email is not None and smtp is not None:
        return email.send(smtp, subscription.email, message)
    if channel == "webhook" and subscription.webhook is not None:
        webhook.send(subscription.webhook, message)
        return None
    raise DeliveryError(f"subscription {subscription.name!r} has no usable {channel!r} channel")


def describe(channel: str, subscription: Subscription, smtp: SmtpSettings | None,
             environ: Mapping[str, str] = os.environ) -> str:
    """Where a channel sends, for people: no secret and no webhook path (it is often the secret)."""
    if channel == "email" and subscription.email is not None and smtp is not None:
        login = f", login {smtp.username} with ${smtp.password_env} ({_state(smtp.password_env, environ)})" \
            if smtp.username and smtp.password_env else ""
        return f"email to {', '.join(subscription.email.to)} via {smtp.host}:{smtp.effective_port} " \
               f"({smtp.security}{login})"
    if channel == "webhook" and subscription.webhook is not None:
        hook = subscription.webhook
        signed = f", signed with ${hook.secret_env} ({_state(hook.secret_env, environ)})" if hook.secret_env else ""
        return f"webhook {hook.format} to {hook.host}/…{signed}"
    return f"{channel}: not configured"


def _state(name: str, environ: Mapping[str, str]) -> str:
    return "set" if environ.get(name) else "NOT SET"
