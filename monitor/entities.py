"""Countries, organisations and document type named in an item's title and text.

Reads only the bundled tables in monitor/entities_data/ (hand-reviewed YAML), and writes only a JSON
copy of what it read beside them, in __pycache__/ (see _read); it never touches the network or the
store, and it never guesses beyond those tables.

How matching works, in one place:
- Text and aliases are normalised alike: NFKD, combining marks dropped (accents, Arabic vowel marks,
  й -> и, ё -> е), Arabic letter variants unified, curly apostrophes straightened, ß -> ss, lower case.
- An alias with no lower-case letter (UN, U.S., ООН, G20), or written with a leading "=" (=Quad),
  must also match the original letter case; every other alias ignores case. A trailing "*" on a word
  is a prefix wildcard (российск*). Spaces and hyphens inside an alias match any run of them.
- Latin and Cyrillic aliases match whole words; Arabic aliases also accept the clitics و ف ب ل ك and
  the article (للأمم, بالصين); Chinese aliases match as substrings.
- All aliases of a table compile into one trie-shaped regular expression, so one left-to-right scan
  finds at each place the longest alias ("Equatorial Guinea" before "Guinea", "中美洲" before "中美").
  Blockers are aliases that name nothing ("Latin America", "Korean Peninsula") and so hide the country
  word inside them.
- Russian aliases are declined and German ones given their genitive by `_expand` (rules below).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from ruamel.yaml import YAML
from ruamel.yaml import __version__ as YAML_VERSION
from ruamel.yaml.error import YAMLError

from monitor.errors import DiplowatchError

DATA_DIR = Path(__file__).with_name("entities_data")
LANGUAGES = ("en", "ru", "fr", "es", "de", "zh", "ar")
ORG_IDS = (
    "UN", "UNGA", "UNSC", "OEWG", "GGE", "UNODC", "UNODA", "ITU", "IGF", "BRICS", "SCO", "CSTO", "CIS",
    "ASEAN", "ARF", "AU", "EU", "EEAS", "NATO", "OSCE", "COE", "G7", "G20", "OAS", "GCC", "QUAD",
    "INTERPOL", "ICANN", "WSIS", "APEC", "ECOWAS", "LAS",
)  # fmt: skip
DOC_TYPES = (
    "statement", "joint-statement", "resolution", "press-briefing", "interview", "speech",
    "agreement", "news-report",
)  # fmt: skip
DEFAULT_DOC_TYPE = "news-report"
LEAD_CHARS = 300  # how much of the text is read for a doc type when the title has no cue
NEAR_CHARS = 80  # how far `unless_near` looks on each side of a match

Target = tuple[str, str]  # (kind, id): ("country", "RU"), ("org", "UN"), ("doc", "speech")


class EntityDataError(DiplowatchError):
    """A bundled entity table is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Entities:
    countries: tuple[str, ...]  # ISO 3166-1 alpha-2 (plus XK, Kosovo), sorted, unique
    orgs: tuple[str, ...]  # ids from ORG_IDS, sorted, unique
    doc_type: str  # one of DOC_TYPES


@dataclass(frozen=True)
class Alias:
    """One way of writing a name in one language, and what it names."""

    text: str  # as in the table, without the "=" marker
    lang: str
    targets: tuple[Target, ...]  # empty: a blocker that names nothing
    exact_case: bool = False
    strict_lang: bool = False  # only when the item's language is `lang` (German "Island")
    person_name: bool = False  # also a first or last name (Chad, Jordan): check the neighbours
    unless_near: tuple[str, ...] = ()  # normalised cue words; if one is near the match...
    instead: tuple[Target, ...] = ()  # ...the match names these instead ("Atlanta, Georgia")


@dataclass(frozen=True)
class Tables:
    """Everything read from entities_data/, immutable."""

    names: tuple[Alias, ...]  # countries, organisations and their blockers
    cues: tuple[Alias, ...]  # document-type cues and their blockers
    signing: tuple[Alias, ...]  # words that say an agreement was signed or concluded
    implies: tuple[tuple[str, tuple[str, ...]], ...]  # org -> orgs it belongs to (UNGA -> UN)
    name_neighbours: tuple[frozenset[str], frozenset[str]]  # words allowed before / after a name


