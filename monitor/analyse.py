"""The match stage: run the watch rules and the entity extractor over new or changed items.

Rules are the bundled pack (monitor/rulepack/) unless `rule_packs: []`, plus the `rules:` of
sources.yaml; a user rule with a pack rule's name replaces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from monitor.config import Config, RuleSpec, Source
from monitor.entities import EntityExtractor, default_extractor
from monitor.match import Document, Matcher, WatchRule, compile_rules
from monitor.models import Item
from monitor.rulepack import load_pack
from monitor.store import Analysis


@dataclass(frozen=True)
class Analyser:
    """Compiled once per process from the configuration; pure, so safe to share between threads."""

    matcher: Matcher
    extractor: EntityExtractor

    @property
    def rule_count(self) -> int:
        return len(self.matcher.rules)

    def analyse(self, items: Sequence[Item], source: Source) -> dict[str, Analysis]:
        tags = source.tag_pairs()
        return {item.guid: self.analyse_text(item.title, item.summary, item.lang, source.id, tags) for item in items}

    def analyse_text(self, title: str, text: str, lang: str | None = None, source: str = "",
                     source_tags: tuple[tuple[str, str], ...] = ()) -> Analysis:
        matches = tuple(self.matcher.match(Document(title, text, lang, source, source_tags)))
        found = self.extractor.extract(title, text, lang)
        return Analysis(found.countries, found.orgs, found.doc_type, matches)


def watch_rule(spec: RuleSpec) -> WatchRule:
    return WatchRule(
        name=spec.name, topic=spec.topic, any=spec.any, all=spec.all, none=spec.none, near=spec.near,
        fields=spec.fields, sources=spec.sources, source_tags=tuple(sorted(spec.source_tags.items())),
        tags=spec.tags, langs=spec.langs,
    )


def active_rules(config: Config) -> list[WatchRule]:
    own = [watch_rule(r) for r in config.rules if r.enabled]
    replaced = {r.name for r in config.rules}
    pack = [r for r in load_pack() if r.name not in replaced] if "builtin" in config.rule_packs else []
    return pack + own


def build_analyser(config: Config) -> Analyser:
    return Analyser(compile_rules(active_rules(config)), default_extractor())
