"""`diplowatch digest` and `diplowatch deliveries` as real subprocesses (python -m monitor), against a
real SMTP server and a real HTTP receiver; kill -9 in the middle of a send; configuration errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from digest_fixtures import DATA, Mailbox, Statement, smtp_server, store_statements, write_config
from pytest_httpserver import HTTPServer

from monitor.alerts import AlertNotice
from monitor.config import load_config
from monitor.config_delivery import cron_trigger, require_delivery_settings
from monitor.deliver.webhook import alert_payload, digest_payload
from monitor.digest import build_digest
from monitor.errors import ConfigError
from monitor.models import utcnow
from monitor.store import Store

REPO = Path(__file__).resolve().parent.parent
SECRETS = {"DW_HOOK_SECRET": "hook-secret-value-123", "DW_SMTP_PASSWORD": "smtp-password-value-456"}


def diplowatch(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "monitor", "--config", str(tmp_path / "sources.yaml"),
               "--db", str(tmp_path / "dw.db"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, **SECRETS, **(env or {})})


def configure(tmp_path: Path, smtp_port: int, hook_url: str) -> None:
    write_config(tmp_path / "sources.yaml", f"""
smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none, sender: diplowatch@example.org, timeout: 5s}}
subscriptions:
  - name: desk
    cron: "0 7 * * 1-5"
    timezone: Europe/Zurich
    backfill: 7d
    email: {{to: [desk@example.org]}}
    webhook: {{url: "{hook_url}", format: json, secret_env: DW_HOOK_SECRET, timeout: 5s}}
""")


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    with Store.open(tmp_path / "dw.db") as store:
        store_statements(store, [Statement("a", "Statement at the OEWG"),
                                 Statement("b", "<script>alert(1)</script>", source="news-example",
                                           url="javascript:alert(1)", topic="cybercrime-convention")], utcnow())
    return tmp_path


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    with smtp_server(box) as port:
        yield box, port


def deliveries(tmp_path: Path) -> list[dict]:
    result = diplowatch(tmp_path, "deliveries", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_digest_sends_pending_items_exactly_once_across_two_runs(stored: Path, mailbox: tuple[Mailbox, int],
                                                                 httpserver: HTTPServer) -> None:
    box, port = mailbox
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=204)
    configure(stored, port, httpserver.url_for("/hook"))
    first = diplowatch(stored, "digest")
    assert first.returncode == 0, first.stderr
    assert re.findall(r"^desk/(\w+): sent digest dw-\w+ \(2 items\)$", first.stdout, re.M) == ["email", "webhook"]
    second = diplowatch(stored, "digest")
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == ["desk/email: nothing pending", "desk/webhook: nothing pending"]
    [message] = box.accepted
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.get_body(("html",)).get_content()
    [(request, _)] = httpserver.log
    assert json.loads(request.get_data())["item_count"] == 2
    history = deliveries(stored)
    assert sorted((row["channel"], row["result"], row["items"]) for row in history) == [
        ("email", "delivered", 2), ("webhook", "delivered", 2)]
    assert all(SECRETS["DW_HOOK_SECRET"] not in json.dumps(row) for row in history)


def test_a_failed_webhook_exits_1_and_the_next_run_resends_the_same_digest(
        stored: Path, mailbox: tuple[Mailbox, int], httpserver: HTTPServer) -> None:
    _, port = mailbox
    httpserver.expect_ordered_request("/hook").respond_with_data("", status=500)
    httpserver.expect_ordered_request("/hook").respond_with_data("", status=200)
    configure(stored, port, httpserver.url_for("/hook"))
    failed = diplowatch(stored, "digest")
    assert failed.returncode == 1
    assert "1 delivery failed; the items stay pending" in failed.stderr
    [line] = [x for x in failed.stdout.splitlines() if x.startswith("desk/webhook")]
    assert "FAILED digest" in line and "HTTP 500" in line
    [row] = [r for r in deliveries(stored) if r["channel"] == "webhook"]
    assert row["result"] == "failed" and row["next_attempt"]
    again = diplowatch(stored, "digest")
    assert again.returncode == 0, again.stderr
    assert f"desk/webhook: sent digest {row['digest']} (2 items)" in again.stdout
    first, second = (request for request, _ in httpserver.log)
    assert first.headers["X-Diplowatch-Delivery"] == second.headers["X-Diplowatch-Delivery"] == row["digest"]


def test_dry_run_prints_the_digest_and_changes_nothing(stored: Path, mailbox: tuple[Mailbox, int],
                                                       httpserver: HTTPServer) -> None:
    box, port = mailbox
    configure(stored, port, httpserver.url_for("/services/T0/B0/path-is-secret"))
    result = diplowatch(stored, "digest", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "== desk -> email to desk@example.org via 127.0.0.1:" in out
    assert f"== desk -> webhook json to http://localhost:{httpserver.port}/…, signed with $DW_HOOK_SECRET (set)" in out
    assert out.count("* <script>alert(1)</script>") == 2 and out.count("* Statement at the OEWG") == 2
    for secret in (*SECRETS.values(), "path-is-secret"):
        assert secret not in out and secret not in result.stderr
    assert box.attempts == 0 and httpserver.log == [] and deliveries(stored) == []
    with Store.open(stored / "dw.db") as store:
        assert store.db.conn.execute("SELECT count(*) FROM subscriptions").fetchone()[0] == 0


def test_kill_9_while_sending_loses_nothing_and_the_rerun_reuses_the_digest_id(
        stored: Path, httpserver: HTTPServer) -> None:
    hold = threading.Event()
    box = Mailbox(hold=hold)
    httpserver.expect_request("/hook").respond_with_data("", status=200)
    with smtp_server(box) as port:
        configure(stored, port, httpserver.url_for("/hook"))
        command = [sys.executable, "-m", "monitor", "--config", str(stored / "sources.yaml"), "--db",
                   str(stored / "dw.db"), "digest", "--subscription", "desk"]
        process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **SECRETS},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert box.holding.wait(60), "the digest never reached the SMTP server"
            os.kill(process.pid, signal.SIGKILL)  # between sending and recording
            assert process.wait(30) == -signal.SIGKILL
        finally:
            box.hold = None
            hold.set()
        rerun = diplowatch(stored, "digest")
    assert rerun.returncode == 0, rerun.stderr
    first, second = box.accepted
    assert first["Message-ID"] == second["Message-ID"]  # the receiver can drop the repeat
    digest_id = first["X-Diplowatch-Delivery"]
    assert f"desk/email: sent digest {digest_id} (2 items)" in rerun.stdout
    assert {(r["channel"], r["result"]) for r in deliveries(stored)} == {("email", "delivered"),
                                                                         ("webhook", "delivered")}


def test_deliveries_table_and_limit(stored: Path, mailbox: tuple[Mailbox, int], httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("", status=200)
    configure(stored, mailbox[1], httpserver.url_for("/hook"))
    assert diplowatch(stored, "digest").returncode == 0
    table = diplowatch(stored, "deliveries", "--format", "table", "--limit", "1")
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["attempted_at", "subscription", "channel", "kind"]
    assert len(lines) == 2 and "delivered" in lines[1]


def test_unknown_subscription_is_a_usage_error(stored: Path, mailbox: tuple[Mailbox, int]) -> None:
    configure(stored, mailbox[1], "https://hooks.example.org/x")
    result = diplowatch(stored, "digest", "--subscription", "nobody")
    assert result.returncode == 2 and "no subscription named nobody" in result.stderr


def test_no_subscriptions_is_a_usage_error(tmp_path: Path) -> None:
    write_config(tmp_path / "sources.yaml", "")
    result = diplowatch(tmp_path, "digest")
    assert result.returncode == 2 and "has no `subscriptions:`" in result.stderr


# -- configuration errors: file, line and key, at load time -----------------------------------

CONFIG_CASES = sorted((DATA / "config").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIG_CASES, ids=[p.stem for p in CONFIG_CASES])
def test_configuration_errors(path: Path) -> None:
    expected = path.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    with pytest.raises(ConfigError) as error:
        require_delivery_settings(load_config(path))
    got = [str(p).replace(str(path), path.name) for p in error.value.problems]
    assert got == expected


def test_a_bad_subscription_exits_2_with_the_line(tmp_path: Path) -> None:
    (tmp_path / "sources.yaml").write_text((DATA / "config" / "bad_schedules.yaml").read_text(), encoding="utf-8")
    result = diplowatch(tmp_path, "digest")
    assert result.returncode == 2
    assert "sources.yaml:4: subscriptions[0].timezone: unknown time zone 'Geneva'; did you mean " \
           "Europe/Zurich?" in result.stderr


def test_the_issue_s_own_example_loads_with_geneva_on_zurich_time(tmp_path: Path) -> None:
    from monitor.config import load_config

    path = tmp_path / "sources.yaml"
    path.write_text("""sources: []
