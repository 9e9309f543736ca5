"""What changed between two versions of a statement, word by word (difflib), for the item page.

Chinese and Japanese are compared character by character, everything else by words, so an edited
sentence shows as one struck-out phrase and its replacement rather than a whole new paragraph.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from itertools import pairwise

from monitor.store.queries import Version

_TOKEN = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\u3040-\u30ff]|\w+|\s+|[^\w\s]")
CONTEXT = 160  # characters kept each side of a change; longer unchanged runs are elided
EXACT_LIMIT = 3000  # tokens; beyond this difflib's junk heuristic keeps long texts fast


@dataclass(frozen=True)
class Change:
    op: str  # equal | insert | delete | skip (an elided unchanged run; text says how long)
    text: str


@dataclass(frozen=True)
class Revision:
    """One edit by the source: the text as it was, as it became, and the changes between."""

    changed_at: str
    before: Version
    after: Version
    title: tuple[Change, ...]
    summary: tuple[Change, ...]


def revisions(versions: Sequence[Version]) -> list[Revision]:
    """Each consecutive pair of versions (oldest first in), newest edit first out."""
    out = [
        Revision(old.replaced_at or "", old, new, word_diff(old.title, new.title),
                 word_diff(old.summary, new.summary))
        for old, new in pairwise(versions)
    ]
    return out[::-1]


def word_diff(old: str, new: str) -> tuple[Change, ...]:
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    matcher = SequenceMatcher(None, a, b, autojunk=len(a) + len(b) > EXACT_LIMIT)
    changes: list[Change] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op in ("delete", "replace"):
            changes.append(Change("delete", "".join(a[i1:i2])))
        if op in ("insert", "replace"):
            changes.append(Change("insert", "".join(b[j1:j2])))
        if op == "equal":
            changes.extend(_elide("".join(a[i1:i2]), first=i1 == 0, last=i2 == len(a)))
    return tuple(changes)


def _elide(text: str, first: bool, last: bool) -> list[Change]:
    """An unchanged run, shortened to the context around the changes next to it."""
    keep_head = 0 if first else CONTEXT
    keep_tail = 0 if last else CONTEXT
    if len(text) <= keep_head + keep_tail + 40:
        return [Change("equal", text)]
    out = [Change("equal", text[:keep_head])] if keep_head else []
    out.append(Change("skip", f"{len(text) - keep_head - keep_tail} unchanged characters"))
    if keep_tail:
        out.append(Change("equal", text[-keep_tail:]))
    return out
