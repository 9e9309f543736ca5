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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from operator import itemgetter

from monitor.textnorm import (
    MARKS,
    SUBSTRING,
    WORD,
    WORD_CHAR,
    Normaliser,
    NormText,
    WordPositions,
    continues_word,
    is_substring_script,
)

FIELDS = ("title", "text")
SNIPPET_WIDTH = 200

_TERM_TOKEN = re.compile(f"[{SUBSTRING}]\\*?|(?:[^\\W{SUBSTRING}]|[{MARKS}]|\\*)+")
_WORD_GAP = r"\W{1,8}"  # between two words of a phrase
_SCRIPT_GAP = r"\W{0,8}"  # between a word and a CJK character, or two CJK characters
_WILDCARD = f"(?:\\w|[{MARKS}])*"  # no CJK exclusion here: small classes keep compiling fast
# The wildcard on texts without marks: the same matches, and ~10x cheaper to compile (see _Alt).
_PLAIN_WILDCARD = r"\w*"
_ARABIC_LEAD = "(?:[وف]?[بكل]?(?:ال)?|[وف]?لل)"  # conjunction, preposition, article
_ARABIC_CLITICS = frozenset("وفبكلا")
_PREFIX_KEY = 3  # wildcard prefixes are bucketed by their first characters
_WHITESPACE = re.compile(r"\s")
_MARK = re.compile(f"[{MARKS}]")
_ARABIC_LETTER = re.compile("[\u0600-\u06ff]")
_ASCII_WORD_CHAR = "[A-Za-z0-9_]"  # what \w is on ASCII text
# A letter or mark outside ASCII: where there is none, word boundaries are ASCII ones.
_NON_ASCII_LETTER = re.compile(f"[^\\W\\x00-\\x7f]|[{MARKS}]")
# Captures the word after an anchor word (after what is not a letter of a spaced script).
_NEXT_WORD = f"(?=[\\W{SUBSTRING}]*([^\\W{SUBSTRING}]*))"
_LETTERS = re.compile(f"[^\\W{SUBSTRING}]+")


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
    """One compiled alternative: a pattern tried where its anchor word starts.

    A word pattern is compiled by the scanner the first time it is tried: compiling the
    thousands of a pack up front cost most of the start-up, and most are rarely tried.
    `source` serves texts without marks (MARKS), nearly all: there a wildcard needs no mark
    class, whose compiling costs ~0.5 ms per pattern. Texts with marks use `marked`.
    """

    key: str
    source: str
    anchor: str | None  # None: a /regex/, searched through the whole text
    prefix: bool = False
    bounded: bool = False  # must end at a word end (checked after matching)
    follow: str = ""  # CJK & co.: the character that must follow the anchor character, if known
    marked: str = ""  # the pattern's source for texts with marks; "" when `source` serves them too
    single: bool = False  # one word, no `*`, not Arabic: found exactly where its anchor is a whole word
    second: str = ""  # how the word after the anchor word must begin, when that is known (see _second)
    pattern: re.Pattern[str] | None = None  # a /regex/, compiled (and checked) with its rule


def _alternatives(term: str) -> list[str]:
    stripped = term.strip()
    if _is_regex(stripped):
        return [stripped]
    return [part.strip() for part in stripped.split("|")]


def _is_regex(text: str) -> bool:
    return len(text) >= 2 and text.startswith("/") and text.endswith("/")


def _compile_alt(text: str, fold: Callable[[str], str]) -> _Alt:
    if not text:
        raise _TermProblem("is empty; write a word, a phrase, prefix* or /regex/")
    if _is_regex(text):
        return _compile_regex(text[1:-1])
    return _compile_words(_unquote(text), fold)


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
    return _Alt(f"re:{body}", body, None, pattern=pattern)


def _compile_words(text: str, fold: Callable[[str], str]) -> _Alt:
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
    plain = pattern.replace(_WILDCARD, _PLAIN_WILDCARD)  # other parts are escaped: no false hit
    bounded = not is_substring_script(words[-1][0])
    single = len(words) == 1 and bounded and "*" not in anchor and not "\u0600" <= anchor[0] <= "\u06ff"
    return _Alt(
        f"words:{pattern}:{bounded}", plain, anchor.split("*")[0], "*" in anchor, bounded,
        _follow(pieces), pattern if plain != pattern else "", single, _second(pieces, folded),
    )


