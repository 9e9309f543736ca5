"""Text normalisation shared by matching: fold, map offsets back, split into words.

Folding is NFKC + casefold + accent stripping (plus a few Arabic letter variants), done
character by character so that every folded character remains traceable to the original
text: a hit found in folded text is reported at its place in the ORIGINAL text.

Scripts written without spaces (Chinese, Japanese, Thai...) and Hangul are matched as
substrings; tokenisation yields each of their characters as its own token. This module
does no I/O and keeps no state outside the `Normaliser` instances its callers own.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

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


def _combining_ranges() -> str:
    """Character-class body of the BMP combining marks that Python's \\w does not cover."""
    ranges: list[list[int]] = []
    for code in range(0x0300, 0x10000):
        char = chr(code)
        if unicodedata.category(char)[0] != "M" or char.isalnum():
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(f"\\u{start:04x}-\\u{end:04x}" for start, end in ranges)


# Marks that stay inside a word (Devanagari vowel signs and the like) after folding.
MARKS = _combining_ranges()
# One letter of a spaced script (a word character outside the substring scripts).
WORD_CHAR = f"(?:[^\\W{SUBSTRING}]|[{MARKS}])"
# A token: one substring-script character, or a run of word characters.
_TOKEN = re.compile(f"[{SUBSTRING}]|[^\\W{SUBSTRING}]{WORD_CHAR}*")
_SUBSTRING_CHAR = re.compile(f"[{SUBSTRING}]")


def _is_accent(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _ACCENT_BLOCKS) and unicodedata.combining(char) > 0


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
    """Folds texts; owns a per-character memo so repeated folding is one C-level pass."""

    def __init__(self) -> None:
        self._table = _FoldTable()

    def __call__(self, text: str) -> NormText:
        if text.isascii():
            return NormText(text.lower(), text)
        folded = text.translate(self._table)
        if self._table.irregular.isdisjoint(text):
            return NormText(folded, text)
        return NormText(folded, text, self._starts(text))

    def _starts(self, text: str) -> tuple[int, ...]:
        starts: list[int] = []
        for index, char in enumerate(text):
            starts.extend([index] * len(self._table[ord(char)]))
        starts.append(len(text))
        return tuple(starts)


def normalise(text: str) -> NormText:
    """Fold one text (convenience; hot paths keep a `Normaliser`)."""
    return Normaliser()(text)


def fold(text: str) -> str:
    """The folded form of `text`, without the offset map."""
    return "".join(fold_char(char) for char in text)


def iter_tokens(text: str) -> Iterator[re.Match[str]]:
    """The tokens of `text` as regex matches (the fast path for scanning)."""
    return _TOKEN.finditer(text)


def tokens(text: str) -> list[tuple[int, str]]:
    """(start, token) for each word, and for each character of a substring script."""
    return [(m.start(), m.group()) for m in _TOKEN.finditer(text)]


def is_substring_script(char: str) -> bool:
    """True for characters of scripts matched as substrings (CJK, Thai, Hangul...)."""
    return _SUBSTRING_CHAR.match(char) is not None


def has_substring_script(text: str) -> bool:
    """True when any character of `text` belongs to a substring script."""
    return _SUBSTRING_CHAR.search(text) is not None


@dataclass(frozen=True)
class WordPositions:
    """Word positions of a text's tokens, to measure distances for `near`."""

    starts: tuple[int, ...]
    positions: tuple[float, ...]
    length: float  # the text's length in words

    @classmethod
    def of(cls, text: str) -> WordPositions:
        found = tokens(text)
        weights = (SUBSTRING_CHAR_WEIGHT if is_substring_script(tok) else 1.0 for _, tok in found)
        positions = tuple(accumulate(weights, initial=0.0))
        return cls(tuple(start for start, _ in found), positions[:-1], positions[-1])

    def first(self, offset: int) -> float:
        """Position of the word holding `offset` (or the last word before it)."""
        index = bisect_right(self.starts, offset) - 1
        return self.positions[max(index, 0)] if self.positions else 0.0

    def last(self, end: int) -> float:
        """Position of the last word starting before `end`."""
        index = bisect_left(self.starts, end) - 1
        return self.positions[max(index, 0)] if self.positions else 0.0
