"""Parser cases: every tests/data/feeds/NAME.* beside NAME.expected.yaml, read as the expected file says."""

from __future__ import annotations

from pathlib import Path

import feedparser.mixin
import feedparser.urls
import pytest
from ruamel.yaml import YAML

from monitor.config import Source
from monitor.errors import Blocked, ParseError
from monitor.models import Fetched, iso
from monitor.parse import parse
from tests.conftest import DATA, SHARED_FEEDS

FEEDS = DATA / "feeds"
EXPECTED = sorted(FEEDS.glob("*.expected.yaml"))
ERRORS = {"blocked": Blocked, "not-a-feed": ParseError, "empty": ParseError}


def _fixture(expected_path: Path) -> Path:
    stem = expected_path.name.removesuffix(".expected.yaml")
    bodies = [p for p in FEEDS.glob(f"{stem}.*") if not p.name.endswith(".expected.yaml")]
    assert len(bodies) == 1, f"{stem}: expected one body file, found {bodies}"
    return bodies[0]


def _source(spec: dict) -> Source:
    fields = {"id": "fixture", "url": spec["url"], "kind": spec.get("kind"), "lang": spec.get("lang")}
    if spec.get("selectors"):
        fields["selectors"] = spec["selectors"]
    return Source(**{k: v for k, v in fields.items() if v is not None})


@pytest.mark.parametrize("expected_path", EXPECTED, ids=[p.name.removesuffix(".expected.yaml") for p in EXPECTED])
def test_feed_fixture(expected_path: Path) -> None:
    spec = YAML(typ="safe").load(expected_path.read_text(encoding="utf-8"))
    source = _source(spec["source"])
    fetched = Fetched(url=source.url, status=200, content_type=spec.get("content_type", ""),
                      body=_fixture(expected_path).read_bytes())
    if spec.get("error"):
        with pytest.raises(ERRORS[spec["error"]]):
            parse(fetched, source)
        return
    parsed = parse(fetched, source)
    assert len(parsed.items) == spec["count"], [i.title for i in parsed.items]
    assert bool(parsed.warning) == bool(spec.get("bozo")), parsed.warning
    for got, want in zip(parsed.items, spec.get("items") or [], strict=False):
        _compare(got, want)


def _compare(item, want: dict) -> None:
    for key, value in want.items():
        if key == "summary_startswith":
            assert item.summary.startswith(value), (item.summary[:120], value)
        elif key == "published":
            assert iso(item.published) == value, (item.title, iso(item.published), value)
        else:
            assert getattr(item, key) == value, (key, getattr(item, key), value)


def test_every_fixture_has_an_expectation() -> None:
    bodies = {p.name.split(".")[0] for p in FEEDS.iterdir() if p.suffix in (".xml", ".rdf", ".atom", ".html", ".txt")}
    expected = {p.name.removesuffix(".expected.yaml") for p in EXPECTED}
    assert bodies <= expected, sorted(bodies - expected)
    assert len(EXPECTED) >= 15


def _feed_bodies() -> list[Path]:
    readable = [p for p in EXPECTED if not YAML(typ="safe").load(p.read_text(encoding="utf-8")).get("error")]
    fixtures = [_fixture(p) for p in readable if _fixture(p).suffix in (".xml", ".rdf", ".atom")]
    corpus = sorted(SHARED_FEEDS.glob("*")) if SHARED_FEEDS.is_dir() else []  # the real feeds, when present
    return fixtures + [p for p in corpus if p.suffix in (".rss", ".atom", ".xml", ".rdf")]


@pytest.mark.parametrize("body_path", _feed_bodies(), ids=lambda p: p.name)
def test_remembered_base_joins_parse_every_feed_the_same(body_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """parse/feed.py makes feedparser remember its URL joins; what it reads must not change."""
    assert hasattr(feedparser.mixin._urljoin, "cache_info"), "feedparser changed: the joins are no longer remembered"
    source = Source(id="fixture", url=f"https://example.org/feeds/{body_path.name}")
    fetched = Fetched(url=source.url, status=200, content_type="application/xml", body=body_path.read_bytes())
    with_cache = parse(fetched, source)
    for name in ("make_safe_absolute_uri", "_urljoin"):
        monkeypatch.setattr(feedparser.mixin, name, getattr(feedparser.urls, name))
    assert parse(fetched, source) == with_cache


def test_only_short_joins_are_remembered() -> None:
    """A hostile feed's huge links must not pile up in the join cache across polls."""
    from monitor.parse.feed import _remembered

    calls: list[tuple[str, str]] = []

    def join(base: str, rel: str) -> str:
        calls.append((base, rel))
        return base + rel

    remembered = _remembered(join)
    huge = "https://example.org/" + "x" * 5000
    answers = [remembered("https://example.org/", "a"), remembered("https://example.org/", "a"),
               remembered(huge, "a"), remembered(huge, "a")]
    assert answers == ["https://example.org/a"] * 2 + [huge + "a"] * 2
    assert len(calls) == 3 and remembered.cache_info().currsize == 1
