"""Email delivery against a real SMTP server (aiosmtpd on 127.0.0.1): multipart digests that
arrive exactly once, survive a server that is down or refuses, and never carry feed markup."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from digest_fixtures import (
    NOW,
    Mailbox,
    Statement,
    body_text,
    fail_polls,
    free_port,
    self_signed_cert,
    smtp_server,
    store_statements,
    write_config,
)

from monitor.config import Config
from monitor.deliver import email
from monitor.digest import build_digest
from monitor.digest_cycle import outbox_tick, retry_due, run_subscription
from monitor.errors import DeliveryError
from monitor.store import Store

PASSWORD = "correct horse battery staple"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "dw.db") as s:
        yield s


def configure(tmp_path: Path, port: int, security: str = "none", login: str = "",
              to: str = "[desk@example.org]", alerts: bool = False) -> Config:
    smtp = f"host: 127.0.0.1, port: {port}, security: {security}, sender: diplowatch@example.org, timeout: 5s{login}"
    return write_config(tmp_path / "sources.yaml", f"""
smtp: {{{smtp}}}
subscriptions:
  - name: desk
    every: 1h
    backfill: 1d
    alerts: {str(alerts).lower()}
    email: {{to: {to}}}
""")


def run(store: Store, config: Config, minutes: float = 0) -> list:
    return run_subscription(store, config, config.subscriptions[0], NOW + timedelta(minutes=minutes))


def test_a_digest_arrives_once_as_multipart_text_and_html_with_its_id(tmp_path: Path, store: Store) -> None:
    mailbox = Mailbox()
    store_statements(store, [Statement("a", "Statement at the OEWG"), Statement("b", "Convention signed",
                                                                                topic="cybercrime-convention")])
    with smtp_server(mailbox) as port:
        config = configure(tmp_path, port)
        [first] = run(store, config)
        [second] = run(store, config, 60)
    assert first.ok and first.items == 2 and second.skipped == "nothing pending"
    [message] = mailbox.accepted
    assert message["Message-ID"] == f"<{first.digest_id}@example.org>"
    assert message["X-Diplowatch-Delivery"] == first.digest_id
    assert message["Subject"].strip() == "[diplowatch] desk: 2 items: cybercrime-convention (1), un-processes (1)"
    assert (message["From"], message["To"]) == ("diplowatch@example.org", "desk@example.org")
    assert message.get_content_type() == "multipart/alternative"
    assert "Statement at the OEWG" in body_text(message, "plain")
    assert "<mark>OEWG</mark>" in body_text(message, "html")


def test_only_new_items_arrive_in_the_next_digest(tmp_path: Path, store: Store) -> None:
    mailbox = Mailbox()
    store_statements(store, [Statement("a", "First statement")])
    with smtp_server(mailbox) as port:
        config = configure(tmp_path, port)
        run(store, config)
        store_statements(store, [Statement("b", "Second statement")], NOW + timedelta(minutes=30))
        run(store, config, 60)
    first, second = (body_text(m, "plain") for m in mailbox.accepted)
    assert "First statement" in first and "Second statement" not in first
    assert "Second statement" in second and "First statement" not in second


def test_smtp_down_then_up_delivers_once_later_with_the_same_id(tmp_path: Path, store: Store) -> None:
    port = free_port()  # nothing listens yet
    config = configure(tmp_path, port)
    store_statements(store, [Statement("a", "Statement at the OEWG")])
    [failed] = run(store, config)
    assert not failed.ok and "ConnectionRefusedError" in (failed.error or "")
    assert failed.next_attempt == "2026-11-23T07:01:00Z"
    mailbox = Mailbox()
    with smtp_server(mailbox, port):
        assert retry_due(store, config, NOW + timedelta(seconds=30)) == []  # still backing off
        [retried] = retry_due(store, config, NOW + timedelta(seconds=61))
        assert [r.skipped for r in run(store, config, 5)] == ["nothing pending"]
    assert retried.ok and retried.digest_id == failed.digest_id
    [message] = mailbox.accepted
    assert message["Message-ID"] == f"<{failed.digest_id}@example.org>"


@pytest.mark.parametrize("refusal", ["451 4.7.1 Greylisted, try again later", "554 5.7.1 Message refused"])
def test_a_refused_digest_stays_pending_and_is_accepted_once_later(tmp_path: Path, store: Store,
                                                                   refusal: str) -> None:
    mailbox = Mailbox(replies=[refusal])
    store_statements(store, [Statement("a", "Statement at the OEWG")])
    with smtp_server(mailbox) as port:
        config = configure(tmp_path, port)
        [failed] = run(store, config)
        [retried] = retry_due(store, config, NOW + timedelta(minutes=2))
        assert retry_due(store, config, NOW + timedelta(hours=2)) == []
    assert not failed.ok and refusal.split()[0] in (failed.error or "")
    assert retried.ok and mailbox.attempts == 2 and len(mailbox.accepted) == 1


def test_a_failing_channel_holds_its_new_items_behind_the_open_digest(tmp_path: Path, store: Store) -> None:
    config = configure(tmp_path, free_port())
    store_statements(store, [Statement("a", "First")])
    [failed] = run(store, config)
    store_statements(store, [Statement("b", "Second")], NOW + timedelta(minutes=1))
    [again] = run(store, config, 2)
    assert not again.ok and again.digest_id == failed.digest_id and again.items == 1


def test_a_script_title_arrives_as_text_and_a_javascript_link_is_no_link(tmp_path: Path, store: Store) -> None:
    mailbox = Mailbox()
    store_statements(store, [Statement("x", "<script>alert(1)</script>", url="javascript:alert(1)",
                                       snippet="<b>OEWG</b> <img src=https://t.example.org/p.gif>")])
    with smtp_server(mailbox) as port:
        run(store, configure(tmp_path, port))
    [message] = mailbox.accepted
    html, text = body_text(message, "html"), body_text(message, "plain")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html and "javascript:" not in html and "<img" not in html
    assert "<script>alert(1)</script>" in text and "javascript:" not in text


def test_some_recipients_refused_is_a_delivery_with_a_note(tmp_path: Path, store: Store) -> None:
    mailbox = Mailbox(refuse_rcpt={"gone@example.org"})
    store_statements(store, [Statement("a", "First")])
    with smtp_server(mailbox) as port:
        [result] = run(store, configure(tmp_path, port, to="[desk@example.org, gone@example.org]"))
    assert result.ok and "gone@example.org: 550" in (result.note or "")
    assert len(mailbox.accepted) == 1


def test_every_recipient_refused_is_a_failure(tmp_path: Path, store: Store) -> None:
    store_statements(store, [Statement("a", "First")])
    with smtp_server(Mailbox(refuse_rcpt={"desk@example.org"})) as port:
        [result] = run(store, configure(tmp_path, port))
    assert not result.ok and "every recipient was refused" in (result.error or "")


def test_a_broken_source_alert_arrives_by_email_once(tmp_path: Path, store: Store) -> None:
    mailbox = Mailbox()
    fail_polls(store, "mfa-example", 3)
    with smtp_server(mailbox) as port:
        config = configure(tmp_path, port, alerts=True)
        [raised] = outbox_tick(store, config, NOW)
        assert outbox_tick(store, config, NOW + timedelta(minutes=5)) == []
    [message] = mailbox.accepted
    assert message["Message-ID"] == f"<{raised.digest_id}@example.org>"
    assert message["Subject"] == "[diplowatch] 1 source broken: mfa-example"
    assert "Mfa-Example (mfa-example) is failing after 3 failed polls in a row." in body_text(message, "plain")


# -- TLS and login -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting the server's self-signed certificate)."""
    cert, key = self_signed_cert(tmp_path_factory.mktemp("tls"))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