# ---------------------------------------------------------------------------- normalisation

_MARKS = re.compile(r"[\u0300-\u036f\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")
_LETTERS = (("ى", "ي"), ("ی", "ي"), ("ة", "ه"), ("ک", "ك"), ("’", "'"), ("‘", "'"), ("ʼ", "'"),
            ("`", "'"), ("ß", "ss"))  # fmt: skip


@dataclass(frozen=True)
class Normalised:
    plain: str  # accents dropped, case kept
    folded: str  # the same, lower case, same length

    def __getitem__(self, span: slice) -> Normalised:
        return Normalised(self.plain[span], self.folded[span])


def normalise(text: str) -> Normalised:
    if text.isascii():  # a third of items: nothing to decompose, and "`" is the only letter to replace
        plain = text.replace("`", "'")
        return Normalised(plain, plain.lower())
    plain = _MARKS.sub("", unicodedata.normalize("NFKD", text))
    for letter, replacement in _LETTERS:  # str.replace is much faster than translate() here
        if letter in plain:
            plain = plain.replace(letter, replacement)
    folded = plain.lower()
    if len(folded) != len(plain):  # a rare letter whose lower case is longer: keep it as is
        folded = "".join(c if len(c.lower()) != 1 else c.lower() for c in plain)
    return Normalised(plain, folded)


# ------------------------------------------------------------------------- trie expressions

_WILD, _SEP = "\0*", "\0-"
_SEP_CHARS = r"\s\-\u2010-\u2014"  # white space, hyphen-minus, and ‐ ‑ ‒ – —
_ATOM_RE = MappingProxyType({_WILD: r"\w*", _SEP: f"[{_SEP_CHARS}]+"})
_ARTICLE = "ال"


class _Script(NamedTuple):
    name: str
    prefix: str  # what must or may stand before an alias
    end: str  # what must follow it
    bounded: bool  # no word character may stand right before it (before the prefix)


_END = r"(?!\w)"
_SCRIPTS = MappingProxyType(
    {
        "word": _Script("word", "", _END, bounded=True),
        # Arabic: the clitics و ف ب ل ك and the article may be glued on; "لل" is ل + ال.
        "arabic_article": _Script("arabic_article", r"(?:[وف]?(?:[بك]?ال|لل))", _END, bounded=True),
        "arabic": _Script("arabic", r"(?:[وف]?(?:[بلك]|[بك]?ال|لل)?)", _END, bounded=True),
        "cjk": _Script("cjk", "", "", bounded=False),
    }
)
# One expression per family of scripts that start on the same characters; families never overlap.
_FAMILIES = (("word",), ("arabic_article", "arabic"), ("cjk",))
_ARABIC_CHARS = "\u0600-\u06ff"


def _script(text: str) -> str:
    first = next((c for c in text if c.isalpha()), "a")
    if "\u0600" <= first <= "\u06ff":
        return "arabic_article" if text.startswith(_ARTICLE) else "arabic"
    if "\u2e80" <= first <= "\u9fff" or "\uac00" <= first <= "\ud7af" or "\uf900" <= first <= "\ufaff":
        return "cjk"
    return "word"


_SEP_SPLIT = re.compile(f"([{_SEP_CHARS}]+|\\*)")


def _atoms(folded: str) -> tuple[str, ...]:
    atoms: list[str] = []
    for part in _SEP_SPLIT.split(folded.strip()):
        if part == "*":
            atoms.append(_WILD)
        elif part and _SEP_RUN.fullmatch(part):
            atoms.append(_SEP)
        else:
            atoms.extend(part)
    return tuple(atoms)


class _Node:
    __slots__ = ("aliases", "children")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.aliases: tuple[Alias, ...] = ()  # aliases that end here (same text, maybe other languages)


