"""The rule engine: compile watch rules once, then match documents against them.

A term (one string in `any`, `all` or `none`) is one of:

    word            a whole word                        OEWG
    a phrase        words in sequence; any spaces or    "open-ended working group"
                    punctuation between them
    prefix*         words starting so, never inside     pirat*  (not "respirators")
                    a word; `*` may also stand inside   cyber*diplom*
    /regex/         Python regex searched in the        /\\bict4?s?\\b/
                    folded text (see below)
    a | b | c       alternatives counted as ONE term    cyber* | "information security"

Matching runs on folded text: NFKC, casefolded, accents stripped (see textnorm). Text in
scripts without spaces (Chinese, Japanese, Thai) and Hangul matches as substrings. The
first word of an Arabic term may carry the clitics و ف ب ك ل and the article ال.

Pure functions and frozen data: no I/O, no SQL, no state shared between matchers.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise

from monitor.textnorm import (
    MARKS,
    SUBSTRING,
    Normaliser,
    NormText,
    WordPositions,
    continues_word,
    fold,
    is_substring_script,
    token_at,
)

FIELDS = ("title", "text")
SNIPPET_WIDTH = 200

_TERM_TOKEN = re.compile(f"[{SUBSTRING}]\\*?|(?:[^\\W{SUBSTRING}]|[{MARKS}]|\\*)+")
_WORD_GAP = r"\W{1,8}"  # between two words of a phrase
_SCRIPT_GAP = r"\W{0,8}"  # between a word and a CJK character, or two CJK characters
_WILDCARD = f"(?:\\w|[{MARKS}])*"  # no CJK exclusion here: small classes keep compiling fast
_ARABIC_LEAD = "(?:[وف]?[بكل]?(?:ال)?|[وف]?لل)"  # conjunction, preposition, article
_ARABIC_CLITICS = frozenset("وفبكلا")
_PREFIX_KEY = 3  # wildcard prefixes are bucketed by their first characters
_WHITESPACE = re.compile(r"\s")


class RuleError(ValueError):
    """A watch rule or one of its terms is invalid; the message names both and the fix."""


@dataclass(frozen=True)
class WatchRule:
    name: str
    topic: str
    any: tuple[str, ...] = ()
    all: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    near: int | None = None
    fields: tuple[str, ...] = FIELDS
    sources: tuple[str, ...] = ()
    source_tags: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    langs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Document:
    title: str
    text: str
    lang: str | None = None
    source: str = ""
    source_tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Hit:
    term: str
    field: str
    start: int
    end: int


@dataclass(frozen=True)
class Match:
    rule: str
    topic: str
    hits: tuple[Hit, ...]
    snippet: str
    marks: tuple[tuple[int, int], ...]


# ---------------------------------------------------------------- compiling terms


class _TermProblem(ValueError):
    """What is wrong with one alternative of a term, and how to fix it."""


@dataclass(frozen=True)
class _Alt:
    """One compiled alternative: a pattern tried where its anchor word starts."""

    key: str
    pattern: re.Pattern[str]
    anchor: str | None  # None: a /regex/, searched through the whole text
    prefix: bool = False
    bounded: bool = False  # must end at a word end (checked after matching)


def _alternatives(term: str) -> list[str]:
    stripped = term.strip()
    if _is_regex(stripped):
        return [stripped]
    return [part.strip() for part in stripped.split("|")]


def _is_regex(text: str) -> bool:
    return len(text) >= 2 and text.startswith("/") and text.endswith("/")


def _compile_alt(text: str) -> _Alt:
    if not text:
        raise _TermProblem("is empty; write a word, a phrase, prefix* or /regex/")
    if _is_regex(text):
        return _compile_regex(text[1:-1])
    return _compile_words(_unquote(text))


def _unquote(text: str) -> str:
    for left, right in ('""', "“”", "«»"):
        if len(text) >= 2 and text[0] == left and text[-1] == right:
            return text[1:-1]
    return text


def _compile_regex(body: str) -> _Alt:
    if not body:
        raise _TermProblem("is an empty /regex/; put a pattern between the slashes")
    try:
        pattern = re.compile(body, re.IGNORECASE)
    except re.error as exc:
        raise _TermProblem(f"is not a valid regex ({exc}); fix the pattern or escape it") from None
    if pattern.search("") is not None:
        raise _TermProblem("matches empty text, so it would fire everywhere; make it match something")
    return _Alt(f"re:{body}", pattern, None)


def _compile_words(text: str) -> _Alt:
    folded = fold(text)
    pieces = list(_TERM_TOKEN.finditer(folded))
    if not pieces:
        raise _TermProblem("has no letters or digits; write a word, a phrase, prefix* or /regex/")
    words = [piece.group() for piece in pieces]
    if any(word.startswith("*") for word in words):
        raise _TermProblem("has a `*` that follows no letter; write prefix* (or use a /regex/)")
    anchor, lead = _anchor(words[0])
    parts = [lead]
    for before, after in pairwise(pieces):
        parts.append(_gap(before.group(), after.group(), folded[before.end() : after.start()]))
        parts.append(_inner_pattern(after.group()))
    pattern = "".join(parts)
    bounded = not is_substring_script(words[-1][0])
    return _Alt(f"words:{pattern}:{bounded}", re.compile(pattern), anchor.split("*")[0], "*" in anchor, bounded)


def _anchor(word: str) -> tuple[str, str]:
    """The first word's index key, and its pattern (Arabic: clitics and article allowed)."""
    if not "\u0600" <= word[0] <= "\u06ff":
        return word.rstrip("*") if is_substring_script(word[0]) else word, _word_pattern(word)
    if word.startswith("ال") and len(word.rstrip("*")) > 3:
        return word[2:], _ARABIC_LEAD + "(?:ال)?" + _word_pattern(word[2:])
    return word, _ARABIC_LEAD + _word_pattern(word)