def _follow(pieces: Sequence[re.Match[str]]) -> str:
    """For a term starting with two adjacent substring-script characters, the second one."""
    if len(pieces) < 2 or pieces[0].end() != pieces[1].start():
        return ""
    first, second = pieces[0].group(), pieces[1].group()
    return second[0] if is_substring_script(first[0]) and is_substring_script(second[0]) else ""


def _second(pieces: Sequence[re.Match[str]], folded: str) -> str:
    """The letters a phrase's second word starts with, when the first word has no `*` and only
    a word gap separates them: the text's next word after the anchor must then start so."""
    if len(pieces) < 2 or "*" in pieces[0].group():
        return ""
    first, second = pieces[0].group(), pieces[1].group()
    if _gap(first, second, folded[pieces[0].end() : pieces[1].start()]) != _WORD_GAP:
        return ""
    if _inner_pattern(second) != _word_pattern(second):
        return ""  # an Arabic word with an optional article
    letters = second.split("*")[0]
    return letters if _LETTERS.fullmatch(letters) else ""


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
    (an Aho-Corasick-like pass) and yields each of them whole, with the word after it; only
    there are the alternatives' own patterns tried. Substring scripts (CJK & co.) have no
    words: there, the first two characters pick the candidates.

    The memo and the lazily compiled patterns are the only state; both are filled with
    values that do not depend on the text, so threads sharing a scanner at worst compute
    one twice.
    """

    MEMO_LIMIT = 500_000  # distinct words remembered before the memo starts afresh

    def __init__(self, index: _Index) -> None:
        self.index = index
        # Compiled patterns, filled on first use; texts with marks have their own (see _Alt).
        self.patterns: list[re.Pattern[str] | None] = [alt.pattern for alt in index.alts]
        self.marked_patterns: list[re.Pattern[str] | None] = [alt.pattern for alt in index.alts]
        self.searched = [(n, regex) for n in index.searched if (regex := index.alts[n].pattern) is not None]
        self.bounded = tuple(alt.bounded for alt in index.alts)
        self.words_regex, self.arabic_regex, self.chars_regex = _anchor_regexes(index.alts)
        self.ascii_words_regex = _ascii_words_regex(index.alts)
        self.memo: dict[str, _Plan] = {}

    def scan(self, text: str) -> dict[int, list[tuple[int, int]]]:
        """number of alternative -> its spans in `text`."""
        found: dict[int, list[tuple[int, int]]] = {}
        ascii_letters = text.isascii() or _NON_ASCII_LETTER.search(text) is None
        marked = not ascii_letters and _MARK.search(text) is not None
        patterns = self.marked_patterns if marked else self.patterns
        self._scan_words(text, self.ascii_words_regex if ascii_letters else self.words_regex, patterns, found, marked)
        if not ascii_letters:  # else no Arabic, no substring script
            if self.arabic_regex is not None and _ARABIC_LETTER.search(text) is not None:
                self._scan_words(text, self.arabic_regex, patterns, found, marked)
            self._scan_chars(text, patterns, found, marked)
        for number, regex in self.searched:
            for hit in regex.finditer(text):
                if hit.end() > hit.start():
                    _record(found, number, hit.span())
        return found

    def _scan_words(
        self,
        text: str,
        regex: re.Pattern[str] | None,
        patterns: Sequence[re.Pattern[str] | None],
        found: dict[int, list[tuple[int, int]]],
        marked: bool,
    ) -> None:
        """Record the candidates that match at the words `regex` finds.

        Two shortcuts spare most pattern calls: a single word is there when it is the whole
        word; a phrase whose second word is known needs the next word (group 1) to start so
        (texts with marks excepted: their words may hold marks that the gap between words skips)."""
        memo, bounded = self.memo, self.bounded
        for anchor in regex.finditer(text) if regex is not None else ():
            plan = memo.get(anchor[0])
            if plan is None:
                plan = self._remember(anchor[0])
            start = anchor.start()
            for number, whole, second in plan:
                if whole:
                    _record(found, number, anchor.span())
                    continue
                if second and not marked and not anchor[1].startswith(second):
                    continue
                hit = (patterns[number] or self._compile(number, marked)).match(text, start)
                if hit is not None and not (bounded[number] and continues_word(text, hit.end())):
                    _record(found, number, hit.span())

    def _scan_chars(
        self,
        text: str,
        patterns: Sequence[re.Pattern[str] | None],
        found: dict[int, list[tuple[int, int]]],
        marked: bool,
    ) -> None:
        """Record the candidates that match at characters of substring scripts; there a "word"
        is the anchor character and the one after it."""
        memo, bounded = self.memo, self.bounded
        for anchor in self.chars_regex.finditer(text) if self.chars_regex is not None else ():
            start = anchor.start()
            pair = text[start : start + 2]
            plan = memo.get(pair)
            for number, _, _ in plan if plan is not None else self._remember(pair):
                hit = (patterns[number] or self._compile(number, marked)).match(text, start)
                if hit is not None and not (bounded[number] and continues_word(text, hit.end())):
                    _record(found, number, hit.span())

    def _compile(self, number: int, marked: bool) -> re.Pattern[str]:
        """An alternative's pattern, compiled on first use (two threads may both compile it: harmless)."""
        alt = self.index.alts[number]
        if marked:
            pattern = self.marked_patterns[number] = re.compile(alt.marked or alt.source)
        else:
            pattern = self.patterns[number] = re.compile(alt.source)
        return pattern

    def _remember(self, word: str) -> _Plan:
        """What to try for a word, or for the one or two characters of a substring script."""
        if len(self.memo) >= self.MEMO_LIMIT:
            self.memo.clear()
        alts = self.index.alts
        if is_substring_script(word[0]):
            follows = word[1:]
            numbers: Sequence[int] = [n for n in self.index.words.get(word[0], ()) if alts[n].follow in ("", follows)]
        else:
            numbers = self.index.token_candidates(word)
        # A single word matches the whole word or nothing (after an Arabic word's clitics).
        plan = tuple(
            (n, alts[n].single, alts[n].second) for n in numbers if not alts[n].single or alts[n].anchor == word
        )
        self.memo[word] = plan
        return plan


