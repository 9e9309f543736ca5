"""Webhook delivery against a real HTTP receiver (pytest-httpserver on 127.0.0.1): the versioned
JSON body, signed; failures (500, 404, timeouts, redirects) retried until a 2xx, exactly once."""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from digest_fixtures import NOW, Statement, fail_polls, free_port, ok_poll, store_statements, write_config
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from monitor.config import Config
from monitor.digest_cycle import outbox_tick, retry_due, run_subscription
from monitor.store import Store

SECRET = "s3cret-shared-with-the-receiver"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "dw.db") as s:
        yield s


@pytest.fixture(scope="module")
def verifier() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_webhook", REPO / "examples" / "verify_webhook.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DW_HOOK_SECRET", SECRET)


def configure(tmp_path: Path, url: str, fmt: str = "json", secret_env: str = "DW_HOOK_SECRET",
              alerts: bool = False, email: bool = False, extra: str = "") -> Config:
    """One subscription `desk` with a webhook (and an email channel to an SMTP port nobody listens on)."""
    signed = f", secret_env: {secret_env}" if secret_env else ""
    mail = "    email: {to: [desk@example.org]}\n" if email else ""
    return write_config(tmp_path / "sources.yaml", f"""
smtp: {{host: 127.0.0.1, port: {free_port()}, security: none, sender: dw@example.org, timeout: 2s}}
subscriptions:
  - name: desk
    every: 1h
    backfill: 1d
    alerts: {str(alerts).lower()}
    webhook: {{url: "{url}", format: {fmt}, timeout: 1s{signed}}}
{mail}{extra}""")


def run(store: Store, config: Config, minutes: float = 0, name: str = "desk") -> list:
    sub = next(s for s in config.subscriptions if s.name == name)
    return run_subscription(store, config, sub, NOW + timedelta(minutes=minutes))


def received(server: HTTPServer) -> list[Request]:
    return [request for request, _ in server.log]


def test_a_json_digest_arrives_once_signed_with_its_id(tmp_path: Path, store: Store, httpserver: HTTPServer,
                                                       verifier: ModuleType) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=204)
    config = configure(tmp_path, httpserver.url_for("/hook"))
    store_statements(store, [Statement("a", "Statement at the OEWG", countries=("RU",))])
    [result] = run(store, config)
    assert [r.skipped for r in run(store, config, 60)] == ["nothing pending"]
    [request] = received(httpserver)
    assert request.headers["X-Diplowatch-Delivery"] == result.digest_id
    assert request.headers["X-Diplowatch-Event"] == "digest"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert verifier.verify(SECRET, request.get_data(), request.headers["X-Diplowatch-Signature"])
    body = json.loads(request.get_data())
    assert {k: body[k] for k in ("schema_version", "type", "id", "subscription", "item_count", "pending_after")} == {
        "schema_version": 1, "type": "digest", "id": result.digest_id, "subscription": "desk", "item_count": 1,
        "pending_after": 0}
    assert body["window"] == {"start": "2026-11-23T07:00:00Z", "end": "2026-11-23T07:00:00Z"}
    assert body["topics"] == [{"topic": "un-processes", "count": 1}]
    [item] = body["items"]
    assert item == {
        "id": item["id"], "item_ids": [item["id"]], "title": "Statement at the OEWG",
        "url": "https://mfa-example.example.org/a", "source": "mfa-example", "source_name": "Mfa-Example",
        "published": None, "lang": "en", "countries": ["RU"], "orgs": [], "doc_type": None, "topic": "un-processes",
        "matches": [{"rule": "oewg", "topic": "un-processes", "terms": ["OEWG"],
                     "snippet": "Statement at the OEWG on ICT security.", "highlights": [[17, 21]]}],
        "also_reported_by": []}


def test_500_then_200_delivers_once_later_with_the_same_id_body_and_a_valid_signature(
        tmp_path: Path, store: Store, httpserver: HTTPServer, verifier: ModuleType) -> None:
    httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("busy", status=500)
    httpserver.expect_ordered_request("/hook", method="POST").respond_with_data("ok", status=200)
    config = configure(tmp_path, httpserver.url_for("/hook"))
    store_statements(store, [Statement("a", "Statement at the OEWG")])
    [failed] = run(store, config)
    assert not failed.ok and "HTTP 500" in (failed.error or "")
    assert retry_due(store, config, NOW + timedelta(seconds=59)) == []
    [retried] = retry_due(store, config, NOW + timedelta(seconds=60))
    assert retried.ok and retry_due(store, config, NOW + timedelta(hours=3)) == []
    first, second = received(httpserver)
    assert first.get_data() == second.get_data()
    assert first.headers["X-Diplowatch-Delivery"] == second.headers["X-Diplowatch-Delivery"] == failed.digest_id
    assert verifier.verify(SECRET, second.get_data(), second.headers["X-Diplowatch-Signature"])


