"""sources.yaml validation: every case in data/config/cases.yaml, plus the bundled file."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from monitor.config import load_config
from monitor.errors import ConfigError
from tests.conftest import DATA, REPO

CASES = YAML(typ="safe").load((DATA / "config" / "cases.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_config_case(case: dict, tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(case["yaml"], encoding="utf-8")
    if case.get("ok"):
        config = load_config(path)
        if "expect_tags" in case:
            assert config.sources[0].tags == case["expect_tags"]
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    messages = [str(p) for p in caught.value.problems]
    assert len(messages) == len(case["problems"]), messages
    for expected, message in zip(case["problems"], messages, strict=True):
        assert message.startswith(str(path)), message
        assert _located(expected, message, str(path)), f"{expected!r} not in {message!r}"


def _located(expected: str, message: str, file: str) -> bool:
    """'4: key: fragment' must match '<file>:4: key: ...fragment...'."""
    head, _, fragment = expected.partition(": ")
    if head.isdigit():
        return message.startswith(f"{file}:{head}: ") and fragment.split(": ")[-1] in message and all(
            part in message for part in fragment.split(": ")[:-1])
    return expected in message


def test_bundled_sources_yaml_is_valid_and_rich() -> None:
    config = load_config(REPO / "sources.yaml")
    assert len(config.sources) >= 30
    hosts = " ".join(s.url for s in config.sources)
    for needed in ("kremlin.ru", "mid.ru", "tass.com", "tass.ru", "state.gov", "gov.uk", "diplomatie.gouv.fr",
                   "news.un.org", "press.un.org", "dig.watch", "unodc", "coe.int", "osce", "eeas"):
        assert needed in hosts, needed
    assert all(s.tags.get("type") for s in config.sources)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothere\.yaml: file not found"):
        load_config(tmp_path / "nothere.yaml")