def _insert(root: _Node, atoms: tuple[str, ...], alias: Alias) -> _Node:
    node = root
    for atom in atoms:
        child = node.children.get(atom)
        if child is None:
            child = node.children[atom] = _Node()
        node = child
    node.aliases = (*node.aliases, alias)
    return node


def _emit(node: _Node) -> str:
    """The node as a regex: literal branches, then separator, then wildcard, then the end ("").

    What must follow an alias is checked once, after the whole trie (see AliasMatcher._family): a
    failed check backtracks into the trie just as a check at each end would, and the expression is
    much shorter to compile. No capture groups: with thousands of them every match gets slow.
    `_walk` finds the alias.
    """
    chain = []  # a run of nodes with one child and no alias is a plain sequence (most of the trie)
    while len(node.children) == 1 and not node.aliases:
        ((atom, node),) = node.children.items()
        chain.append(_ATOM_RE.get(atom) or _escape(atom))
    literals = sorted(a for a in node.children if a not in (_SEP, _WILD))
    branches = _bucketed([_escape(a) + _emit(node.children[a]) for a in literals], literals)
    branches += [_ATOM_RE[a] + _emit(node.children[a]) for a in (_SEP, _WILD) if a in node.children]
    if node.aliases:
        branches.append("")
    return "".join(chain) + (branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")")


def _escape(char: str) -> str:
    return "\\" + char if char in _SPECIAL else char  # what re.escape does, without its cost per call


_SPECIAL = frozenset("()[]{}?*+-|^$\\.&~# \t\n\r\v\f")


_FANOUT = 16


def _bucketed(branches: list[str], firsts: list[str]) -> list[str]:
    """Many branches: group them behind a lookahead on their first characters.

    The regex engine tries the branches of an alternation one by one; a root with a thousand Chinese
    first characters would cost a thousand tries per character. Groups of about sqrt(n) cut that
    to about 2 * sqrt(n). The literal branches start with distinct characters, so order is free.
    """
    if len(branches) <= _FANOUT:
        return branches
    size = max(_FANOUT, math.isqrt(len(branches)) + 1)
    return [
        "(?=[" + "".join(map(_escape, firsts[i : i + size])) + "])(?:"
        + "|".join(branches[i : i + size]) + ")"
        for i in range(0, len(branches), size)
    ]  # fmt: skip


def _walk(node: _Node, text: str, i: int = 0) -> _Node | None:
    """The node where `text[i:]` ends, trying branches in the order the regex tries them."""
    found = None
    if i < len(text) and text[i] in node.children:
        found = _walk(node.children[text[i]], text, i + 1)
    if found is None and _SEP in node.children and (seps := _SEP_RUN.match(text, i)):
        found = _walk(node.children[_SEP], text, seps.end())
    if found is None and _WILD in node.children:
        run = _WORD_RUN.match(text, i).end()  # type: ignore[union-attr]
        found = next((f for j in range(run, i - 1, -1) if (f := _walk(node.children[_WILD], text, j))), None)
    if found is None and i == len(text) and node.aliases:
        found = node
    return found


_SEP_RUN = re.compile(f"[{_SEP_CHARS}]+")
_WORD_RUN = re.compile(r"\w*")


# ------------------------------------------------------------------------------- the matcher


class Hit(NamedTuple):  # a NamedTuple: made for every match, and much cheaper than a dataclass
    start: int
    end: int
    alias: Alias


class _Family(NamedTuple):
    """One expression for the scripts of a family, and how it is searched."""

    pattern: re.Pattern[str]
    bounded: bool  # searched in "\n" + text: it reads the character before an alias (see _family)
    present: re.Pattern[str] | None  # a first character of the family: searched from the first one, if any