@pytest.mark.parametrize(("status", "headers"), [(404, {}), (400, {}), (410, {}),
                                                 (302, {"Location": "https://elsewhere.example/"})])
def test_any_answer_but_2xx_is_a_failure_and_the_items_stay_pending(
        tmp_path: Path, store: Store, httpserver: HTTPServer, status: int, headers: dict[str, str]) -> None:
    httpserver.expect_request("/hook").respond_with_data("", status=status, headers=headers)
    config = configure(tmp_path, httpserver.url_for("/hook"))
    store_statements(store, [Statement("a", "Statement at the OEWG")])
    [failed] = run(store, config)
    assert not failed.ok and f"HTTP {status}" in (failed.error or "")
    [again] = retry_due(store, config, NOW + timedelta(minutes=1))
    assert again.digest_id == failed.digest_id and not again.ok


def test_a_receiver_that_does_not_answer_in_time_is_a_failure(tmp_path: Path, store: Store,
                                                              httpserver: HTTPServer) -> None:
    release = threading.Event()

    def slow(request: Request) -> Response:
        release.wait(10)
        return Response("late", status=200)

    httpserver.expect_request("/hook").respond_with_handler(slow)
    config = configure(tmp_path, httpserver.url_for("/hook"))
    store_statements(store, [Statement("a", "Statement at the OEWG")])
    try:
        [failed] = run(store, config)
    finally:
        release.set()
    assert not failed.ok and "Timeout" in (failed.error or "")


def test_nothing_listening_is_a_failure(tmp_path: Path, store: Store) -> None:
    config = configure(tmp_path, f"http://127.0.0.1:{free_port()}/hook")
    store_statements(store, [Statement("a", "Statement at the OEWG")])
    [failed] = run(store, config)
    assert not failed.ok and "ConnectError" in (failed.error or "")