# For a word: (alternative, found as the whole word?, how the next word must begin or "") per candidate.
_Plan = tuple[tuple[int, bool, str], ...]


def _anchor_regexes(alts: Sequence[_Alt]) -> tuple[re.Pattern[str] | None, ...]:
    """Regexes matching where some alternative may begin: spaced words, Arabic, CJK & co.

    The first two match whole words that are an anchor or begin with a prefix* anchor
    (Arabic: after its clitics), and capture the word after them; they start with a
    lookahead on the possible first characters, which lets the regex engine skip all other
    positions quickly. The third matches a character of a substring script that some anchor
    is, checking the character after it when that is known.
    """
    spaced: dict[str, bool] = {}  # anchor -> may the word go on after it (prefix*)
    arabic: dict[str, bool] = {}
    follows: dict[str, set[str]] = {}
    for alt in alts:
        if alt.anchor is not None and is_substring_script(alt.anchor[0]):
            follows.setdefault(alt.anchor[0], set()).add(alt.follow)
        elif alt.anchor is not None:
            anchors = arabic if "\u0600" <= alt.anchor[0] <= "\u06ff" else spaced
            anchors[alt.anchor] = anchors.get(alt.anchor, False) or alt.prefix
    words = _word_start({w[0] for w in spaced}) + f"(?={_trie(spaced)}){WORD}{_NEXT_WORD}" if spaced else None
    firsts = {w[0] for w in arabic} | _ARABIC_CLITICS
    arabic_words = (
        _word_start(firsts) + f"(?=[وفبكلا]{{0,6}}{_trie(arabic)}){WORD}{_NEXT_WORD}" if arabic else None
    )
    chars = _chars(follows) if follows else None
    return tuple(re.compile(regex) if regex is not None else None for regex in (words, arabic_words, chars))


