"""digest.py: building (grouping, newest first, one entry per statement) from the data cases in
tests/data/digest/cases/, and rendering that never lets feed content become markup."""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from digest_fixtures import DATA
from ruamel.yaml import YAML

from monitor.digest import (
    Digest,
    Segment,
    build_digest,
    clean,
    format_time,
    highlight,
    neighbour_window,
    one_line,
    render_html,
    render_text,
    safe_link,
)
from monitor.store.outbox import Neighbour, StoredItem, StoredMatch

CASES = sorted((DATA / "cases").glob("*.yaml"))
CREATED = "2026-11-28T07:00:00Z"
INVISIBLE = "\u202e\u202d\u2066\u2067\u2068\u2069\u200b\u200e\u200f\ufeff\u2060"


def load_case(path: Path) -> dict[str, Any]:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def stored_item(d: dict[str, Any]) -> StoredItem:
    snippet = d.get("snippet", "Statement at the OEWG on ICT security.")
    term = d.get("term", "OEWG")
    start = snippet.find(term)
    match = StoredMatch(d.get("rule", "oewg"), d.get("topic", "un-processes"), (term,), snippet,
                        ((start, start + len(term)),) if start >= 0 else (), d["sort_time"])
    return StoredItem(d["id"], d["source"], d.get("url", f"https://{d['source']}.example.org/{d['id']}"), d["title"],
                      d.get("published", d["sort_time"]), d["sort_time"], d["sort_time"], d.get("lang", "en"),
                      tuple(d.get("countries", ())), (), d.get("doc_type"), (match,))


def digest_of(path: Path) -> Digest:
    data = load_case(path)
    items = [stored_item(d) for d in data["items"]]
    neighbours = [Neighbour(n["id"], n["source"], n["url"], n["title"], n["sort_time"])
                  for n in data.get("neighbours", ())]
    return build_digest("dw-test", "desk", CREATED, items, neighbours)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_digest_case(path: Path) -> None:
    expected = load_case(path)["expected"]
    digest = digest_of(path)
    assert digest.subject == expected["subject"]
    got = [{"topic": g.topic, "entries": [_view(e, want) for e, want in zip(g.entries, w["entries"], strict=False)]}
           for g, w in zip(digest.groups, expected["groups"], strict=False)]
    assert got == expected["groups"]
    assert [len(g.entries) for g in digest.groups] == [len(g["entries"]) for g in expected["groups"]]


def _view(entry: Any, want: dict[str, Any]) -> dict[str, Any]:
    """The fields of `entry` that the expectation names."""
    values = {"title": entry.title, "url": entry.url, "item_ids": list(entry.item_ids),
              "also_reported": [r.source for r in entry.also_reported]}
    return {key: values[key] for key in want}


# -- rendering ---------------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


ALLOWED_TAGS = {"html", "head", "meta", "title", "body", "h1", "h2", "div", "a", "span", "mark", "p", "b"}


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_html_has_only_our_tags_and_http_links(path: Path) -> None:
    parser = _Tags()
    parser.feed(render_html(digest_of(path)))
    assert {tag for tag, _ in parser.tags} <= ALLOWED_TAGS
    for tag, attrs in parser.tags:
        assert not [name for name, _ in attrs if name.startswith("on") or name == "src"], tag
        href = dict(attrs).get("href")
        assert href is None or href.startswith(("http://", "https://"))


def test_a_script_title_arrives_as_escaped_text_in_html_and_as_itself_in_text() -> None:
    digest = digest_of(DATA / "cases" / "hostile_feed.yaml")
    html, text = render_html(digest), render_text(digest)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower() and "<img" not in html.lower() and "javascript:" not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "* <script>alert(1)</script>\n" in text
    assert "javascript:" not in text and "data:text" not in text


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_no_bidi_override_or_zero_width_character_survives(path: Path) -> None:
    digest = digest_of(path)
    for rendered in (render_html(digest), render_text(digest), digest.subject):
        assert not set(rendered) & set(INVISIBLE)


def test_the_html_marks_the_matched_terms_and_says_where_else_it_was_reported() -> None:
    html = render_html(digest_of(DATA / "cases" / "similar_titles_within_window.yaml"))
    assert "<mark>OEWG</mark>" in html
    assert 'Also reported by 2 sources:\n<a href="https://wire.example.org/q" rel="noopener noreferrer">' in html


def test_text_digest_reads_top_to_bottom() -> None:
    text = render_text(digest_of(DATA / "cases" / "groups_newest_first.yaml"))
    assert text.startswith("[diplowatch] desk: 4 items: un-processes (3), cybercrime-convention (1)\n\n")
    assert text.index("== un-processes (3) ==") < text.index("== cybercrime-convention (1) ==")
    assert "Rule oewg (OEWG): Statement at the [OEWG] on ICT security.\n" in text
    assert "https://mfa-example.example.org/2\n" in text
    assert "diplowatch digest dw-test for \"desk\"" in text