class AliasMatcher:
    """Finds the aliases of one table in normalised text: leftmost, longest, left to right."""

    def __init__(self, aliases: Iterable[Alias]) -> None:
        self._roots = {script: _Node() for script in _SCRIPTS}
        self._keys: dict[str, dict[str, _Node]] = {script: {} for script in _SCRIPTS}  # "text" or "stem*" -> node
        for alias in aliases:
            folded = normalise(alias.text).folded
            script = _script(folded)
            if script == "arabic_article":
                folded = folded[len(_ARTICLE) :]
            atoms = _atoms(folded)
            node = _insert(self._roots[script], atoms, alias)
            if _WILD not in atoms[:-1]:
                self._keys[script]["".join(" " if a == _SEP else "*" if a == _WILD else a for a in atoms)] = node
        self._families = tuple(f for family in _FAMILIES if (f := self._family(family)))

    def _family(self, family: tuple[str, ...]) -> _Family | None:
        """The scripts' tries side by side; the named group marks the alias proper (after clitics).

        Word and Arabic aliases start after a non-word character: the expression reads that character
        first, so the engine skips the middle of words at C speed instead of trying a match at each
        letter. Searched in "\\n" + text, where "\\n" stands for the start of the text.
        """
        used = [_SCRIPTS[s] for s in family if self._roots[s].children]
        if not used:
            return None
        branches = [f"{s.prefix}(?P<{s.name}>{_emit(self._roots[s.name])}){s.end}" for s in used]
        chars = _ARABIC_CHARS if used[0].name.startswith("arabic") else _first_chars(self._roots[used[0].name])
        pattern = f"(?=[{chars}])(?:" + "|".join(branches) + ")"
        present = None if used[0].name == "word" else re.compile(f"[{chars}]")  # most texts are neither
        bounded = used[0].bounded
        return _Family(re.compile(r"[^\w]" + pattern if bounded else pattern), bounded, present)

    def hits(self, doc: Normalised, accept: Accept) -> list[Hit]:
        """Accepted hits in text order (families never overlap: they match different scripts)."""
        found: list[Hit] = []
        for family in self._families:
            self._scan(family, doc, accept, found)
        if len(self._families) > 1:
            found.sort(key=_start)
        return found

    def _scan(self, family: _Family, doc: Normalised, accept: Accept, found: list[Hit]) -> None:
        """Left to right: a rejected alias is skipped and the scan goes on from the next character."""
        pos = 0
        if family.present is not None:
            if (first := family.present.search(doc.folded)) is None:
                return
            pos = first.start()
        text = "\n" + doc.folded if family.bounded else doc.folded
        shift = 1 if family.bounded else 0  # the "\n" moves positions in `text` one on...
        search = family.pattern.search
        while (match := search(text, pos)) is not None:
            start, end = match.start(), match.end() - shift  # ...and the match starts one before the alias
            script = match.lastgroup or ""
            node = self._node(script, match.group(script))
            pos = start + 1
            for alias in node.aliases if node else ():
                if accept(doc, start, end, alias):
                    found.append(Hit(start, end, alias))
                    pos = max(end, start + 1)
                    break

    def _node(self, script: str, core: str) -> _Node | None:
        """The trie node of the matched text: by key when the alias is literal or ends in "*"."""
        keys = self._keys[script]
        key = core if core.isalnum() else _SEP_RUN.sub(" ", core)
        if node := keys.get(key):
            return node
        for cut in range(len(key), 0, -1):
            if (node := keys.get(key[:cut] + "*")) and key[cut:].isalnum():
                return node
        return _walk(self._roots[script], core)


def _first_chars(root: _Node) -> str:
    """The characters an alias can start with: most places fail them at once."""
    return "".join(_escape(a) for a in sorted(root.children) if a not in (_SEP, _WILD))


def _start(hit: Hit) -> int:
    return hit.start


# ---------------------------------------------------------------------------- accept checks

_PREV_WORD = re.compile(r"(\w+) +$")
_NEXT_WORD = re.compile(r" +(\w+)")