def _ascii_words_regex(alts: Sequence[_Alt]) -> re.Pattern[str] | None:
    """The words regex for texts whose letters are all ASCII: the same matches, with small
    character classes that the regex engine checks much faster than Unicode ones (cheap
    enough to check at every leaf of the trie, which matches fastest)."""
    ascii_anchors: dict[str, bool] = {}
    for alt in alts:
        if alt.anchor is not None and alt.anchor.isascii():
            ascii_anchors[alt.anchor] = ascii_anchors.get(alt.anchor, False) or alt.prefix
    if not ascii_anchors:
        return None
    first = _char_class({w[0] for w in ascii_anchors})
    trie = _trie(ascii_anchors, _ASCII_WORD_CHAR, at_leaves=True)
    after = f"(?=[^A-Za-z0-9_]*({_ASCII_WORD_CHAR}*))"
    # \b: where all letters are ASCII, a word starts where no ASCII word character precedes.
    return re.compile(f"\\b(?={first})(?={trie}){_ASCII_WORD_CHAR}+{after}")


def _chars(follows: Mapping[str, set[str]]) -> str:
    """An anchor character of a substring script, checking the next one when all its terms
    name it. Only the anchor is consumed: another term may start at the next character."""
    return "|".join(
        re.escape(char) + ("" if "" in nexts else "(?=" + _char_class(nexts) + ")")
        for char, nexts in sorted(follows.items())
    )


def _word_start(first_chars: set[str]) -> str:
    return f"(?={_char_class(first_chars)})(?<![^\\W{SUBSTRING}])(?<![{MARKS}])"


def _char_class(chars: set[str]) -> str:
    return "[" + "".join(re.escape(char) for char in sorted(chars)) + "]"


_EXACT, _PREFIX = "", "*"  # trie leaves: the word ends here / the word may go on


def _trie(words: Mapping[str, bool], word_char: str = WORD_CHAR, at_leaves: bool = False) -> str:
    """Regex of a trie of `words` (word -> is a prefix): a word matches where it stands
    whole, a prefix wherever it begins a word. A superset would do (the candidates are
    checked word by word afterwards); a tight one spares that work.

    The word-end check (`word_char` must not follow) is made at each whole word's leaf if
    `at_leaves`, which matches fastest; else once, after a trie of the whole words apart
    from the prefixes' (when it fails, the regex engine backtracks into the trie, so the
    places matched are the same): each copy of a big Unicode class costs milliseconds to
    compile, thousands of leaves seconds."""
    if at_leaves:
        return _trie_node(_tree(words), f"(?!{word_char})")
    exact = {word: False for word, prefix in words.items() if not prefix}
    prefixes = {word: True for word, prefix in words.items() if prefix}
    branches = [_trie_node(_tree(exact), "") + f"(?!{word_char})"] if exact else []
    return _alternation(branches + ([_trie_node(_tree(prefixes), "")] if prefixes else []))


def _tree(words: Mapping[str, bool]) -> dict[str, dict]:
    root: dict[str, dict] = {}
    for word, prefix in words.items():
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[_PREFIX if prefix else _EXACT] = {}
    return root


def _trie_node(node: dict[str, dict], leaf: str) -> str:
    """A (sub)trie's regex; `leaf` where a whole word ends."""
    if _PREFIX in node:
        return ""
    branches = [re.escape(char) + _trie_node(child, leaf) for char, child in sorted(node.items()) if char]
    if _EXACT in node:
        branches.append(leaf)
    return _alternation(branches)


def _alternation(branches: list[str]) -> str:
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
    """One field of one document: its folded text and where each alternative occurs.

    Rules share alternatives, so what is derived from a hit (its words, its place in the
    original text) is worked out once per field and alternative. Made per document, so its
    caches are plain attributes and dicts: no locking, nothing shared between threads.
    """

    def __init__(self, field: str, norm: NormText, hits: dict[int, list[tuple[int, int]]]) -> None:
        self.field = field
        self.norm = norm
        self.hits = hits
        self._positions: WordPositions | None = None
        self._words: dict[int, list[tuple[float, float]]] = {}
        self._placed: dict[tuple[int, str], list[Hit]] = {}

    @property
    def positions(self) -> WordPositions:
        if self._positions is None:
            self._positions = WordPositions(self.norm.text)
        return self._positions

    def words_of(self, number: int) -> list[tuple[float, float]]:
        """(first word, last word) of each hit of an alternative."""
        words = self._words.get(number)
        if words is None:
            words = self._words[number] = self.positions.spans(self.hits[number])
        return words

    def hits_of(self, number: int, written: str) -> list[Hit]:
        """An alternative's hits, placed in the original text (shared by the rules that match)."""
        key = (number, written)
        hits = self._placed.get(key)
        if hits is None:
            span, field = self.norm.span, self.field
            hits = self._placed[key] = [Hit(written, field, *span(s, e)) for s, e in self.hits[number]]
        return hits