@pytest.mark.parametrize(("groups", "pending_after", "subject"), [
    (0, 0, "[diplowatch] desk: no new items"),
    (1, 0, "[diplowatch] desk: 1 item: t0 (1)"),
    (4, 0, "[diplowatch] desk: 4 items: t0 (1), t1 (1), t2 (1) and 1 more topic"),
    (5, 7, "[diplowatch] desk: 5 items: t0 (1), t1 (1), t2 (1) and 2 more topics (+7 in the next digest)"),
])
def test_subject_says_how_many_and_the_top_topics(groups: int, pending_after: int, subject: str) -> None:
    items = [stored_item({"id": n, "source": "s", "title": f"Title number {n}", "sort_time": "2026-11-22T09:00:00Z",
                          "topic": f"t{n}", "url": f"https://s.example.org/{n}"}) for n in range(groups)]
    digest = build_digest("dw-x", "desk", CREATED, items, pending_after=pending_after)
    assert digest.subject == subject


def test_an_empty_digest_says_so() -> None:
    digest = build_digest("dw-x", "desk", CREATED, [])
    assert "No new items" in render_text(digest) and "No new items" in render_html(digest)
    assert digest.window_start == digest.window_end == datetime(2026, 11, 28, 7, tzinfo=UTC)


# -- the small pure functions ------------------------------------------------------------------


@pytest.mark.parametrize(("url", "safe"), [
    ("https://mfa.example.org/a?b=1", True),
    ("http://mfa.example.org/", True),
    ("HTTPS://MFA.EXAMPLE.ORG/x", True),
    ("javascript:alert(1)", False),
    ("JavaScript:alert(1)", False),
    (" javascript:alert(1)", False),
    ("data:text/html,<b>x</b>", False),
    ("vbscript:msgbox", False),
    ("//evil.example.org/x", False),
    ("/relative/path", False),
    ("https://evil.example.org/\u202egnp", False),
    ('https://evil.example.org/"onmouseover="x', False),
    ("https://evil.example.org/a b", False),
    ("https:///no-host", False),
    ("", False),
    (None, False),
])
def test_safe_link(url: str | None, safe: bool) -> None:
    assert safe_link(url) == (url if safe else None)


@pytest.mark.parametrize(("raw", "expected"), [
    ("plain", "plain"),
    ("a\u202eb\u202cc", "abc"),
    ("zero\u200bwidth\ufeff", "zerowidth"),
    ("\u2066isolate\u2069", "isolate"),
    ("bell\x07 and \x1b[31mescape", "bell and [31mescape"),
    ("می\u200cخواهد", "می\u200cخواهد"),  # Persian ZWNJ inside a word is spelling: kept
    ("stray \u200d joiner", "stray  joiner"),
])
def test_clean(raw: str, expected: str) -> None:
    assert clean(raw) == expected


def test_one_line_folds_newlines_and_cuts_long_text() -> None:
    assert one_line("a\n b\u2028c\td") == "a b c d"
    assert one_line("x" * 50, 10) == "x" * 9 + "…"


@pytest.mark.parametrize(("snippet", "marks", "segments"), [
    ("the OEWG met", [(4, 8)], [("the ", False), ("OEWG", True), (" met", False)]),
    ("OEWG and OEWG", [(9, 13), (0, 4)], [("OEWG", True), (" and ", False), ("OEWG", True)]),
    ("overlap here", [(0, 7), (4, 12)], [("overlap", True), (" here", True)]),
    ("out of range", [(50, 60), (-3, 3)], [("out", True), (" of range", False)]),
    ("  padded\nsnippet  ", [], [("padded snippet", False)]),
    ("bi\u202edi", [(0, 5)], [("bidi", True)]),
])
def test_highlight(snippet: str, marks: list[tuple[int, int]], segments: list[tuple[str, bool]]) -> None:
    assert highlight(snippet, marks) == tuple(Segment(t, m) for t, m in segments)


def test_times_are_shown_in_the_subscription_time_zone() -> None:
    assert format_time("2026-11-23T06:00:00Z", "Europe/Zurich") == "2026-11-23 07:00 CET"
    assert format_time("2026-07-01T06:00:00Z", "Europe/Zurich") == "2026-07-01 08:00 CEST"
    assert format_time(None) == ""


def test_neighbours_are_looked_for_three_days_around_the_items() -> None:
    items = [stored_item({"id": 1, "source": "s", "title": "t", "sort_time": "2026-11-22T09:00:00Z"}),
             stored_item({"id": 2, "source": "s", "title": "t", "sort_time": "2026-11-24T09:00:00Z"})]
    assert neighbour_window(items) == ("2026-11-19T09:00:00Z", "2026-11-27T09:00:00Z")
    assert neighbour_window([]) is None