@dataclass(frozen=True)
class Accept:
    """Decides whether a found alias counts, given the item's language and the neighbouring words."""

    lang: str | None  # primary language of the item, or None when unknown
    name_neighbours: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())

    def __call__(self, doc: Normalised, start: int, end: int, alias: Alias) -> bool:
        return (
            self._language_ok(alias)
            and self._case_ok(doc, start, end, alias)
            and not (alias.person_name and self._looks_like_person(doc, start, end))
        )

    def _language_ok(self, alias: Alias) -> bool:
        if alias.strict_lang:
            return alias.lang == self.lang
        return self.lang is None or alias.lang in (self.lang, "en")

    @staticmethod
    def _case_ok(doc: Normalised, start: int, end: int, alias: Alias) -> bool:
        if not alias.exact_case:
            return True
        return doc.plain[start:end].split() == _plain_words(alias.text)

    def _looks_like_person(self, doc: Normalised, start: int, end: int) -> bool:
        """A capitalised word right before or after ("Michael Jordan", "Chad Smith")."""
        before, after = self.name_neighbours
        prev = _PREV_WORD.search(doc.plain[max(0, start - 40) : start])
        nxt = _NEXT_WORD.match(doc.plain, end)
        return any(
            word is not None and word.group(1)[0].isupper() and word.group(1).lower() not in allowed
            for word, allowed in ((prev, before), (nxt, after))
        )


@functools.cache
def _plain_words(text: str) -> list[str]:
    return normalise(text).plain.split()


# ----------------------------------------------------------------------------- the extractor


class _Compiled(NamedTuple):
    """What extract() reads: built once, then only read (an extractor is shared between threads)."""

    names: AliasMatcher
    cues: AliasMatcher
    signing: AliasMatcher
    implies: Mapping[str, tuple[str, ...]]
    accepts: Mapping[str | None, Accept]  # by primary language


class EntityExtractor:
    """Reads and compiles the tables once, on first use, and extracts Entities from items.

    Nothing happens at construction, so a process that never extracts (search, digest) pays
    nothing; the first extract() reads the tables (see _read) and compiles the expressions.
    """

    def __init__(self, tables: Tables | None = None) -> None:
        self._given = tables

    @cached_property
    def tables(self) -> Tables:
        return self._given or load_tables()

    @cached_property
    def _compiled(self) -> _Compiled:
        tables = self.tables
        return _Compiled(
            names=AliasMatcher(tables.names),
            cues=AliasMatcher(tables.cues),
            signing=AliasMatcher(tables.signing),
            implies=MappingProxyType(dict(tables.implies)),
            accepts=MappingProxyType({lang: Accept(lang, tables.name_neighbours) for lang in (*LANGUAGES, None)}),
        )

    def extract(self, title: str, text: str, lang: str | None = None) -> Entities:
        accept = self._compiled.accepts[_primary_lang(lang)]
        head, body = normalise(title), normalise(text)
        whole = Normalised(f"{head.plain}\n{body.plain}", f"{head.folded}\n{body.folded}")
        countries, orgs = self._named(whole, accept)
        return Entities(countries, orgs, self._doc_type(head, body, accept))

    def _named(self, doc: Normalised, accept: Accept) -> tuple[tuple[str, ...], tuple[str, ...]]:
        found: set[Target] = set()
        for hit in self._compiled.names.hits(doc, accept):
            found.update(_targets(doc, hit))
        orgs = {code for kind, code in found if kind == "org"}
        orgs.update(parent for org in tuple(orgs) for parent in self._compiled.implies.get(org, ()))
        return tuple(sorted(code for kind, code in found if kind == "country")), tuple(sorted(orgs))

    def _doc_type(self, head: Normalised, body: Normalised, accept: Accept) -> str:
        """Title first, then the lead of the text; in each the cue that starts first wins."""
        for part in (head, body[:LEAD_CHARS]):
            for hit in self._compiled.cues.hits(part, accept):
                kinds = [code for _, code in hit.alias.targets]
                if kinds and (kinds[0] != "agreement" or self._signed(head, body, accept)):
                    return kinds[0]
        return DEFAULT_DOC_TYPE

    def _signed(self, head: Normalised, body: Normalised, accept: Accept) -> bool:
        return any(self._compiled.signing.hits(part, accept) for part in (head, body))