def _inner_pattern(word: str) -> str:
    """A later word of a phrase; Arabic adjectives agree in definiteness, so ال is optional."""
    if "\u0600" <= word[0] <= "\u06ff" and word.startswith("ال") and len(word.rstrip("*")) > 3:
        return "(?:ال){0,2}" + _word_pattern(word[2:])  # إل folds to ال: root or article
    return _word_pattern(word)


def _word_pattern(word: str) -> str:
    if is_substring_script(word[0]):
        return re.escape(word.rstrip("*"))
    return "".join(_WILDCARD if char == "*" else re.escape(char) for char in word)


def _gap(before: str, after: str, between: str) -> str:
    if not between:
        return ""
    if is_substring_script(before[0]) or is_substring_script(after[0]):
        return _SCRIPT_GAP
    return _WORD_GAP


# ---------------------------------------------------------------- finding terms


@dataclass(frozen=True)
class _Index:
    """Alternatives by the word they start with, so a text is scanned once, word by word."""

    alts: tuple[_Alt, ...]
    words: Mapping[str, tuple[int, ...]]
    prefixes: Mapping[str, tuple[tuple[str, int], ...]]
    short_prefix_lengths: tuple[int, ...]
    searched: tuple[int, ...]

    @classmethod
    def build(cls, alts: Sequence[_Alt]) -> _Index:
        words: dict[str, list[int]] = {}
        prefixes: dict[str, list[tuple[str, int]]] = {}
        for number, alt in enumerate(alts):
            if alt.anchor is not None and alt.prefix:
                prefixes.setdefault(alt.anchor[:_PREFIX_KEY], []).append((alt.anchor, number))
            elif alt.anchor is not None:
                words.setdefault(alt.anchor, []).append(number)
        short = {len(key) for key in prefixes if len(key) < _PREFIX_KEY}
        return cls(
            tuple(alts),
            {word: tuple(numbers) for word, numbers in words.items()},
            {key: tuple(entries) for key, entries in prefixes.items()},
            tuple(sorted(short)),
            tuple(number for number, alt in enumerate(alts) if alt.anchor is None),
        )

    def candidates(self, token: str) -> list[int]:
        found = list(self.words.get(token, ()))
        for key in (token[:_PREFIX_KEY], *(token[:n] for n in self.short_prefix_lengths)):
            found.extend(n for prefix, n in self.prefixes.get(key, ()) if token.startswith(prefix))
        return found

    def token_candidates(self, token: str) -> tuple[int, ...]:
        """Alternatives that may start at a token (Arabic: also after its clitics)."""
        if not "\u0600" <= token[0] <= "\u06ff":
            return tuple(self.candidates(token))
        found: list[int] = []
        for cut in range(max(1, min(7, len(token) - 1))):
            if cut and token[cut - 1] not in _ARABIC_CLITICS:
                break
            found.extend(self.candidates(token[cut:]))
        return tuple(dict.fromkeys(found))