def _authenticator(server: object, session: object, envelope: object, mechanism: str,
                   auth_data: LoginPassword) -> AuthResult:
    ok = auth_data.login == b"bot" and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


def send_one(tmp_path: Path, port: int, security: str, client: ssl.SSLContext, environ: dict[str, str],
             login: str = ", username: bot, password_env: DW_SMTP_PASSWORD") -> str | None:
    config = configure(tmp_path, port, security, login)
    assert config.smtp and config.subscriptions[0].email
    digest = build_digest("dw-tls", "desk", "2026-11-23T07:00:00Z", [])
    return email.send(config.smtp, config.subscriptions[0].email, digest, environ=environ, context=client)


def test_starttls_with_login_reads_the_password_from_the_environment(tmp_path: Path, tls: tuple) -> None:
    mailbox = Mailbox()
    with smtp_server(mailbox, tls_context=tls[0], require_starttls=True, authenticator=_authenticator,
                     auth_require_tls=True) as port:
        send_one(tmp_path, port, "starttls", tls[1], {"DW_SMTP_PASSWORD": PASSWORD})
    [message] = mailbox.accepted
    assert message["Message-ID"] == "<dw-tls@example.org>"


def test_a_wrong_password_fails_without_showing_it(tmp_path: Path, tls: tuple,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with smtp_server(Mailbox(), tls_context=tls[0], authenticator=_authenticator) as port, \
            pytest.raises(DeliveryError, match="535") as error:
        send_one(tmp_path, port, "starttls", tls[1], {"DW_SMTP_PASSWORD": "hunter2-wrong"})
    assert "hunter2" not in str(error.value) and "hunter2" not in caplog.text


def test_a_missing_password_variable_is_a_failure_that_names_it(tmp_path: Path, tls: tuple) -> None:
    with pytest.raises(DeliveryError, match=r"DW_SMTP_PASSWORD .* is not set"):
        send_one(tmp_path, free_port(), "starttls", tls[1], {})


def test_starttls_never_falls_back_to_clear_text(tmp_path: Path, tls: tuple) -> None:
    mailbox = Mailbox()
    with smtp_server(mailbox) as port, pytest.raises(DeliveryError, match="STARTTLS"):
        send_one(tmp_path, port, "starttls", tls[1], {}, login="")
    assert mailbox.attempts == 0


def test_implicit_tls(tmp_path: Path, tls: tuple) -> None:
    mailbox = Mailbox()
    with smtp_server(mailbox, server_hostname="127.0.0.1", ssl_context=tls[0]) as port:
        send_one(tmp_path, port, "tls", tls[1], {}, login="")
    assert len(mailbox.accepted) == 1


def test_an_untrusted_certificate_is_refused(tmp_path: Path, tls: tuple) -> None:
    with smtp_server(Mailbox(), tls_context=tls[0]) as port, pytest.raises(DeliveryError, match="CERTIFICATE"):
        send_one(tmp_path, port, "starttls", ssl.create_default_context(), {}, login="")