def _targets(doc: Normalised, hit: Hit) -> tuple[Target, ...]:
    alias = hit.alias
    if alias.unless_near:
        window = doc.folded[max(0, hit.start - NEAR_CHARS) : hit.end + NEAR_CHARS]
        if any(cue in window for cue in alias.unless_near):
            return alias.instead
    return alias.targets


def _primary_lang(lang: str | None) -> str | None:
    if lang in LANGUAGES:  # most feeds say "en", "ru"...
        return lang
    primary = (lang or "").replace("_", "-").split("-")[0].lower()
    return primary if primary in LANGUAGES else None


# ------------------------------------------------------------------------ reading the tables


@functools.cache
def load_tables(data_dir: Path = DATA_DIR) -> Tables:
    """Reads and checks the YAML tables; raises EntityDataError naming the file and entry."""
    countries = _read(data_dir / "countries.yaml")
    orgs = _read(data_dir / "orgs.yaml")
    docs = _read(data_dir / "doc_types.yaml")
    names = (
        *_country_aliases(countries),
        *_org_aliases(orgs),
        *_aliases_by_lang(countries.get("blockers", {}), (), "countries.yaml blockers"),
        *_aliases_by_lang(orgs.get("blockers", {}), (), "orgs.yaml blockers"),
    )
    _check_conflicts(names)
    neighbours = countries.get("person_name_neighbours", {})
    before, after = (_words(neighbours.get(side, ()), f"person_name_neighbours {side}") for side in ("before", "after"))
    return Tables(
        names=names,
        cues=_cue_aliases(docs),
        signing=_aliases_by_lang(docs.get("signing", {}), (("sign", ""),), "doc_types.yaml signing"),
        implies=tuple((org, tuple(entry.get("implies", ()))) for org, entry in orgs["orgs"].items()),
        name_neighbours=(before, after),
    )


def _words(words: Iterable, where: str) -> frozenset[str]:
    if not all(isinstance(word, str) for word in words):
        raise EntityDataError(f"countries.yaml {where}: every entry must be a word (quote yes/no/on)")
    return frozenset(word.lower() for word in words)


_COUNTRY_CODE = re.compile(r"[A-Z]{2}")


def _codes(codes: Iterable, where: str) -> tuple[Target, ...]:
    bad = [code for code in codes if not _COUNTRY_CODE.fullmatch(str(code))]
    if bad:
        raise EntityDataError(f"{where}: {bad} not ISO 3166-1 alpha-2 codes")
    return tuple(("country", code) for code in codes)


# ruamel's pure-Python parser takes most of a second over the tables. A JSON copy of what it read,
# kept beside them like Python's own bytecode cache and named by a hash of the YAML text, loads in
# milliseconds; the checks run on the data either way, so errors read the same.
_CACHE_DIR = "__pycache__"