class _Scanner:
    """Finds every alternative in folded text.

    One trie-shaped regex finds, at C speed, the words where some alternative may start
    (an Aho-Corasick-like pass); only there are the alternatives' own patterns tried.
    """

    MEMO_LIMIT = 500_000  # distinct words remembered before the memo starts afresh

    def __init__(self, index: _Index) -> None:
        self.index = index
        self.patterns = tuple(alt.pattern for alt in index.alts)
        self.bounded = tuple(alt.bounded for alt in index.alts)
        self.anchors = _anchor_regexes(index.alts)
        self.memo: dict[str, tuple[int, ...]] = {}

    def scan(self, text: str) -> dict[int, list[tuple[int, int]]]:
        """number of alternative -> its spans in `text`."""
        found: dict[int, list[tuple[int, int]]] = {}
        memo, patterns = self.memo, self.patterns
        regexes = self.anchors if not text.isascii() else self.anchors[:1]
        starts = (anchor.start() for regex in regexes for anchor in regex.finditer(text))
        for start in starts:
            word = token_at(text, start)
            numbers = memo.get(word)
            if numbers is None:
                numbers = self._remember(word)
            for number in numbers:
                hit = patterns[number].match(text, start)
                if hit is not None and not (self.bounded[number] and continues_word(text, hit.end())):
                    _record(found, number, hit.span())
        for number in self.index.searched:
            for hit in patterns[number].finditer(text):
                if hit.end() > hit.start():
                    _record(found, number, hit.span())
        return found

    def _remember(self, word: str) -> tuple[int, ...]:
        if len(self.memo) >= self.MEMO_LIMIT:
            self.memo.clear()
        numbers = self.memo[word] = self.index.token_candidates(word)
        return numbers


def _anchor_regexes(alts: Sequence[_Alt]) -> tuple[re.Pattern[str], ...]:
    """Regexes matching where some alternative may begin: spaced words, Arabic, CJK & co.

    Each starts with a lookahead on the possible first characters, which lets the regex
    engine skip all other positions quickly.
    """
    spaced: set[str] = set()
    arabic: set[str] = set()
    chars: set[str] = set()
    for alt in alts:
        if alt.anchor is not None and is_substring_script(alt.anchor[0]):
            chars.add(alt.anchor[0])
        elif alt.anchor is not None:
            (arabic if "\u0600" <= alt.anchor[0] <= "\u06ff" else spaced).add(alt.anchor)
    regexes = []
    if spaced:
        regexes.append(_word_start({w[0] for w in spaced}) + _trie(spaced))
    if arabic:
        regexes.append(_word_start({w[0] for w in arabic} | _ARABIC_CLITICS) + "[وفبكلا]{0,6}" + _trie(arabic))
    if chars:
        regexes.append(_char_class(chars))
    return tuple(re.compile(regex) for regex in regexes)


def _word_start(first_chars: set[str]) -> str:
    return f"(?={_char_class(first_chars)})(?<![^\\W{SUBSTRING}])(?<![{MARKS}])"


def _char_class(chars: set[str]) -> str:
    return "[" + "".join(re.escape(char) for char in sorted(chars)) + "]"


def _trie(words: Iterable[str]) -> str:
    """Regex of a trie of `words`, each matching any word it begins (a superset is fine:
    the candidates are checked word by word afterwards)."""
    root: dict[str, dict] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}
    return _trie_node(root)


