"""Every real feed in ../shared/corpus/feeds, served over HTTP and polled: each item stored, readable.

Skips cleanly when ../shared is absent (the corpus stays outside the repository).
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

from tests.conftest import SHARED_FEEDS, FeedFarm, run_cli, write_config

pytestmark = pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason="../shared/corpus/feeds is not present")
MOJIBAKE = re.compile("Ã.|Â.|Ð[\u0080-\u00bf]|â€")


def _feeds() -> list[Path]:
    return sorted(p for p in SHARED_FEEDS.iterdir() if p.suffix in (".rss", ".atom", ".xml", ".rdf"))


def _readable(title: str) -> bool:
    letters = [c for c in title if unicodedata.category(c).startswith("L")]
    return len(letters) >= 3 and "\ufffd" not in title and not MOJIBAKE.search(title)


def test_every_corpus_feed_is_stored_with_readable_titles(tmp_path: Path, farm: FeedFarm) -> None:
    import feedparser

    sources, expected = [], {}
    for path in _feeds():
        source_id = re.sub(r"[^a-z0-9]+", "-", path.stem.lower())
        sources.append({"id": source_id, "url": farm.add(f"/{path.name}", path.read_bytes(), "application/xml")})
        expected[source_id] = len({e.get("id") or e.get("link") for e in feedparser.parse(path.read_bytes()).entries})
    config = write_config(tmp_path / "sources.yaml", sources)
    args = ["--config", str(config), "--db", str(tmp_path / "dw.db")]
    result = run_cli(*args, "poll")
    assert result.returncode == 0 and f"{len(sources)} ok" in result.stdout, result.stdout + result.stderr

    items = [json.loads(line) for line in run_cli(*args, "search", "--format", "jsonl").stdout.splitlines()]
    stored: dict[str, int] = {}
    for item in items:
        stored[item["source"]] = stored.get(item["source"], 0) + 1
        assert _readable(item["title"]), (item["source"], item["title"])
        assert item["url"].startswith("http"), item
    assert stored == expected
    cyrillic = [i["title"] for i in items if i["source"].startswith("pravda")]
    assert cyrillic and all(re.search("[а-яА-ЯіїєґІЇЄҐ]", t) for t in cyrillic)
    assert any("Guaidó" in i["title"] for i in items if i["source"].startswith("bbc"))  # mojibake repaired
