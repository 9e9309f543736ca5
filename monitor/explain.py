"""`diplowatch rules test`: show which rules fire on a text and why, for people writing rules."""

from __future__ import annotations

from monitor.config import Config, Source
from monitor.errors import ParseError
from monitor.fetch import Fetcher
from monitor.models import Validators
from monitor.normalise import plain_text
from monitor.parse import parse
from monitor.store import Analysis


def explain_lines(title: str, text: str, analysis: Analysis, color: bool = False) -> list[str]:
    """Human-readable lines: each rule that fired, its topic, the terms and the highlighted snippet."""
    head = title or text[:80]
    lines = [f"== {head}"]
    lines.append(f"   countries: {', '.join(analysis.countries) or '-'}   orgs: {', '.join(analysis.orgs) or '-'}"
                 f"   type: {analysis.doc_type or '-'}")
    if not analysis.matches:
        lines.append("   no rule fired")
    for match in analysis.matches:
        terms = ", ".join(sorted({f"{h.term!r} ({h.field})" for h in match.hits}))
        lines.append(f"   ✔ {match.rule} [{match.topic}]: {terms}")
        lines.append(f"     {highlight(match.snippet, match.marks, color)}")
    return lines


def highlight(snippet: str, marks: tuple[tuple[int, int], ...], color: bool) -> str:
    """Wrap the marked spans in bold (terminal) or [[ ]] (plain output)."""
    start_mark, end_mark = ("\033[1;33m", "\033[0m") if color else ("[[", "]]")
    out, last = [], 0
    for start, end in sorted(marks):
        if start < last:
            continue
        out += [snippet[last:start], start_mark, snippet[start:end], end_mark]
        last = end
    out.append(snippet[last:])
    return "".join(out)


async def fetch_documents(config: Config, url: str) -> list[tuple[str, str, str | None]]:
    """The items of a feed or listing at `url`, or the text of a plain page."""
    source = Source(id="rules-test", url=url)
    async with Fetcher(config.settings) as fetcher:
        fetched = await fetcher.fetch(source, Validators())
    try:
        return [(i.title, i.summary, i.lang) for i in parse(fetched, source).items]
    except ParseError:
        return [("", plain_text(fetched.body.decode("utf-8", "replace")), None)]