def test_errors_never_show_the_webhook_path(tmp_path: Path, store: Store, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/services/T000/B000/XXXXSECRETXXXX").respond_with_data("no", status=404)
    config = configure(tmp_path, httpserver.url_for("/services/T000/B000/XXXXSECRETXXXX"), secret_env="")
    store_statements(store, [Statement("a", "Statement at the OEWG")])
    [failed] = run(store, config)
    error = failed.error or ""
    assert "XXXXSECRETXXXX" not in error and f"http://localhost:{httpserver.port}:" in error


def test_a_missing_secret_refuses_to_send_unsigned(tmp_path: Path, store: Store, httpserver: HTTPServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DW_HOOK_SECRET")
    httpserver.expect_request("/hook").respond_with_data("", status=204)
    config = configure(tmp_path, httpserver.url_for("/hook"))
    store_statements(store, [Statement("a", "Statement at the OEWG")])
    [failed] = run(store, config)
    assert not failed.ok and "DW_HOOK_SECRET" in (failed.error or "") and SECRET not in (failed.error or "")
    assert received(httpserver) == []


def test_unsigned_when_no_secret_is_configured(tmp_path: Path, store: Store, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("", status=200)
    store_statements(store, [Statement("a", "Statement at the OEWG")])
    run(store, configure(tmp_path, httpserver.url_for("/hook"), secret_env=""))
    [request] = received(httpserver)
    assert "X-Diplowatch-Signature" not in request.headers


# -- feed content stays data -------------------------------------------------------------------

HOSTILE = Statement("x", "<script>alert(1)</script> *bold* [link](https://evil.example/) <!channel>",
                    url="javascript:alert(1)")


def _hostile_body(tmp_path: Path, store: Store, httpserver: HTTPServer, fmt: str) -> Any:
    httpserver.expect_request("/hook").respond_with_data("", status=200)
    store_statements(store, [HOSTILE])
    run(store, configure(tmp_path, httpserver.url_for("/hook"), fmt=fmt))
    [request] = received(httpserver)
    return json.loads(request.get_data())


def test_a_script_title_is_plain_text_in_json_and_a_javascript_link_is_null(
        tmp_path: Path, store: Store, httpserver: HTTPServer) -> None:
    [item] = _hostile_body(tmp_path, store, httpserver, "json")["items"]
    assert item["title"] == HOSTILE.title and item["url"] is None


def test_slack_text_escapes_feed_text_and_links_only_http(tmp_path: Path, store: Store,
                                                          httpserver: HTTPServer) -> None:
    text = _hostile_body(tmp_path, store, httpserver, "slack")["text"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;!channel&gt;" in text
    assert "<script" not in text and "<!channel>" not in text and "javascript:" not in text


def test_teams_card_escapes_markdown_and_links_only_http(tmp_path: Path, store: Store,
                                                         httpserver: HTTPServer) -> None:
    body = _hostile_body(tmp_path, store, httpserver, "teams")
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    texts = [block["text"] for block in attachment["content"]["body"]]
    assert any(r"\[link\]\(https://evil\.example/\)" in t for t in texts)
    assert not any("javascript:" in t or "](https://evil" in t for t in texts)


def test_slack_links_http_titles(tmp_path: Path, store: Store, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("", status=200)
    store_statements(store, [Statement("a", "Statement at the OEWG")])
    run(store, configure(tmp_path, httpserver.url_for("/hook"), fmt="slack"))
    text = json.loads(received(httpserver)[0].get_data())["text"]
    assert "<https://mfa-example.example.org/a|Statement at the OEWG>" in text


# -- independence and alerts -------------------------------------------------------------------


def test_one_broken_subscription_or_channel_holds_up_no_other(tmp_path: Path, store: Store,
                                                             httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ok").respond_with_data("", status=200)
    httpserver.expect_request("/broken").respond_with_data("", status=503)
    ops = f"""  - name: ops
    every: 1h
    backfill: 1d
    webhook: {{url: "{httpserver.url_for('/ok')}"}}
"""
    config = configure(tmp_path, httpserver.url_for("/broken"), email=True, extra=ops)
    store_statements(store, [Statement("a", "Statement at the OEWG")])
    desk = {r.channel: r.ok for r in run(store, config)}
    [ops_result] = run(store, config, name="ops")
    assert desk == {"email": False, "webhook": False} and ops_result.ok


def test_a_broken_source_raises_one_alert_and_one_recovery_notice(tmp_path: Path, store: Store,
                                                                  httpserver: HTTPServer,
                                                                  verifier: ModuleType) -> None:
    httpserver.expect_request("/hook").respond_with_data("", status=200)
    config = configure(tmp_path, httpserver.url_for("/hook"), alerts=True)
    fail_polls(store, "mfa-example", 3)
    [raised] = outbox_tick(store, config, NOW)
    fail_polls(store, "mfa-example", 2)
    assert outbox_tick(store, config, NOW + timedelta(minutes=1)) == []
    ok_poll(store, "mfa-example")
    [recovered] = outbox_tick(store, config, NOW + timedelta(minutes=2))
    assert outbox_tick(store, config, NOW + timedelta(minutes=3)) == []
    alert, notice = received(httpserver)
    assert (raised.kind, raised.ok, recovered.kind, recovered.ok) == ("alert", True, "alert", True)
    assert alert.headers["X-Diplowatch-Event"] == "alert"
    assert verifier.verify(SECRET, alert.get_data(), alert.headers["X-Diplowatch-Signature"])
    body = json.loads(alert.get_data())
    assert (body["schema_version"], body["type"], body["id"]) == (1, "alert", raised.digest_id)
    assert body["subject"] == "[diplowatch] 1 source broken: mfa-example"
    [source] = body["sources"]
    assert (source["source"], source["state"], source["consecutive_failures"]) == ("mfa-example", "failing", 3)
    assert [s["state"] for s in json.loads(notice.get_data())["sources"]] == ["recovered"]


def test_alerts_go_only_to_subscriptions_that_ask(tmp_path: Path, store: Store, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("", status=200)
    config = configure(tmp_path, httpserver.url_for("/hook"), alerts=False)
    fail_polls(store, "mfa-example", 5)
    assert outbox_tick(store, config, NOW) == [] and received(httpserver) == []


# -- the receiver-side helper (examples/verify_webhook.py) -------------------------------------


def _hex(body: bytes) -> str:
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(("body", "header", "valid"), [
    (b'{"a":1}', "sha256=" + _hex(b'{"a":1}'), True),
    (b'{"a":2}', "sha256=" + _hex(b'{"a":1}'), False),
    (b'{"a":1}', _hex(b'{"a":1}'), False),
    (b'{"a":1}', "sha1=abc", False),
    (b'{"a":1}', "", False),
    (b'{"a":1}', None, False),
])
def test_verify_webhook_example(verifier: ModuleType, body: bytes, header: str | None, valid: bool) -> None:
    assert verifier.verify(SECRET, body, header) is valid
    assert verifier.verify(b"another secret", body, header) is False


def test_verify_webhook_example_receiver_drops_repeats(verifier: ModuleType) -> None:
    deliveries = verifier.Deliveries()
    assert deliveries.first_time("dw-1") and not deliveries.first_time("dw-1") and deliveries.first_time("dw-2")