def _trie_node(node: dict[str, dict]) -> str:
    if "" in node:
        return ""
    branches = [re.escape(char) + _trie_node(child) for char, child in sorted(node.items())]
    if len(branches) == 1:
        return branches[0]
    if all(len(branch) == 1 for branch in branches):
        return "[" + "".join(branches) + "]"
    return "(?:" + "|".join(branches) + ")"


def _record(found: dict[int, list[tuple[int, int]]], number: int, span: tuple[int, int]) -> None:
    spans = found.setdefault(number, [])
    if span not in spans:
        spans.append(span)


class _FieldScan:
    """One field of one document: its folded text and where each alternative occurs."""

    def __init__(self, norm: NormText, hits: dict[int, list[tuple[int, int]]]) -> None:
        self.norm = norm
        self.hits = hits

    @cached_property
    def positions(self) -> WordPositions:
        return WordPositions(self.norm.text)

    def word_spans(self, numbers: frozenset[int], offset: float) -> list[tuple[float, float]]:
        """(first word, last word) of each hit of `numbers`, shifted by `offset` words."""
        positions = self.positions
        spans = (span for n, found in self.hits.items() if n in numbers for span in found)
        return [(positions.first(s) + offset, positions.last(e) + offset) for s, e in spans]


# ---------------------------------------------------------------- compiling rules


@dataclass(frozen=True)
class _Rule:
    """A rule with its terms turned into sets of alternative numbers."""

    rule: WatchRule
    any: tuple[frozenset[int], ...]
    all: tuple[frozenset[int], ...]
    none: tuple[frozenset[int], ...]
    written: Mapping[int, str]  # alternative number -> the alternative as written
    tag_groups: tuple[tuple[str, frozenset[str]], ...]
    langs: frozenset[str]

    @cached_property
    def trigger(self) -> frozenset[int]:
        """Alternatives of which one must occur for the rule to fire: `any`, else all[0]."""
        return frozenset().union(*self.any) if self.any else self.all[0]

    @cached_property
    def near_groups(self) -> tuple[frozenset[int], ...]:
        """One group per `all` term, plus one for the `any` terms together."""
        return ((self.trigger,) if self.any else ()) + self.all


@dataclass
class _Compiler:
    """Collects alternatives across rules, sharing the ones written alike."""

    alts: list[_Alt] = field(default_factory=list)
    numbers: dict[str, int] = field(default_factory=dict)  # pattern key -> number
    written: dict[str, int] = field(default_factory=dict)  # alternative as written -> number

    def rule(self, rule: WatchRule) -> _Rule:
        _check_rule(rule)
        written: dict[int, str] = {}
        terms = {key: self._terms(rule, key, written) for key in ("any", "all", "none")}
        tags: dict[str, set[str]] = {}
        for key, value in rule.source_tags:
            tags.setdefault(key.casefold(), set()).add(value.casefold())
        return _Rule(
            rule, terms["any"], terms["all"], terms["none"], written,
            tuple((key, frozenset(values)) for key, values in tags.items()),
            frozenset(lang.casefold() for lang in rule.langs),
        )

    def _terms(self, rule: WatchRule, key: str, written: dict[int, str]) -> tuple[frozenset[int], ...]:
        terms = getattr(rule, key)
        if isinstance(terms, str):
            raise RuleError(f"rule {rule.name!r}: `{key}` must be a list of terms, not one string")
        result = []
        for term in terms:
            numbers = self._term(rule, key, term)
            for number, alternative in numbers:
                if key != "none":
                    written.setdefault(number, alternative)
            result.append(frozenset(number for number, _ in numbers))
        return tuple(result)

    def _term(self, rule: WatchRule, key: str, term: object) -> list[tuple[int, str]]:
        if not isinstance(term, str):
            raise RuleError(f"rule {rule.name!r}: term {term!r} in `{key}` is not text; quote it")
        try:
            return [(self._number(alt), alt) for alt in _alternatives(term)]
        except _TermProblem as problem:
            raise RuleError(f"rule {rule.name!r}: term {term!r} in `{key}` {problem}") from None

    def _number(self, text: str) -> int:
        if text not in self.written:
            alt = _compile_alt(text)
            if alt.key not in self.numbers:
                self.numbers[alt.key] = len(self.alts)
                self.alts.append(alt)
            self.written[text] = self.numbers[alt.key]
        return self.written[text]


