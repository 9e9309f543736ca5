"""Issue 3 through the CLI: rules test, rematch after a rule changes, search by entity and rule."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import DATA, FeedFarm, run_cli, write_config

FEEDS = DATA / "feeds"


def _poll(tmp_path: Path, farm: FeedFarm, extra: str = "") -> list[str]:
    sources = [{"id": "kremlin", "url": farm.add("/k.xml", (FEEDS / "rss_cp1251_kremlin.xml").read_bytes()),
                "tags": {"country": "RU", "type": "head-of-state"}},
               {"id": "fcdo", "url": farm.add("/f.atom", (FEEDS / "atom_govuk_fcdo.atom").read_bytes(),
                                              "application/atom+xml")},
               {"id": "mfa-zh", "url": farm.add("/z.xml", (FEEDS / "rss_zh_mfa.xml").read_bytes())}]
    config = write_config(tmp_path / "sources.yaml", sources, extra=extra)
    args = ["--config", str(config), "--db", str(tmp_path / "dw.db")]
    result = run_cli(*args, "poll")
    assert result.returncode == 0, result.stderr
    return args


def _items(args: list[str], *filters: str) -> list[dict]:
    result = run_cli(*args, "search", "--format", "jsonl", *filters)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_stored_items_carry_rules_entities_and_type(tmp_path: Path, farm: FeedFarm) -> None:
    args = _poll(tmp_path, farm)
    everything = _items(args)
    matched = _items(args, "--matched")
    assert matched and len(matched) < len(everything)  # every item stored, only some matched
    assert all(item["rules"] and item["topics"] for item in matched)
    assert {"countries", "orgs", "doc_type"} <= set(everything[0])
    russian = _items(args, "--country", "RU")
    assert russian and all("RU" in item["countries"] for item in russian)
    topic = matched[0]["topics"][0]
    assert all(topic in item["topics"] for item in _items(args, "--topic", topic))
    rule = matched[0]["rules"][0]
    assert [i["id"] for i in _items(args, "--rule", rule)] == [i["id"] for i in matched if rule in i["rules"]]
    types = {item["doc_type"] for item in everything}
    some_type = sorted(types)[0]
    assert {i["doc_type"] for i in _items(args, "--type", some_type)} == {some_type}
    assert {i["lang"] for i in _items(args, "--lang", "zh")} == {"zh"}


def test_rematch_applies_a_new_rule_to_history(tmp_path: Path, farm: FeedFarm) -> None:
    args = _poll(tmp_path, farm)
    assert _items(args, "--rule", "ports-watch") == []
    config = Path(args[1])
    config.write_text(config.read_text() + 'rules:\n  - name: ports-watch\n    topic: trade\n'
                      '    any: ["humanitarian funding", "награжд*"]\n', encoding="utf-8")
    result = run_cli(*args, "rematch")
    assert result.returncode == 0 and "re-matched" in result.stdout, result.stderr
    assert _items(args, "--rule", "ports-watch")


def test_rules_test_explains_why(tmp_path: Path) -> None:
    config = write_config(tmp_path / "sources.yaml", [])
    text = "Россия и Китай подписали соглашение о сотрудничестве в области международной информационной безопасности"
    result = run_cli("--config", str(config), "rules", "test", "--lang", "ru", text)
    assert result.returncode == 0, result.stderr
    assert "[[международной информационной безопасности]]" in result.stdout
    assert "RU" in result.stdout and "1 of 1 text(s) matched" in result.stdout
    quiet = run_cli("--config", str(config), "rules", "test", "Best password managers of the year")
    assert "0 of 1 text(s) matched" in quiet.stdout and "no rule fired" in quiet.stdout


def test_rules_test_on_a_feed_url(tmp_path: Path, farm: FeedFarm) -> None:
    config = write_config(tmp_path / "sources.yaml", [])
    url = farm.add("/z.xml", (FEEDS / "rss_zh_mfa.xml").read_bytes())
    result = run_cli("--config", str(config), "rules", "test", "--url", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("== ") == 5


def test_export_streams_csv_and_jsonl(tmp_path: Path, farm: FeedFarm) -> None:
    args = _poll(tmp_path, farm)
    lines = run_cli(*args, "export", "--format", "jsonl").stdout.splitlines()
    assert len(lines) == len(_items(args))
    rows = run_cli(*args, "export", "--format", "csv", "--matched").stdout.splitlines()
    assert rows[0].startswith("id,source,url,title") and len(rows) == len(_items(args, "--matched")) + 1
