"""The match stage: run the watch rules and the entity extractor over new or changed items."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from monitor.config import Config, Source
from monitor.models import Item
from monitor.store import Analysis


@dataclass(frozen=True)
class Analyser:
    """Compiled once per process from the configuration; pure, so safe to share between threads."""

    matcher: object | None = None  # monitor.match.Matcher

    @property
    def rule_count(self) -> int:
        return len(getattr(self.matcher, "rules", ()))

    def analyse(self, items: Sequence[Item], source: Source) -> dict[str, Analysis]:
        return {item.guid: self.analyse_one(item, source) for item in items}

    def analyse_one(self, item: Item, source: Source) -> Analysis:
        return Analysis()


def build_analyser(config: Config) -> Analyser:
    return Analyser()
