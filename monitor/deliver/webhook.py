"""The webhook channel: POST one digest or notice as JSON (schema in docs/webhook.md), or as a
Slack or Microsoft Teams incoming-webhook body.

Every request carries `X-Diplowatch-Delivery: <digest id>` (stable across re-sends: the receiver's
idempotency key) and, when `secret_env` is set, `X-Diplowatch-Signature: sha256=<hex HMAC-SHA256 of
the exact body bytes>`. Any answer but 2xx is a failure (redirects are not followed). The URL's
path is never shown in errors: for Slack and Teams it is the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import httpx

from monitor import __version__
from monitor.alerts import AlertNotice
from monitor.config_delivery import WebhookChannel
from monitor.digest import Digest, Entry, MatchedRule
from monitor.errors import DeliveryError
from monitor.models import iso

SCHEMA_VERSION = 1
MAX_CHAT_TEXT = 30_000  # Slack allows 40k characters of text, Teams cards about 28 KB
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def send(channel: WebhookChannel, message: Digest | AlertNotice, environ: Mapping[str, str] = os.environ) -> None:
    content = body(channel.format, message)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": f"diplowatch/{__version__}",
        "X-Diplowatch-Delivery": message.id,
        "X-Diplowatch-Event": "digest" if isinstance(message, Digest) else "alert",
    }
    if channel.secret_env:
        secret = environ.get(channel.secret_env)
        if not secret:
            raise DeliveryError(f"the environment variable {channel.secret_env} (webhook.secret_env) is not set: "
                                "refusing to send unsigned")
        headers["X-Diplowatch-Signature"] = sign(secret.encode(), content)
    _post(channel, content, headers)


def _post(channel: WebhookChannel, content: bytes, headers: dict[str, str]) -> None:
    try:
        with httpx.Client(timeout=channel.timeout, follow_redirects=False) as client:
            response = client.post(channel.url, content=content, headers=headers)
    except httpx.HTTPError as e:
        detail = str(e).replace(channel.url, f"{channel.host}/…")
        raise DeliveryError(f"webhook {channel.host}: {type(e).__name__}: {detail}") from None
    if not response.is_success:
        raise DeliveryError(f"webhook {channel.host}: HTTP {response.status_code} {response.reason_phrase}")


def sign(secret: bytes, content: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the body bytes."""
    return "sha256=" + hmac.new(secret, content, hashlib.sha256).hexdigest()


def body(fmt: str, message: Digest | AlertNotice) -> bytes:
    if fmt == "slack":
        data = slack_body(message)
    elif fmt == "teams":
        data = teams_body(message)
    else:
        data = digest_payload(message) if isinstance(message, Digest) else alert_payload(message)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


# -- the JSON schema (docs/webhook.md) ---------------------------------------------------------


def digest_payload(digest: Digest) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "type": "digest",
        "id": digest.id,
        "subscription": digest.subscription,
        "created_at": iso(digest.created_at),
        "window": {"start": iso(digest.window_start), "end": iso(digest.window_end)},
        "subject": digest.subject,
        "item_count": len(digest.entries),
        "pending_after": digest.pending_after,
        "topics": [{"topic": g.topic, "count": len(g.entries)} for g in digest.groups],
        "items": [_item(e) for e in digest.entries],
    }


def _item(e: Entry) -> dict[str, Any]:
    return {
        "id": e.item_id,
        "item_ids": list(e.item_ids),
        "title": e.title,
        "url": e.url,
        "source": e.source,
        "source_name": e.source_name,
        "published": e.published,
        "lang": e.lang,
        "countries": list(e.countries),
        "orgs": list(e.orgs),
        "doc_type": e.doc_type,
        "topic": e.topic,
        "matches": [_match(m) for m in e.matches],
        "also_reported_by": [{"source": r.source, "name": r.name, "url": r.url} for r in e.also_reported],
    }


def _match(m: MatchedRule) -> dict[str, Any]:
    highlights, pos = [], 0
    for segment in m.snippet:
        if segment.marked:
            highlights.append([pos, pos + len(segment.text)])
        pos += len(segment.text)
    return {"rule": m.rule, "topic": m.topic, "terms": list(m.terms), "snippet": m.snippet_text,
            "highlights": highlights}


def alert_payload(alert: AlertNotice) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "type": "alert",
        "id": alert.id,
        "subscription": alert.subscription,
        "created_at": iso(alert.created_at),
        "subject": alert.subject,
        "sources": [{"source": c.source, "name": c.name, "state": c.state, "error": c.error,
                     "consecutive_failures": c.consecutive_failures, "last_success": c.last_success}
                    for c in alert.changes],
    }


# -- chat bodies -------------------------------------------------------------------------------


def slack_body(message: Digest | AlertNotice) -> dict[str, Any]:
    """Slack mrkdwn: `&`, `<` and `>` escaped, so no feed text becomes a link or a mention."""
    lines = [f"*{_slack(message.subject)}*"]
    if isinstance(message, Digest):
        for group in message.groups:
            lines.append(f"\n*{_slack(group.topic)}* ({len(group.entries)})")
            for e in group.entries:
                title = f"<{e.url.replace('|', '%7C')}|{_slack(e.title)}>" if e.url else _slack(e.title)
                lines.append(f"• {title} ({_slack(_meta(e))})")
    else:
        lines += [f"• {_slack(c.name)}: {c.state}" + (f" ({_slack(c.error)})" if c.error else "")
                  for c in message.changes]
    return {"text": _cap("\n".join(lines))}


def teams_body(message: Digest | AlertNotice) -> dict[str, Any]:
    """An Adaptive Card for a Teams workflow webhook; feed text has its Markdown escaped."""
    blocks = [_block(_md(message.subject), weight="Bolder", size="Medium")]
    if isinstance(message, Digest):
        for group in message.groups:
            blocks.append(_block(f"{_md(group.topic)} ({len(group.entries)})", weight="Bolder"))
            for e in group.entries:
                title = f"[{_md(e.title)}]({e.url.replace(')', '%29')})" if e.url else _md(e.title)
                blocks.append(_block(f"{title} — {_md(_meta(e))}"))
    else:
        blocks += [_block(f"{_md(c.name)}: {c.state}" + (f" ({_md(c.error)})" if c.error else ""))
                   for c in message.changes]
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4", "body": _capped_blocks(blocks)}
    return {"type": "message",
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}


def _meta(e: Entry) -> str:
    parts = [e.source_name, (e.published or "")[:10], e.lang or "", ", ".join(m.rule for m in e.matches)]
    if e.also_reported:
        parts.append(f"also reported by {len(e.also_reported)}")
    return "; ".join(p for p in parts if p)


def _block(text: str, **style: str) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _md(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)


def _cap(text: str) -> str:
    return text if len(text) <= MAX_CHAT_TEXT else text[:MAX_CHAT_TEXT] + "\n… (cut: see the email or JSON digest)"


def _capped_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out, total = [], 0
    for block in blocks:
        total += len(block["text"])
        if total > MAX_CHAT_TEXT:
            out.append(_block("… (cut: see the email or JSON digest)"))
            break
        out.append(block)
    return out