def _read(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise EntityDataError(f"{path.name}: cannot read: {error}") from error
    digest = hashlib.sha256(f"{YAML_VERSION}\n{text}".encode()).hexdigest()[:16]  # a new parser reads anew
    cache = path.parent / _CACHE_DIR / f"{path.name}.{digest}.json"
    data = _cached(cache)
    if data is None:
        data = _parse(path.name, text)
        _keep(cache, data)
    if not isinstance(data, dict):
        raise EntityDataError(f"{path.name}: expected a mapping at the top")
    return data


def _parse(name: str, text: str) -> Any:
    try:
        return YAML(typ="safe").load(text)
    except YAMLError as error:
        raise EntityDataError(f"{name}: cannot read: {error}") from error


def _cached(cache: Path) -> dict | None:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no copy yet, or a broken one: the YAML is read
        return None
    return data if isinstance(data, dict) else None


def _keep(cache: Path, data: Any) -> None:
    """Writes the JSON copy when it reads back equal (JSON has no dates, no number keys).

    Where the folder is read-only (a package installed by root), nothing is written and the YAML is
    read each time, as before, unless the copy was made at install time (python -c "from
    monitor.entities import load_tables; load_tables()").
    """
    if not isinstance(data, dict):
        return
    try:
        text = json.dumps(data, ensure_ascii=False)
    except (TypeError, ValueError):
        return
    if json.loads(text) != data:
        return
    try:
        cache.parent.mkdir(exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=cache.parent, prefix=f".{cache.name}.")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(partial, 0o644)  # readable by all, like the YAML and bytecode (mkstemp makes it private)
        os.replace(partial, cache)  # whole or not at all, for a reader in another process
        for stale in cache.parent.glob(f"{cache.name.rsplit('.', 2)[0]}.*.json"):
            if stale != cache:
                stale.unlink(missing_ok=True)  # the copy of an older YAML text
    except OSError:
        return


def _country_aliases(data: dict) -> Iterator[Alias]:
    for code, by_lang in data["countries"].items():
        yield from _aliases_by_lang(by_lang, _codes([code], "countries.yaml"), f"countries.yaml {code}")
    for lang, compounds in data.get("compounds", {}).items():
        for text, codes in compounds.items():
            yield from _expand(text, lang, _codes(codes, f"countries.yaml compounds {text}"), {})


def _org_aliases(data: dict) -> Iterator[Alias]:
    for org, entry in data["orgs"].items():
        if org not in ORG_IDS:
            raise EntityDataError(f"orgs.yaml: {org!r} is not one of {', '.join(ORG_IDS)}")
        unknown = [o for o in entry.get("implies", ()) if o not in ORG_IDS]
        if unknown:
            raise EntityDataError(f"orgs.yaml {org}: implies unknown {unknown}")
        by_lang = {k: v for k, v in entry.items() if k != "implies"}
        yield from _aliases_by_lang(by_lang, (("org", org),), f"orgs.yaml {org}")


def _cue_aliases(data: dict) -> tuple[Alias, ...]:
    cues: list[Alias] = []
    for doc_type, by_lang in data["cues"].items():
        if doc_type not in DOC_TYPES:
            raise EntityDataError(f"doc_types.yaml: {doc_type!r} is not one of {', '.join(DOC_TYPES)}")
        cues.extend(_aliases_by_lang(by_lang, (("doc", doc_type),), f"doc_types.yaml {doc_type}"))
    cues.extend(_aliases_by_lang(data.get("blockers", {}), (), "doc_types.yaml blockers"))
    return tuple(cues)


def _aliases_by_lang(by_lang: Mapping, targets: tuple[Target, ...], where: str) -> tuple[Alias, ...]:
    aliases: list[Alias] = []
    for lang, entries in by_lang.items():
        if lang not in LANGUAGES:
            raise EntityDataError(f"{where}: unknown language {lang!r}")
        for entry in entries or ():
            text, options = (entry, {}) if isinstance(entry, str) else (entry.get("alias"), entry)
            if not isinstance(text, str) or not text.strip("=* "):
                raise EntityDataError(f"{where} {lang}: bad alias {entry!r}")
            aliases.extend(_expand(text, lang, targets, options))
    return tuple(aliases)


_OPTIONS = {"alias", "strict_lang", "person_name", "unless_near", "instead"}


def _expand(text: str, lang: str, targets: tuple[Target, ...], options: Mapping) -> Iterator[Alias]:
    """The alias as written, plus its inflected forms (Russian cases, German genitive)."""
    unknown = set(options) - _OPTIONS
    if unknown:
        raise EntityDataError(f"{text!r}: unknown option(s) {sorted(unknown)}")
    exact = text.startswith("=") or (
        any(c.isupper() for c in text) and not any(c.islower() for c in text) and len(text) > 1
    )
    text = text.lstrip("=")
    strict, person = bool(options.get("strict_lang")), bool(options.get("person_name"))
    near = tuple(normalise(cue).folded for cue in options.get("unless_near", ()))
    instead = _codes(options["instead"], f"{text!r} instead") if "instead" in options else ()
    forms = (text,) if exact or "*" in text else _inflect(text, lang)
    for form in dict.fromkeys(forms):
        yield Alias(
            text=form, lang=lang, targets=targets, exact_case=exact, strict_lang=strict, person_name=person,
            unless_near=near, instead=instead,
        )  # fmt: skip


def _inflect(text: str, lang: str) -> tuple[str, ...]:
    if lang == "ru":
        return _russian_forms(text)
    if lang == "de":
        return _german_forms(text)
    return (text,)


_RU_ENDINGS = (  # nominative ending -> the endings of the other cases (unions, harmless extras)
    ("ия", "ия ии ию ией ие"), ("ея", "ея еи ею еей ее"), ("а", "а ы и е у ой ою"),
    ("я", "я и е ю ей"), ("й", "й я ю ем е"), ("ь", "ь я ю ем е и ью"), ("ы", "ы ов ам ами ах"),
)  # fmt: skip
_RU_ADJECTIVE = ("ая", "яя", "ое", "ее", "ые", "ие", "ий", "ый", "ой")
_RU_VOWELS = "аяыиоеуюйь"


def _russian_forms(text: str) -> tuple[str, ...]:
    """Россия -> России, Россию...; Иран -> Ирана...; each word of a phrase -> its stem*."""
    words = _SEP_RUN.split(text.strip())
    if len(words) > 1:
        return (" ".join(_russian_stem(w) for w in words),)
    word = words[0]
    for ending, endings in _RU_ENDINGS:
        if word.endswith(ending):
            stem = word[: -len(ending)]
            return tuple(stem + e for e in endings.split())
    if word[-1].lower() in "оеиуюэ" or not word[-1].isalpha():
        return (word,)  # foreign names in -о, -и, -у are not declined (Того, Чили, Перу)
    return tuple(word + e for e in ("", "а", "у", "ом", "ем", "е"))


def _russian_stem(word: str) -> str:
    if not word.isalpha() or len(word) <= 3:
        return word
    lower = word.lower()
    cut = 2 if lower.endswith(_RU_ADJECTIVE) else 1 if lower[-1] in _RU_VOWELS else 0
    stem = word[: len(word) - cut]
    return stem + "*" if len(stem) >= 3 else word


def _german_forms(text: str) -> tuple[str, ...]:
    """Russland -> Russlands; Vereinigtes Königreich -> Vereinigt* Königreich* (any declension)."""
    words = _SEP_RUN.split(text.strip())
    if len(words) > 1:
        return (" ".join(_german_stem(w) for w in words),)
    if text.lower().endswith(("s", "ss", "x", "z", "ei", "e")):
        return (text,)
    return (text, text + "s")


def _german_stem(word: str) -> str:
    if not word.isalpha() or len(word) < 4:
        return word
    for ending in ("es", "er", "en", "em", "e"):
        if word.endswith(ending) and len(word) - len(ending) >= 4:
            return word[: -len(ending)] + "*"
    return word + "*"


def _check_conflicts(aliases: Iterable[Alias]) -> None:
    """The same alias in the same language may not name two different things."""
    seen: dict[tuple[str, str, bool], Alias] = {}
    for alias in aliases:
        key = (normalise(alias.text).folded, alias.lang, alias.exact_case)
        other = seen.setdefault(key, alias)
        if other.targets != alias.targets and not (other.unless_near or alias.unless_near):
            raise EntityDataError(f"{alias.lang} alias {alias.text!r} names both {other.targets} and {alias.targets}")


# ----------------------------------------------------------------------------- entry points


@functools.cache
def default_extractor() -> EntityExtractor:
    """The extractor over the bundled tables, shared; it reads and compiles them on first use."""
    return EntityExtractor()


def extract(title: str, text: str, lang: str | None = None) -> Entities:
    """Countries, organisations and document type of one item (see the module docstring)."""
    return default_extractor().extract(title, text, lang)