class _Passage:
    """The fields a rule reads, as one text in the rule's order (a title is followed by its
    text): what the rules reading the same fields of one document share."""

    def __init__(self, scans: Sequence[_FieldScan]) -> None:
        self.scans = scans
        self.fired: set[int] = set().union(*(scan.hits for scan in scans))  # alternatives found
        self._offsets: list[float] | None = None
        self._words = 0.0
        self._tables: dict[frozenset[int], _SpanTable | None] = {}

    def near(self, groups: Sequence[frozenset[int]], distance: int) -> bool:
        """True if one hit of each group stands within `distance` words of the others."""
        if self._offsets is None:
            self._place()
        if self._words <= distance:
            return True  # the whole passage is shorter than the distance (terms_fire checked the rest)
        tables = []
        for group in groups:
            table = self._tables[group] if group in self._tables else self._table(group)
            if table is None:
                return False
            tables.append(table)
        for threshold in sorted({last for lasts, _ in tables for last in lasts}):
            limit = threshold + distance
            for lasts, firsts in tables:
                index = bisect_left(lasts, threshold)  # the earliest span ending at or after the threshold...
                if index == len(firsts) or firsts[index] > limit:  # ...starts too late
                    break
            else:
                return True
        return False

    def _place(self) -> None:
        offsets, offset = [], 0.0
        for scan in self.scans:
            offsets.append(offset)
            offset += scan.positions.length + 1
        self._offsets, self._words = offsets, offset - 1

    def _table(self, group: frozenset[int]) -> _SpanTable | None:
        """The group's hits in the passage as a _SpanTable; None if there are none."""
        assert self._offsets is not None
        spans: list[tuple[float, float]] = []
        for scan, offset in zip(self.scans, self._offsets, strict=True):
            for number in group.intersection(scan.hits):  # in any order: the table is sorted
                words = scan.words_of(number)
                spans.extend(words if not offset else [(first + offset, last + offset) for first, last in words])
        table = self._tables[group] = _by_last_word(spans) if spans else None
        return table


# Spans sorted by last word, and the smallest first word from each index onwards.
_SpanTable = tuple[list[float], list[float]]


def _by_last_word(spans: list[tuple[float, float]]) -> _SpanTable:
    ordered = sorted(spans, key=itemgetter(1))
    firsts = [first for first, _ in ordered]
    for index in range(len(firsts) - 2, -1, -1):
        if firsts[index + 1] < firsts[index]:
            firsts[index] = firsts[index + 1]
    return [last for _, last in ordered], firsts


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
    trigger: frozenset[int]  # one of these must occur for the rule to fire: `any` together, else all[0]
    excluded: frozenset[int]  # `none` together: any of these keeps the rule from firing
    near_groups: tuple[frozenset[int], ...]  # one per `all` term, plus one for the `any` terms together


