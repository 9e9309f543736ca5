"""Detection benchmark: precision, recall and F1 of the bundled rule pack on labelled texts.

    python bench/detection.py [FILE ...] [--errors] [--json PATH]

Each FILE is JSON Lines with `title`, `text`, `language`, `label` (relevant | not_relevant)
and an optional `note`; the default is every tests/data/detection/*.jsonl but the blind holdout*.jsonl
sets, which are read only when named. A text counts as
relevant when any rule fires. Two baselines run on the same texts for comparison: a naive
multilingual keyword list and an English-only `cyber OR "information security"` alert.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from monitor.match import Document, Matcher, WatchRule, compile_rules  # noqa: E402
from monitor.rulepack import load_pack  # noqa: E402

DEFAULT_GLOB = "tests/data/detection/*.jsonl"
RELEVANT = "relevant"
LABELS = frozenset({RELEVANT, "not_relevant"})

NAIVE_TERMS = (
    "cyber*", "кибер*", "кібер*", "ciber*", "网络", "網絡", "網路", "黑客", "駭客",
    "информационн* безопасност*", "sécurité informatique", "sécurité de l'information",
    "seguridad informática", "Cybersicherheit", "IT-Sicherheit", "信息安全", "資安",
    "سيبران*", "الأمن الإلكتروني", "hacker*", "хакер*", "ransomware", "information security",
)
ENGLISH_TERMS = ("cyber*", "information security")


@dataclass(frozen=True)
class Example:
    title: str
    text: str
    language: str
    relevant: bool
    source: str  # file name
    note: str = ""


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, predicted: bool, actual: bool) -> None:
        if predicted and actual:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif actual:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def figures(self) -> dict[str, float | int]:
        rounded = {"precision": self.precision, "recall": self.recall, "f1": self.f1}
        return {**asdict(self), **{k: round(v, 4) for k, v in rounded.items()}}


def load_examples(path: Path) -> list[Example]:
    """Read one JSON Lines file; a bad line raises ValueError naming file and line."""
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            examples.append(_example(json.loads(line), f"{path.name}:{number}", path.name))
    return examples


def _example(row: dict[str, str], where: str, source: str) -> Example:
    missing = [key for key in ("title", "text", "language", "label") if key not in row]
    if missing or row["label"] not in LABELS:
        raise ValueError(f"{where}: needs title, text, language and label in {sorted(LABELS)}")
    return Example(row["title"], row["text"], row["language"], row["label"] == RELEVANT, source, row.get("note", ""))


def document(example: Example) -> Document:
    return Document(example.title, example.text, lang=example.language)


def baseline(name: str, terms: Sequence[str]) -> Matcher:
    return compile_rules([WatchRule(name=name, topic="baseline", any=tuple(terms))])


def classifiers() -> dict[str, Matcher]:
    """The pack and the two baselines, by column name."""
    return {
        "pack": compile_rules(load_pack()),
        "naive-keywords": baseline("naive-keywords", NAIVE_TERMS),
        "english-only": baseline("english-only", ENGLISH_TERMS),
    }


def predictions(matcher: Matcher, examples: Iterable[Example]) -> list[list[str]]:
    """For each example, the names of the rules that fired."""
    return [[m.rule for m in matcher.match(document(example))] for example in examples]


def score(examples: Sequence[Example], fired: Sequence[list[str]], key: Callable[[Example], str]) -> dict[str, Score]:
    """Scores overall ("all") and per group given by `key`."""
    scores: dict[str, Score] = {"all": Score()}
    for example, rules in zip(examples, fired, strict=True):
        for group in ("all", key(example)):
            scores.setdefault(group, Score()).add(bool(rules), example.relevant)
    return scores


def evaluate(examples: Sequence[Example], matchers: dict[str, Matcher]) -> dict[str, dict[str, dict[str, Score]]]:
    """classifier -> view ("language" | "file") -> group -> Score."""
    result = {}
    for name, matcher in matchers.items():
        fired = predictions(matcher, examples)
        result[name] = {
            "language": score(examples, fired, lambda e: e.language),
            "file": score(examples, fired, lambda e: e.source),
        }
    return result


def throughput(matcher: Matcher, examples: Sequence[Example], rounds: int = 5) -> float:
    """Items matched per CPU second by the whole pack on one core (best of `rounds` passes).

    CPU time rather than wall time: on a shared machine other processes would count.
    """
    documents = [document(example) for example in examples] * max(1, 1000 // max(1, len(examples)))
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for doc in documents:
            matcher.match(doc)
        best = min(best, time.process_time() - started)
    return len(documents) / max(best, 1e-9)


def machine_speed() -> float:
    """CPU microseconds for a fixed pure-Python loop, to compare throughput across machines."""
    best = float("inf")
    for _ in range(20):
        started = time.process_time()
        for _ in range(100):
            sum(range(1000))
        best = min(best, time.process_time() - started)
    return best * 1e4


def table(results: dict[str, dict[str, dict[str, Score]]], view: str) -> str:
    names = list(results)
    header = f"{view:<16}{'n':>5}  " + "".join(f"{n + ' P/R/F1':<26}" for n in names)
    lines = [header, "-" * len(header)]
    groups = sorted(results[names[0]][view], key=lambda g: (g != "all", g))
    for group in groups:
        first = results[names[0]][view][group]
        cells = "".join(_cell(results[n][view][group]) for n in names)
        count = first.tp + first.fp + first.fn + first.tn
        lines.append(f"{group:<16}{count:>5}  {cells}")
    return "\n".join(lines)


def _cell(s: Score) -> str:
    return f"{s.precision:.3f} {s.recall:.3f} {s.f1:.3f}".ljust(26)


def errors(examples: Sequence[Example], fired: Sequence[list[str]]) -> list[str]:
    lines = []
    for example, rules in zip(examples, fired, strict=True):
        if bool(rules) != example.relevant:
            kind = f"FP {','.join(rules)}" if rules else "FN"
            lines.append(f"{kind} [{example.source} {example.language}] {example.title} | {example.text[:120]}")
    return sorted(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # blind sets (holdout*.jsonl) are read only when named, so tuning never sees them by accident
    tuning = sorted(p for p in ROOT.glob(DEFAULT_GLOB) if not p.name.startswith("holdout"))
    paths = [Path(p) for p in args.files] or tuning
    examples = [example for path in paths for example in load_examples(path)]
    matchers = classifiers()
    results = evaluate(examples, matchers)
    speed = throughput(matchers["pack"], examples)
    quiet = [e for e, rules in zip(examples, predictions(matchers["pack"], examples), strict=True) if not rules]
    quiet_speed = throughput(matchers["pack"], quiet) if quiet else 0.0
    pack = results["pack"]["language"]["all"]
    print(f"{len(examples)} texts from {', '.join(p.name for p in paths)}; {len(matchers['pack'].rules)} rules")
    print(f"pack: precision {pack.precision:.3f}  recall {pack.recall:.3f}  F1 {pack.f1:.3f}  {pack}\n")
    print(table(results, "language") + "\n\n" + table(results, "file"))
    print(f"\nthroughput (whole pack, one core): {speed:,.0f} items/s on these texts, "
          f"{quiet_speed:,.0f} items/s on those no rule fires on (most of a real feed)")
    print(f"machine: sum(range(1000)) takes {machine_speed():.0f} us here (a 2020s laptop: about 8)")
    if args.errors:
        print("\n" + "\n".join(errors(examples, predictions(matchers["pack"], examples))))
    if args.json:
        _write_json(Path(args.json), results, {"all": speed, "no_rule_fires": quiet_speed}, len(examples))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help=f"JSON Lines files (default: {DEFAULT_GLOB})")
    parser.add_argument("--errors", action="store_true", help="list false positives and negatives")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    return parser


def _write_json(
    path: Path, results: dict[str, dict[str, dict[str, Score]]], speed: dict[str, float], count: int
) -> None:
    figures = {
        name: {view: {group: s.figures() for group, s in groups.items()} for view, groups in views.items()}
        for name, views in results.items()
    }
    rates = {key: round(value) for key, value in speed.items()}
    payload = {"texts": count, "throughput_items_per_s": rates, "results": figures}
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
