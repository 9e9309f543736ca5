"""Highlighting for the search page: which spans of a text the user's query (or a rule) hit.

Pure functions over plain strings. The output is a list of (text, marked) segments that the
template escapes one by one, so no markup is ever built from stored text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from monitor.match import snippet

Segment = tuple[str, bool]
Span = tuple[int, int]

_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\u3040-\u30ff\U00020000-\U0002fa1f"
_QUERY_TOKEN = re.compile(r'"[^"]*"?|[^\s()"]+')
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")
_OPERATORS = {"AND", "OR", "NOT"}
SNIPPET_WIDTH = 240


def segments(text: str, marks: Sequence[Span]) -> list[Segment]:
    """Split `text` at the marked spans (overlapping or out-of-range spans are tolerated)."""
    out: list[Segment] = []
    position = 0
    for start, end in sorted(marks):
        start, end = max(start, position), min(end, len(text))
        if start >= end:
            continue
        if start > position:
            out.append((text[position:start], False))
        out.append((text[start:end], True))
        position = end
    if position < len(text):
        out.append((text[position:], False))
    return out


def query_terms(query: str) -> list[tuple[str, bool]]:
    """The words and phrases of a full-text query as (term, is_prefix), operators and NOT-terms left out."""
    terms: list[tuple[str, bool]] = []
    negated = False
    for token in _QUERY_TOKEN.findall(query):
        if token in _OPERATORS or token.startswith("NEAR"):
            negated = token == "NOT"
            continue
        if not negated:
            bare = re.sub(r"^[\w-]+:(?=.)", "", token) if not token.startswith('"') else token
            prefix = bare.endswith("*")
            terms.append((bare.strip('"*^+-'), prefix))
        negated = False
    return [(t, p) for t, p in terms if _WORD.search(t)]


def term_pattern(query: str) -> re.Pattern[str] | None:
    """One regex finding any term of the query, case- and accent-insensitively (on folded text)."""
    alternatives = [_term_regex(fold(term), prefix) for term, prefix in query_terms(query)]
    alternatives = [a for a in alternatives if a]
    if not alternatives:
        return None
    return re.compile("|".join(sorted(alternatives, key=len, reverse=True)), re.IGNORECASE)


def _term_regex(term: str, prefix: bool) -> str:
    words = _WORD.findall(term)
    if not words:
        return ""
    body = ""
    for before, word in zip([None, *words], words, strict=False):
        if before is not None:
            body += r"\W*" if _is_cjk(before) or _is_cjk(word) else r"\W+"
        body += re.escape(word)
    lead = "" if _is_cjk(words[0]) else r"(?<!\w)"
    tail = r"\w*" if prefix else "" if _is_cjk(words[-1]) else r"(?!\w)"
    return lead + body + tail


def _is_cjk(word: str) -> bool:
    return bool(re.match(f"[{_CJK}]", word))


def fold(text: str) -> str:
    """Each character without its accents, keeping the length (so spans map back one to one)."""
    if text.isascii():
        return text
    return "".join(unicodedata.normalize("NFD", c)[0] for c in text)


def find_spans(text: str, pattern: re.Pattern[str] | None) -> list[Span]:
    if pattern is None:
        return []
    return [m.span() for m in pattern.finditer(fold(text)) if m.end() > m.start()]


def highlighted(text: str, pattern: re.Pattern[str] | None) -> list[Segment]:
    """The whole of `text` with the query's terms marked."""
    return segments(text, find_spans(text, pattern))


def excerpt(text: str, pattern: re.Pattern[str] | None, width: int = SNIPPET_WIDTH) -> list[Segment]:
    """About `width` characters around the first hit of the query (the start when none), marked."""
    cut, marks = snippet(text, find_spans(text, pattern), width)
    return segments(cut, marks)
