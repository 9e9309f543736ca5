"""Text normalisation shared by matching: fold, map offsets back, split into words.

Folding is NFKC + casefold + accent stripping (plus a few Arabic letter variants), defined
character by character so that every folded character remains traceable to the original
text: a hit found in folded text is reported at its place in the ORIGINAL text. Texts whose
characters all fold one-to-one (nearly all) take a whole-string C-level path; the others
build an offset map.

Scripts written without spaces (Chinese, Japanese, Thai...) and Hangul are matched as
substrings; tokenisation yields each of their characters as its own token. This module
does no I/O and keeps no state outside the `Normaliser` instances its callers own.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import add

# Han (with CJK compatibility and extensions), kana, Thai, Lao, Tibetan, Myanmar, Khmer.
UNSPACED = (
    "\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u3005-\u3007\u3040-\u30ff"
    "\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
)
HANGUL = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
# Scripts matched as substrings: a term may start or end anywhere inside a run of them.
SUBSTRING = UNSPACED + HANGUL
# How many "words" one character of a substring script counts for, in `near` distances.
SUBSTRING_CHAR_WEIGHT = 0.5

# Diacritic blocks stripped by folding (combining marks only): Latin/Greek/Cyrillic
# combining diacritics, Hebrew points, Arabic harakat and Quranic marks.
_ACCENT_BLOCKS = (
    (0x0300, 0x036F), (0x0483, 0x0489), (0x0591, 0x05C7), (0x0610, 0x061A),
    (0x064B, 0x065F), (0x0670, 0x0670), (0x06D6, 0x06ED), (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F),
)
# Invisible characters dropped, and letter variants unified (Arabic/Persian spellings).
_DROPPED = frozenset("\u00ad\u0640\u200b\u200c\u200d\u2060\ufeff")
_REPLACED = {"\u0649": "\u064a", "\u06cc": "\u064a", "\u06a9": "\u0643", "\u0671": "\u0627"}


def _is_accent(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _ACCENT_BLOCKS) and unicodedata.combining(char) > 0


def _ranges(codes: list[int]) -> str:
    """Character-class body for sorted code points."""
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(f"\\u{start:04x}-\\u{end:04x}" for start, end in ranges)


def _accent_ranges() -> str:
    return _ranges([c for low, high in _ACCENT_BLOCKS for c in range(low, high + 1) if _is_accent(chr(c))])


def _irregular_ranges() -> str:
    """Characters whose folding may not be one character (marks, ligatures, ß, jamo...)."""
    codes = [
        code for code in range(0x80, 0x10000)
        if unicodedata.category(chr(code))[0] in "MC"
        or 0x1100 <= code <= 0x11FF
        or len(unicodedata.normalize("NFKC", chr(code)).casefold()) != 1
    ]
    return _ranges(codes) + "\\U00010000-\\U0010ffff" + "".join(_DROPPED)


# Blocks whose combining marks stay inside words after folding (Indic vowel signs and the
# like), which Python's \\w does not cover. Coarse on purpose: short patterns compile fast.
MARKS = (
    "\u0700-\u0dff\u1300-\u139f\u1700-\u177f\u1800-\u1cff\u2c80-\u2dff\u302a-\u302f"
    "\ua600-\ua6ff\ua800-\uabff\ufb1e\ufe00-\ufe0f"
)
# Texts without these fold character for character, so whole-string folding keeps offsets.
_IRREGULAR = re.compile(f"[{_irregular_ranges()}]")
_ACCENT = re.compile(f"[{_accent_ranges()}]")
# One letter of a spaced script (a word character outside the substring scripts).
WORD_CHAR = f"(?:[^\\W{SUBSTRING}]|[{MARKS}])"
# A word of a spaced script: word characters, with the marks inside it.
WORD = f"[^\\W{SUBSTRING}]+(?:[{MARKS}]+[^\\W{SUBSTRING}]*)*"
# A token: one substring-script character, or a word.
_TOKEN = re.compile(f"[{SUBSTRING}]|{WORD}")
_SUBSTRING_CHAR = re.compile(f"[{SUBSTRING}]")
_SUBSTRING_RUN = re.compile(f"[{SUBSTRING}]+")
_WORD_CHAR = re.compile(WORD_CHAR)


def fold_char(char: str) -> str:
    """Fold one character: NFKC, casefold, strip accents; may return '' or several chars."""
    if char in _DROPPED:
        return ""
    folded = unicodedata.normalize("NFKC", char).casefold()
    if folded.isascii():
        return folded
    bare = "".join(c for c in unicodedata.normalize("NFD", folded) if not _is_accent(c))
    bare = unicodedata.normalize("NFC", bare)
    return "".join(_REPLACED.get(c, c) for c in bare)


class _FoldTable(dict[int, str]):
    """Code point -> folded text, filled on first use; remembers the non 1:1 characters."""

    def __init__(self) -> None:
        super().__init__()
        self.irregular: set[str] = set()

    def __missing__(self, code: int) -> str:
        folded = fold_char(chr(code))
        self[code] = folded
        if len(folded) != 1:
            self.irregular.add(chr(code))
        return folded


@dataclass(frozen=True)
class NormText:
    """Folded text plus the way back to the original.

    `starts[i]` is the index in `original` of the character that produced folded
    character i (with `starts[len(text)] == len(original)`); None means 1:1.
    """

    text: str
    original: str
    starts: tuple[int, ...] | None = None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Map a span of the folded text to the span of the original text it came from."""
        if self.starts is None:
            return start, end
        starts = self.starts
        return starts[start], max(starts[end - 1] + 1, starts[end])