@dataclass
class _Compiler:
    """Collects alternatives across rules, sharing the ones written alike."""

    alts: list[_Alt] = field(default_factory=list)
    numbers: dict[str, int] = field(default_factory=dict)  # pattern key -> number
    written: dict[str, int] = field(default_factory=dict)  # alternative as written -> number
    groups: dict[frozenset[int], frozenset[int]] = field(default_factory=dict)
    normaliser: Normaliser = field(default_factory=Normaliser)  # folds terms, remembering each character

    def rule(self, rule: WatchRule) -> _Rule:
        _check_rule(rule)
        written: dict[int, str] = {}
        terms = {key: self._terms(rule, key, written) for key in ("any", "all", "none")}
        tags: dict[str, set[str]] = {}
        for key, value in rule.source_tags:
            tags.setdefault(key.casefold(), set()).add(value.casefold())
        any_, all_, none = terms["any"], terms["all"], terms["none"]
        trigger = self._group(frozenset().union(*any_)) if any_ else all_[0]
        return _Rule(
            rule, any_, all_, none, written,
            tuple((key, frozenset(values)) for key, values in tags.items()),
            frozenset(lang.casefold() for lang in rule.langs),
            trigger, frozenset().union(*none), ((trigger,) if any_ else ()) + all_,
        )

    def _group(self, numbers: frozenset[int]) -> frozenset[int]:
        """One object per set of alternatives, so that a document works out each set's spans once
        (a dict finds an identical key without comparing its members)."""
        return self.groups.setdefault(numbers, numbers)

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
            result.append(self._group(frozenset(number for number, _ in numbers)))
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
            alt = _compile_alt(text, self.normaliser.fold)
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
        scans = {f: self._scan(f, getattr(doc, f) or "") for f in self._fields}
        candidates: set[int] = set()
        rules_by_alt = self._rules_by_alt
        for scan in scans.values():
            for alt in scan.hits:
                rules = rules_by_alt.get(alt)
                if rules is not None:
                    candidates.update(rules)
        passages: dict[tuple[str, ...], _Passage] = {}  # by the fields read
        matches = []
        for number in sorted(candidates):
            rule = self._compiled[number]
            fields = rule.rule.fields
            passage = passages.get(fields)
            if passage is None:
                passage = passages[fields] = _Passage([scans[f] for f in fields])
            result = _evaluate(rule, doc, scans, passage)
            if result is not None:
                matches.append(result)
        return matches

    def _scan(self, field: str, text: str) -> _FieldScan:
        norm = self._normalise(text)
        return _FieldScan(field, norm, self._scanner.scan(norm.text))


def _evaluate(rule: _Rule, doc: Document, scans: Mapping[str, _FieldScan], passage: _Passage) -> Match | None:
    """The rule's match in `doc`, or None."""
    if not (_in_scope(rule, doc) and _terms_fire(rule, passage.fired)):
        return None
    if rule.rule.near is not None and not passage.near(rule.near_groups, rule.rule.near):
        return None
    return _build_match(rule, doc, scans)


def _in_scope(rule: _Rule, doc: Document) -> bool:
    if rule.rule.sources and doc.source not in rule.rule.sources:
        return False
    if rule.langs and doc.lang and not _lang_in(doc.lang, rule.langs):
        return False  # an item of unknown language stays in scope: recall first
    if not rule.tag_groups:
        return True
    doc_tags = {(key.casefold(), value.casefold()) for key, value in doc.source_tags}
    return all(any((key, value) in doc_tags for value in values) for key, values in rule.tag_groups)


def _lang_in(lang: str, langs: frozenset[str]) -> bool:
    lang = lang.casefold().replace("_", "-")
    return lang in langs or lang.split("-")[0] in langs


def _terms_fire(rule: _Rule, fired: set[int]) -> bool:
    """One `any` term (if there are any), every `all` term and no `none` term occur."""
    if rule.any and rule.trigger.isdisjoint(fired):
        return False
    for term in rule.all:
        if term.isdisjoint(fired):
            return False
    return rule.excluded.isdisjoint(fired)


def _build_match(rule: _Rule, doc: Document, scans: Mapping[str, _FieldScan]) -> Match:
    hits = _hits(rule, scans)
    shown = "text" if any(hit.field == "text" for hit in hits) else "title"
    spans = [(hit.start, hit.end) for hit in hits if hit.field == shown]
    text, marks = snippet(getattr(doc, shown) or "", spans)
    return Match(rule.rule.name, rule.rule.topic, hits, text, marks)


def _hits(rule: _Rule, scans: Mapping[str, _FieldScan]) -> tuple[Hit, ...]:
    """The rule's hits field by field, in order of place; of hits with the same span, the first found."""
    hits: list[Hit] = []
    for name in FIELDS:
        if name not in rule.rule.fields:
            continue
        scan, placed, written = scans[name], {}, rule.written
        for number in [number for number in scan.hits if number in written]:
            for hit in scan.hits_of(number, written[number]):
                placed.setdefault((hit.start, hit.end), hit)
        hits.extend(placed[span] for span in sorted(placed))
    return tuple(hits)


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
    body = text[start:end]
    if not body.isprintable():  # every whitespace character but " " is unprintable
        body = _WHITESPACE.sub(" ", body)
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
