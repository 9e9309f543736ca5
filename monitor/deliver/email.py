"""The email channel: one multipart message (plain text + HTML) per digest or notice, over SMTP.

`security` is `none`, `starttls` (never falls back to clear text when the server does not offer
it) or `tls` (implicit TLS). The password is read from the environment variable named in the
configuration at the moment of sending; it is never logged, stored or put in an error message.
The Message-ID carries the digest's stable id, so a re-sent digest is recognisably the same one.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import format_datetime

from monitor import alerts, digest
from monitor.alerts import AlertNotice
from monitor.config_delivery import EmailChannel, SmtpSettings
from monitor.digest import Digest
from monitor.errors import DeliveryError


def send(smtp: SmtpSettings, channel: EmailChannel, message: Digest | AlertNotice,
         environ: Mapping[str, str] = os.environ, context: ssl.SSLContext | None = None) -> str | None:
    """Send `message`; return a note when some (not all) recipients were refused."""
    email = build_message(smtp, channel, message)
    password = _password(smtp, environ)
    where = f"SMTP {smtp.host}:{smtp.effective_port}"
    try:
        with _connect(smtp, context or ssl.create_default_context()) as client:
            if smtp.username:
                client.login(smtp.username, password)
            refused = client.send_message(email)
    except smtplib.SMTPRecipientsRefused as e:
        raise DeliveryError(f"{where}: every recipient was refused ({_refusals(e.recipients)})") from None
    except smtplib.SMTPResponseException as e:
        raise DeliveryError(f"{where}: {e.smtp_code} {_text(e.smtp_error)}") from None
    except smtplib.SMTPNotSupportedError as e:
        raise DeliveryError(f"{where}: {e} (security: {smtp.security})") from None
    except (smtplib.SMTPException, OSError) as e:
        raise DeliveryError(f"{where}: {type(e).__name__}: {e}") from None
    return f"refused by the server: {_refusals(refused)}" if refused else None


def build_message(smtp: SmtpSettings, channel: EmailChannel, message: Digest | AlertNotice) -> EmailMessage:
    text, html = render(message)
    email = EmailMessage()
    email["Subject"] = message.subject
    email["From"] = smtp.sender
    email["To"] = ", ".join(channel.to)
    email["Date"] = format_datetime(message.created_at)
    email["Message-ID"] = message_id(message.id, smtp.sender)
    email["X-Diplowatch-Delivery"] = message.id
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    email.set_content(text)
    email.add_alternative(html, subtype="html")
    return email


def render(message: Digest | AlertNotice) -> tuple[str, str]:
    if isinstance(message, Digest):
        return digest.render_text(message), digest.render_html(message)
    return alerts.render_text(message), alerts.render_html(message)


def message_id(digest_id: str, sender: str) -> str:
    return f"<{digest_id}@{sender.rpartition('@')[2]}>"


def _connect(smtp: SmtpSettings, context: ssl.SSLContext) -> smtplib.SMTP:
    port = smtp.effective_port
    if smtp.security == "tls":
        return smtplib.SMTP_SSL(smtp.host, port, timeout=smtp.timeout, context=context)
    client = smtplib.SMTP(smtp.host, port, timeout=smtp.timeout)
    if smtp.security == "starttls":
        try:
            client.starttls(context=context)
        except BaseException:
            client.close()
            raise
    return client


def _password(smtp: SmtpSettings, environ: Mapping[str, str]) -> str:
    if not smtp.password_env:
        return ""
    password = environ.get(smtp.password_env)
    if not password:
        raise DeliveryError(f"the environment variable {smtp.password_env} (smtp.password_env) is not set")
    return password


def _refusals(recipients: Mapping[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{address}: {code} {_text(reason)}" for address, (code, reason) in recipients.items())


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())[:300]