smtp: {host: smtp.example.org, port: 587, security: starttls, username: bot, password_env: DW_SMTP_PASSWORD,
       sender: diplowatch@example.org}
subscriptions:
  - name: analysts
    cron: "0 7 * * 1-5"
    timezone: Europe/Geneva
    topics: [un-processes, cybercrime-convention]
    max_items: 100
    alerts: true
    email: {to: [desk@example.org]}
    webhook: {url: "https://hooks.example.org/x", format: json, secret_env: DW_HOOK_SECRET}
""", encoding="utf-8")
    assert load_config(path).subscriptions[0].timezone == "Europe/Zurich"


def test_the_weekday_numbers_of_a_cron_line_are_crontab_s() -> None:
    trigger = cron_trigger("0 7 * * 1-5", "Europe/Zurich")
    assert str(trigger.fields[4]) == "mon,tue,wed,thu,fri"


# -- the documentation is true -----------------------------------------------------------------


def test_the_documented_configuration_loads(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "digests.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    assert blocks, "docs/digests.md has no yaml example"
    for n, block in enumerate(blocks):
        path = tmp_path / f"example{n}.yaml"
        path.write_text(block, encoding="utf-8")
        config = load_config(path)
        require_delivery_settings(config)
    for command in ("diplowatch digest", "diplowatch deliveries", "--dry-run", "--subscription"):
        assert command in doc


def test_the_documented_webhook_schema_matches_the_payload() -> None:
    doc = (REPO / "docs" / "webhook.md").read_text(encoding="utf-8")
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", doc, re.S)]
    digest = digest_payload(build_digest("dw-1", "desk", "2026-11-23T07:00:00Z", []))
    alert = alert_payload(AlertNotice("dw-2", "desk", datetime(2026, 11, 23, tzinfo=UTC), ()))
    by_type = {e["type"]: e for e in examples if "type" in e}
    assert set(by_type["digest"]) == set(digest) and set(by_type["alert"]) == set(alert)
    assert set(by_type["digest"]["items"][0]) == {
        "id", "item_ids", "title", "url", "source", "source_name", "published", "lang", "countries", "orgs",
        "doc_type", "topic", "matches", "also_reported_by"}
