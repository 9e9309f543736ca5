"""The bundled cyber-diplomacy rule pack: one YAML file per topic, read strictly.

A topic file (`<topic>.yaml`, its `topic` equal to the file name):

    topic: un-processes
    description: one line for people
    rules:
      - name: un-oewg-ict
        any: [OEWG, "open-ended working group"]
        all: [$cyber]          # $name: the vocabulary list `name`, as ONE term (alternatives)
        none: [...]
        near: 12
        fields: [title, text]
        sources: [...]
        source_tags: {country: RU}   # or {country: [RU, BY]}
        tags: [un]
        langs: [ru]

`_vocabulary.yaml` maps names to term lists shared by all topic files. Unknown keys,
unknown $names and wrong types raise RuleError naming the file, the rule and the key.
Reading the files is the only I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from importlib.resources.abc import Traversable

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from monitor.match import RuleError, WatchRule

VOCABULARY_FILE = "_vocabulary.yaml"
TOPIC_KEYS = frozenset({"topic", "description", "rules"})
RULE_KEYS = frozenset(
    {"name", "any", "all", "none", "near", "fields", "sources", "source_tags", "tags", "langs"}
)
_TERM_KEYS = ("any", "all", "none")
_LIST_KEYS = ("fields", "sources", "tags", "langs")

Vocabulary = Mapping[str, tuple[str, ...]]


def load_pack() -> list[WatchRule]:
    """Every rule of the bundled pack, topic files in name order."""
    folder = files(__name__)
    vocabulary = parse_vocabulary(_read(folder / VOCABULARY_FILE), VOCABULARY_FILE)
    rules: list[WatchRule] = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.name.endswith(".yaml") and not path.name.startswith("_"):
            topic = path.name.removesuffix(".yaml")
            rules.extend(parse_topic(_read(path), path.name, vocabulary, expected_topic=topic))
    return rules


def _read(path: Traversable) -> object:
    try:
        return YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except YAMLError as exc:
        raise RuleError(f"{path.name}: not valid YAML: {exc}") from None


def parse_vocabulary(data: object, origin: str) -> Vocabulary:
    """name -> terms; a list may include `$name` of a list defined above it."""
    if not isinstance(data, dict):
        raise RuleError(f"{origin}: expected a mapping of name -> list of terms")
    vocabulary: dict[str, tuple[str, ...]] = {}
    for name, value in data.items():
        where = f"{origin}: vocabulary {name!r}"
        terms: list[str] = []
        for term in _strings(value, where):
            if "|" in term or term.startswith("/"):
                raise RuleError(f"{where}: {term!r}: no `|` or /regex/ in vocabulary; use a rule")
            terms.extend(_lookup(term[1:], vocabulary, where) if term.startswith("$") else [term])
        vocabulary[str(name)] = tuple(terms)
    return vocabulary


def _lookup(name: str, vocabulary: Vocabulary, where: str) -> tuple[str, ...]:
    if name not in vocabulary:
        known = ", ".join(sorted(vocabulary)) or "(none)"
        raise RuleError(f"{where}: unknown vocabulary ${name} (define it above its use); known: {known}")
    return vocabulary[name]


def parse_topic(
    data: object, origin: str, vocabulary: Vocabulary, expected_topic: str | None = None
) -> list[WatchRule]:
    """The rules of one topic file."""
    if not isinstance(data, dict):
        raise RuleError(f"{origin}: expected a mapping with `topic` and `rules`")
    _no_unknown_keys(data, TOPIC_KEYS, origin)
    topic = data.get("topic")
    if not isinstance(topic, str) or not topic:
        raise RuleError(f"{origin}: `topic` is missing; name the topic (e.g. topic: un-processes)")
    if expected_topic is not None and topic != expected_topic:
        raise RuleError(f"{origin}: topic {topic!r} differs from the file name; rename one")
    rules = data.get("rules")
    if not isinstance(rules, list) or not rules:
        raise RuleError(f"{origin}: `rules` must be a non-empty list")
    return [parse_rule(rule, topic, f"{origin}: rule #{n}", vocabulary) for n, rule in enumerate(rules, 1)]


def parse_rule(data: object, topic: str, origin: str, vocabulary: Vocabulary) -> WatchRule:
    """One rule mapping -> WatchRule (terms checked later, by compile_rules)."""
    if not isinstance(data, dict):
        raise RuleError(f"{origin}: expected a mapping with at least `name` and `any` or `all`")
    name = data.get("name")
    where = f"{origin} ({name!r})" if isinstance(name, str) else origin
    _no_unknown_keys(data, RULE_KEYS, where)
    if not isinstance(name, str) or not name:
        raise RuleError(f"{where}: `name` is missing; give the rule a unique name")
    near = data.get("near")
    if near is not None and (isinstance(near, bool) or not isinstance(near, int)):
        raise RuleError(f"{where}: `near` must be a whole number of words, not {near!r}")
    lists = {key: _strings(data[key], f"{where}: `{key}`") for key in _LIST_KEYS if key in data}
    terms = {key: _expand(data.get(key, []), vocabulary, f"{where}: `{key}`") for key in _TERM_KEYS}
    return WatchRule(
        name=name,
        topic=topic,
        near=near,
        source_tags=_source_tags(data.get("source_tags", {}), where),
        **terms,
        **lists,
    )


def _no_unknown_keys(data: dict[object, object], allowed: frozenset[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise RuleError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(sorted(allowed))}")


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RuleError(f"{where}: expected a list of strings (quote numbers), got {value!r}")
    return tuple(value)


def _expand(value: object, vocabulary: Vocabulary, where: str) -> tuple[str, ...]:
    """Replace each `$name` by its vocabulary list, joined into one alternatives term."""
    return tuple(
        " | ".join(_lookup(term[1:], vocabulary, where)) if term.startswith("$") else term
        for term in _strings(value, where)
    )


def _source_tags(value: object, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise RuleError(f"{where}: `source_tags` must be a mapping like {{country: RU}}")
    pairs: list[tuple[str, str]] = []
    for key, values in value.items():
        for item in values if isinstance(values, list) else [values]:
            if not isinstance(item, str):
                raise RuleError(f"{where}: `source_tags` {key!r}: values must be strings, got {item!r}")
            pairs.append((str(key), item))
    return tuple(pairs)