def _check_rule(rule: WatchRule) -> None:
    name = rule.name
    if not isinstance(name, str) or not name.strip():
        raise RuleError(f"a rule has no name (topic {rule.topic!r}); give every rule a `name`")
    if not rule.any and not rule.all:
        raise RuleError(f"rule {name!r} has no `any` and no `all` terms; add the terms it looks for")
    if rule.near is not None and (isinstance(rule.near, bool) or not isinstance(rule.near, int) or rule.near < 1):
        raise RuleError(f"rule {name!r}: `near` is {rule.near!r}; it must be a whole number of words >= 1")
    unknown = [f for f in rule.fields if f not in FIELDS]
    if unknown or not rule.fields:
        raise RuleError(f"rule {name!r}: unknown field(s) {unknown or '(none given)'}; use title and/or text")


def compile_rules(rules: Iterable[WatchRule]) -> Matcher:
    """Check and compile rules once; raises RuleError naming the rule and term at fault."""
    compiler = _Compiler()
    compiled: list[_Rule] = []
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise RuleError(f"rule {rule.name!r} is defined twice; give each rule its own name")
        seen.add(rule.name)
        compiled.append(compiler.rule(rule))
    return Matcher(tuple(compiled), _Index.build(compiler.alts))


# ---------------------------------------------------------------- matching


class Matcher:
    """Compiled rules; `match(doc)` lists the rules a document fires, in rule order."""

    def __init__(self, compiled: tuple[_Rule, ...], index: _Index) -> None:
        self.rules: tuple[WatchRule, ...] = tuple(c.rule for c in compiled)
        self._compiled = compiled
        self._scanner = _Scanner(index)
        self._normalise = Normaliser()
        self._fields = tuple(f for f in FIELDS if any(f in c.rule.fields for c in compiled))
        by_alt: dict[int, set[int]] = {}
        for number, c in enumerate(compiled):
            for alt in c.trigger:
                by_alt.setdefault(alt, set()).add(number)
        self._rules_by_alt = {alt: frozenset(rules) for alt, rules in by_alt.items()}

    def match(self, doc: Document) -> list[Match]:
        scans = {f: self._scan(getattr(doc, f) or "") for f in self._fields}
        candidates: set[int] = set()
        for scan in scans.values():
            for alt in scan.hits:
                candidates.update(self._rules_by_alt.get(alt, ()))
        results = (_evaluate(self._compiled[n], doc, scans) for n in sorted(candidates))
        return [result for result in results if result is not None]

    def _scan(self, text: str) -> _FieldScan:
        norm = self._normalise(text)
        return _FieldScan(norm, self._scanner.scan(norm.text))


def _evaluate(rule: _Rule, doc: Document, scans: Mapping[str, _FieldScan]) -> Match | None:
    fields = [scans[f] for f in rule.rule.fields]
    fired: set[int] = set().union(*(scan.hits for scan in fields))
    if not (_in_scope(rule, doc) and _terms_fire(rule, fired)):
        return None
    if rule.rule.near is not None and not _near(rule, fields, rule.rule.near):
        return None
    return _build_match(rule, doc, scans)


def _in_scope(rule: _Rule, doc: Document) -> bool:
    if rule.rule.sources and doc.source not in rule.rule.sources:
        return False
    if rule.langs and doc.lang and not _lang_in(doc.lang, rule.langs):
        return False  # an item of unknown language stays in scope: recall first
    doc_tags = {(key.casefold(), value.casefold()) for key, value in doc.source_tags}
    return all(any((key, value) in doc_tags for value in values) for key, values in rule.tag_groups)


def _lang_in(lang: str, langs: frozenset[str]) -> bool:
    lang = lang.casefold().replace("_", "-")
    return lang in langs or lang.split("-")[0] in langs


def _terms_fire(rule: _Rule, fired: set[int]) -> bool:
    if rule.any and all(term.isdisjoint(fired) for term in rule.any):
        return False
    if any(term.isdisjoint(fired) for term in rule.all):
        return False
    return all(term.isdisjoint(fired) for term in rule.none)


