"""Helpers for the digest and delivery tests: stored items, configs, a real SMTP server.

Matches are built with a local dataclass of the same shape as monitor.match.Match, and stored the
way a poll stores them (Store.save_poll), so the tests exercise the real schema.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from monitor.config import Config, load_config
from monitor.match import Hit, Match
from monitor.models import Item, PollOutcome, Validators
from monitor.normalise import content_hash
from monitor.store import Analysis, PollRecord, Store

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
DATA = Path(__file__).resolve().parent / "data" / "digest"




@dataclass(frozen=True)
class Statement:
    """One item to store, with the match it produced."""

    guid: str
    title: str
    source: str = "mfa-example"
    url: str | None = None
    rule: str = "oewg"
    topic: str = "un-processes"
    term: str = "OEWG"
    snippet: str = "Statement at the OEWG on ICT security."
    published: datetime | None = None
    lang: str = "en"
    countries: tuple[str, ...] = ()

    def item(self) -> Item:
        url = self.url if self.url is not None else f"https://{self.source}.example.org/{self.guid}"
        return Item(self.source, self.guid, url, self.title, self.snippet, self.published, self.lang,
                    content_hash(self.title, self.snippet))

    def match(self) -> Match:
        start = max(self.snippet.find(self.term), 0)
        end = start + len(self.term)
        return Match(self.rule, self.topic, (Hit(self.term, "text", start, end),), self.snippet, ((start, end),))


def store_statements(store: Store, statements: Sequence[Statement], now: datetime = NOW) -> None:
    """Store statements as polls do (one poll per source), matched at `now`."""
    for source in dict.fromkeys(s.source for s in statements):
        mine = [s for s in statements if s.source == source]
        analyses = {s.guid: Analysis(countries=s.countries, matches=(s.match(),)) for s in mine}
        record = PollRecord(PollOutcome(source, "ok", len(mine), http_status=200), f"https://{source}.example.org/feed",
                            now, now + timedelta(minutes=30), Validators(), [s.item() for s in mine], analyses)
        store.save_poll(record)


def fail_polls(store: Store, source: str, times: int, now: datetime = NOW, status: str = "failing") -> None:
    for _ in range(times):
        outcome = PollOutcome(source, status, error="HTTP 503 from https://user:pw@feeds.example.org/x",
                              http_status=503)
        store.save_poll(PollRecord(outcome, f"https://{source}.example.org/feed", now, now))


def ok_poll(store: Store, source: str, now: datetime = NOW) -> None:
    store.save_poll(PollRecord(PollOutcome(source, "ok", http_status=200), f"https://{source}.example.org/feed",
                               now, now))


def write_config(path: Path, body: str, sources: Sequence[str] = ("mfa-example", "news-example")) -> Config:
    """A sources.yaml with `sources` and the YAML `body` (smtp, subscriptions), loaded for real."""
    lines = ["sources:"]
    for source in sources:
        lines += [f"  - id: {source}", f"    url: https://{source}.example.org/feed", f"    name: {source.title()}",
                  "    tags: {kind: " + ("ministry" if source.startswith("mfa") else "news") + "}"]
    path.write_text("\n".join(lines) + "\n" + body, encoding="utf-8")
    return load_config(path)


# -- a real SMTP server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mailbox:
    """An aiosmtpd handler: answers DATA with the queued `replies` first (then 250), keeps what it accepted."""

    replies: list[str] = field(default_factory=list)
    refuse_rcpt: set[str] = field(default_factory=set)
    accepted: list[EmailMessage] = field(default_factory=list)
    attempts: int = 0
    hold: threading.Event | None = None  # when given, the reply to DATA waits for it (a send in flight)
    holding: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list) -> str:
        if address in self.refuse_rcpt:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.replies:
            return self.replies.pop(0)
        self.accepted.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        if self.hold is not None:  # accepted, but the "250" is held back: the ambiguous moment
            self.holding.set()
            await asyncio.get_running_loop().run_in_executor(None, self.hold.wait, 30)
        return "250 2.0.0 OK"


@contextmanager
def smtp_server(mailbox: Mailbox, port: int | None = None, **kwargs: Any) -> Iterator[int]:
    """A real SMTP server on 127.0.0.1 for the duration of the block; yields its port."""
    port = port or free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made with the openssl command (skips the test without it)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        pytest.skip(f"openssl cannot make a test certificate: {e}")
    return cert, key


def body_text(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    return part.get_content()