class Normaliser:
    """Folds texts; owns a per-character memo for the texts that need an offset map."""

    def __init__(self) -> None:
        self._table = _FoldTable()

    def __call__(self, text: str) -> NormText:
        if text.isascii():
            return NormText(text.lower(), text)
        if _IRREGULAR.search(text) is None:
            folded = _fold_regular(text)
            if len(folded) == len(text):
                return NormText(folded, text)
        folded = text.translate(self._table)
        if self._table.irregular.isdisjoint(text):
            return NormText(folded, text)
        return NormText(folded, text, self._starts(text))

    def fold(self, text: str) -> str:
        """`fold(text)`, with this normaliser's per-character memo."""
        return text.lower() if text.isascii() else text.translate(self._table)

    def _starts(self, text: str) -> tuple[int, ...]:
        starts: list[int] = []
        for index, char in enumerate(text):
            starts.extend([index] * len(self._table[ord(char)]))
        starts.append(len(text))
        return tuple(starts)


def _fold_regular(text: str) -> str:
    """Whole-string folding, equal to `fold_char` per character for texts with no irregular one."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = unicodedata.normalize("NFC", _ACCENT.sub("", unicodedata.normalize("NFD", folded)))
    for variant, replacement in _REPLACED.items():
        if variant in folded:
            folded = folded.replace(variant, replacement)
    return folded


def normalise(text: str) -> NormText:
    """Fold one text (convenience; hot paths keep a `Normaliser`)."""
    return Normaliser()(text)


def fold(text: str) -> str:
    """The folded form of `text`, without the offset map."""
    if text.isascii():
        return text.lower()  # what fold_char does to each ASCII character
    return "".join(fold_char(char) for char in text)


def token_at(text: str, start: int) -> str:
    """The token starting at `start` (which must be a token start)."""
    found = _TOKEN.match(text, start)
    return found.group() if found is not None else ""


def tokens(text: str) -> list[tuple[int, str]]:
    """(start, token) for each word, and for each character of a substring script."""
    return [(m.start(), m.group()) for m in _TOKEN.finditer(text)]


def continues_word(text: str, offset: int) -> bool:
    """True when `offset` is inside a word of a spaced script (a word character follows)."""
    return _WORD_CHAR.match(text, offset) is not None


def is_substring_script(char: str) -> bool:
    """True for characters of scripts matched as substrings (CJK, Thai, Hangul...)."""
    return _SUBSTRING_CHAR.match(char) is not None


class WordPositions:
    """Word positions in a folded text, to measure distances for `near`.

    Words are counted by the spaces and line breaks before them; a character of a substring script
    (CJK, Thai...) counts as SUBSTRING_CHAR_WEIGHT of a word. Built with C-level passes over the
    text (split, accumulate, one regex for runs of substring scripts); each look-up is a bisect.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        runs = [found.span() for found in _SUBSTRING_RUN.finditer(text)] if not text.isascii() else []
        self._run_starts = [start for start, _ in runs]
        self._run_ends = [end for _, end in runs]
        self._chars_before_run = list(accumulate((end - start for start, end in runs), initial=0))
        self._piece_ends: list[int] | None = None  # built on the first look-up: `length` needs none

    def before(self, offset: int) -> float:
        """Words starting before `offset` (the position of the word at `offset`)."""
        if self._piece_ends is None:
            # Where each space-separated piece ends, the space after it included: the spaces and
            # line breaks before an offset are the pieces ending at or before it.
            pieces = self.text.replace("\n", " ").split(" ")
            self._piece_ends = list(accumulate(map(add, map(len, pieces), repeat(1))))
        spaces = bisect_right(self._piece_ends, offset)
        if not self._run_starts:
            return spaces
        return spaces + SUBSTRING_CHAR_WEIGHT * self._substring_chars_before(offset)

    def _substring_chars_before(self, offset: int) -> int:
        runs = bisect_left(self._run_starts, offset)  # the runs starting before `offset`
        if not runs:
            return 0
        last = runs - 1
        return self._chars_before_run[last] + min(self._run_ends[last], offset) - self._run_starts[last]

    def spans(self, spans: Iterable[tuple[int, int]]) -> list[tuple[float, float]]:
        """(first, last) of each span: the positions of the words where it starts and where it ends."""
        before = self.before
        return [(before(start), before(end - 1 if end > 0 else 0)) for start, end in spans]

    @property
    def length(self) -> float:
        """Words in the text: `before(len(text)) + 1`, counted directly."""
        spaces = self.text.count(" ") + self.text.count("\n")
        if not self._run_starts:
            return spaces + 1
        return spaces + SUBSTRING_CHAR_WEIGHT * self._chars_before_run[-1] + 1