def _near(rule: _Rule, fields: Sequence[_FieldScan], distance: int) -> bool:
    """True if one hit of each `all` term and of one `any` term stand within `distance` words.

    The fields are read as one text, title first: a title is followed by its text.
    """
    placed, offset = [], 0.0
    for scan in fields:
        placed.append((scan, offset))
        offset += scan.positions.length + 1
    if offset - 1 <= distance:
        return True  # the whole passage is shorter than the distance (terms_fire checked the rest)
    spans = [[span for scan, at in placed for span in scan.word_spans(g, at)] for g in rule.near_groups]
    if not all(spans):
        return False
    tables = [_by_last_word(group) for group in spans]
    for threshold in sorted({last for group in spans for _, last in group}):
        if all(_first_word_after(table, threshold) <= threshold + distance for table in tables):
            return True
    return False


def _by_last_word(spans: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Spans sorted by last word, with the smallest first word from each index onwards."""
    ordered = sorted(spans, key=lambda span: span[1])
    firsts = [first for first, _ in ordered]
    for index in range(len(firsts) - 2, -1, -1):
        firsts[index] = min(firsts[index], firsts[index + 1])
    return [last for _, last in ordered], firsts


def _first_word_after(table: tuple[list[float], list[float]], threshold: float) -> float:
    """The earliest first word among spans whose last word is at or after `threshold`."""
    lasts, firsts = table
    index = bisect_left(lasts, threshold)
    return firsts[index] if index < len(firsts) else float("inf")


def _build_match(rule: _Rule, doc: Document, scans: Mapping[str, _FieldScan]) -> Match:
    hits = _hits(rule, scans)
    shown = "text" if any(hit.field == "text" for hit in hits) else "title"
    spans = [(hit.start, hit.end) for hit in hits if hit.field == shown]
    text, marks = snippet(getattr(doc, shown) or "", spans)
    return Match(rule.rule.name, rule.rule.topic, hits, text, marks)


def _hits(rule: _Rule, scans: Mapping[str, _FieldScan]) -> tuple[Hit, ...]:
    hits: dict[tuple[str, int, int], Hit] = {}
    for name in (f for f in FIELDS if f in rule.rule.fields):
        scan = scans[name]
        for number, found in scan.hits.items():
            written = rule.written.get(number)
            for start, end in found if written is not None else ():
                begin, finish = scan.norm.span(start, end)
                hits.setdefault((name, begin, finish), Hit(written, name, begin, finish))
    order = sorted(hits, key=lambda key: (FIELDS.index(key[0]), key[1], key[2]))
    return tuple(hits[key] for key in order)


def snippet(
    text: str, spans: Sequence[tuple[int, int]], width: int = SNIPPET_WIDTH
) -> tuple[str, tuple[tuple[int, int], ...]]:
    """About `width` characters of `text` around the first span, "…" where cut, and marks."""
    first, first_end = min(spans, default=(0, 0))
    start = max(0, min(first - width // 4, len(text) - width))
    end = min(len(text), max(start + width, first_end))
    start, end = _snap_start(text, start, first), _snap_end(text, end, first_end)
    lead = "…" if start > 0 else ""
    tail = "…" if end < len(text) else ""
    body = _WHITESPACE.sub(" ", text[start:end])
    shift = len(lead) - start
    marks = tuple(
        (s + shift, e + shift) for s, e in sorted(spans) if s >= start and e <= end
    )
    return lead + body + tail, marks


def _snap_start(text: str, start: int, limit: int) -> int:
    """Move a cut forward to the next word start (not past `limit`)."""
    if start > 0 and not text[start - 1].isspace():
        space = text.find(" ", start, min(start + 20, limit))
        start = space + 1 if space >= 0 else start
    while start < limit and text[start].isspace():
        start += 1
    return start


def _snap_end(text: str, end: int, limit: int) -> int:
    """Move a cut back to the end of the last whole word (not before `limit`)."""
    if end < len(text) and not text[end].isspace():
        space = text.rfind(" ", max(limit, end - 20), end)
        end = space if space > 0 else end
    while end > limit and text[end - 1].isspace():
        end -= 1
    return end
