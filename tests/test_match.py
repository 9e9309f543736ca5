"""The rule engine, text folding and the bundled pack.

Cases live in tests/data/match/*.yaml, each with its expected result beside it:

    - name: what the case shows
      rules: [{name: r, any: [...], ...}]   # or `pack: true` for the bundled pack
      title: ...                            # optional
      text: ...
      lang / source / source_tags: ...      # optional document fields
      fires: [r]                            # rules that must fire
      not_fires: [...]                      # rules that must not
      hits: {r: [{term: ..., field: text, found: "exact original substring"}]}
      snippet: {r: "expected snippet"}      # optional
      marked: {r: ["substrings marked in the snippet"]}
      error: ["substrings", "of the RuleError"]   # instead of fires: compiling must fail

tests/data/match/rulepack-errors.yaml holds malformed pack files and the error each gives.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from monitor.match import Document, Matcher, RuleError, WatchRule, compile_rules, snippet
from monitor.rulepack import load_pack, parse_topic, parse_vocabulary
from monitor.textnorm import Normaliser, fold, fold_char, normalise

ROOT = Path(__file__).resolve().parents[1]
CASES_DIR = ROOT / "tests" / "data" / "match"
DEV_SET = ROOT / "tests" / "data" / "detection" / "dev.jsonl"
TOPICS = {
    "un-processes", "cybercrime-convention", "budapest-convention", "norms-international-law",
    "infosec-agreements", "attribution-sanctions", "ransomware-cooperation", "critical-infrastructure",
    "confidence-building", "internet-governance",
}


def _load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def _cases(kind: str) -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        if path.name == "rulepack-errors.yaml":
            continue
        for case in _load(path):
            if ("error" in case) == (kind == "error"):
                params.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return params


@pytest.fixture(scope="module")
def pack_matcher() -> Matcher:
    return compile_rules(load_pack())


def _rule(spec: dict[str, Any]) -> WatchRule:
    fields = {key: tuple(value) if isinstance(value, list) else value for key, value in spec.items()}
    if "source_tags" in spec:
        fields["source_tags"] = tuple((k, v) for k, v in spec["source_tags"].items())
    return WatchRule(**{"topic": "test", **fields})


def _document(case: dict[str, Any]) -> Document:
    tags = tuple(case.get("source_tags", {}).items())
    return Document(case.get("title", ""), case.get("text", ""), case.get("lang"), case.get("source", ""), tags)


@pytest.mark.parametrize("case", _cases("match"))
def test_match_case(case: dict[str, Any], pack_matcher: Matcher) -> None:
    matcher = pack_matcher if case.get("pack") else compile_rules(_rule(r) for r in case["rules"])
    doc = _document(case)
    matches = {m.rule: m for m in matcher.match(doc)}
    assert set(case.get("fires", [])) <= set(matches), f"fired: {sorted(matches)}"
    assert not set(case.get("not_fires", [])) & set(matches), f"fired: {sorted(matches)}"
    if "relevant" in case:
        assert bool(matches) == case["relevant"], f"fired: {sorted(matches)}"
    for rule, expected in case.get("hits", {}).items():
        found = [{"term": h.term, "field": h.field, "found": getattr(doc, h.field)[h.start : h.end]}
                 for h in matches[rule].hits]
        assert found == expected
    for rule, expected in case.get("snippet", {}).items():
        assert matches[rule].snippet == expected
    for rule, expected in case.get("marked", {}).items():
        m = matches[rule]
        assert [m.snippet[start:end] for start, end in m.marks] == expected


@pytest.mark.parametrize("case", _cases("error"))
def test_bad_rule_is_refused_with_a_helpful_message(case: dict[str, Any]) -> None:
    with pytest.raises(RuleError) as raised:
        compile_rules(_rule(r) for r in case["rules"])
    for part in case["error"]:
        assert part in str(raised.value)


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c["name"]) for c in _load(CASES_DIR / "rulepack-errors.yaml")]
)
def test_malformed_pack_file_names_file_and_key(case: dict[str, Any]) -> None:
    vocabulary = parse_vocabulary(case.get("vocabulary", {"cyber": ["cyber*"]}), "_vocabulary.yaml")
    with pytest.raises(RuleError) as raised:
        parse_topic(case["data"], case["file"], vocabulary, expected_topic=case["file"].removesuffix(".yaml"))
    for part in case["error"]:
        assert part in str(raised.value)


def test_pack_loads_and_every_rule_compiles() -> None:
    rules = load_pack()
    assert {rule.topic for rule in rules} == TOPICS
    assert len({rule.name for rule in rules}) == len(rules)
    assert len(compile_rules(rules).rules) == len(rules)  # raises RuleError on any bad term


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_detection", ROOT / "bench" / "detection.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_dev_set_scores_at_least_95_percent(pack_matcher: Matcher) -> None:
    bench = _bench()
    examples = bench.load_examples(DEV_SET)
    assert len(examples) >= 150
    assert all(sum(e.language == lang for e in examples) >= 15 for lang in ("en", "ru", "fr", "es", "de", "zh", "ar"))
    score = bench.evaluate(examples, {"pack": pack_matcher})["pack"]["language"]["all"]
    assert score.precision >= 0.95, bench.errors(examples, bench.predictions(pack_matcher, examples))
    assert score.recall >= 0.95, bench.errors(examples, bench.predictions(pack_matcher, examples))


def test_bench_beats_both_baselines_on_the_dev_set() -> None:
    bench = _bench()
    examples = bench.load_examples(DEV_SET)
    results = bench.evaluate(examples, bench.classifiers())
    f1 = {name: views["language"]["all"].f1 for name, views in results.items()}
    assert f1["pack"] > f1["naive-keywords"] + 0.1
    assert f1["pack"] > f1["english-only"] + 0.1
    assert "pack P/R/F1" in bench.table(results, "language")


def test_whole_string_folding_equals_folding_each_character() -> None:
    """The fast path (whole string) and the offset-keeping path agree on every BMP character."""
    normaliser = Normaliser()
    for block in range(0, 0x10000, 256):
        chars = "".join(chr(c) for c in range(block, block + 256) if not 0xD800 <= c <= 0xDFFF)
        text = "a" + " ".join(chars)  # a letter first, so that marks have something to sit on
        norm = normaliser(text)
        assert norm.text == fold(text), f"block U+{block:04X}"
        folded_at = 0
        for index, char in enumerate(text):
            width = len(fold_char(char))
            if width:
                start, end = norm.span(folded_at, folded_at + width)
                assert start <= index < end, f"U+{ord(char):04X}"
            folded_at += width


def test_offsets_map_back_through_expanding_and_vanishing_characters() -> None:
    text = "Stra\u00dfe \ufb01nal cyber\u00adsecurity caf\u0065\u0301 \u0640\u0627\u0644\u0623\u0645\u0646"
    norm = normalise(text)
    assert norm.text == "strasse final cybersecurity cafe الامن"
    for word in ("strasse", "final", "cybersecurity", "cafe", "الامن"):
        start = norm.text.index(word)
        original = text[slice(*norm.span(start, start + len(word)))]
        assert fold(original) == word


def test_snippet_cuts_at_words_and_marks_every_span_inside() -> None:
    text = ("Lorem ipsum dolor sit amet, " * 8) + "the OEWG met on ICT security. " + ("Etiam porta sem. " * 12)
    start = text.index("OEWG")
    cut, marks = snippet(text, [(start, start + 4), (text.index("ICT"), text.index("ICT") + 12)])
    assert cut.startswith("…") and cut.endswith("…") and len(cut) <= 210
    assert [cut[s:e] for s, e in marks] == ["OEWG", "ICT security"]
    assert snippet("short text", []) == ("short text", ())


def _found(terms: list[str], text: str) -> list[tuple[str, str]]:
    matcher = compile_rules([WatchRule("r", "test", any=tuple(terms))])
    return [(hit.term, text[hit.start : hit.end]) for m in matcher.match(Document("", text)) for hit in m.hits]


@pytest.mark.parametrize(
    ("terms", "text", "expected"),
    [
        # texts with marks use the full wildcard (marks stay inside the word), compiled on first use
        (["साइबर*"], "नई साइबरसुरक्षा नीति", [("साइबर*", "साइबरसुरक्षा")]),
        (["साइबर* हमल*"], "भारत पर साइबर हमले की जांच", [("साइबर* हमल*", "साइबर हमले")]),
        (["cyber"], "cyber\ufe0f attack", []),  # a variation selector is a mark: the word goes on
        # the next-word shortcut keeps the phrase semantics: any short gap, whole second word
        (["cyber security"], "cyber-security, cyber securities, cyber, security",
         [("cyber security", "cyber-security"), ("cyber security", "cyber, security")]),
        (["cyber secur*"], "cyber securities", [("cyber secur*", "cyber securities")]),
        # a prefix anchor may run on through CJK characters: the next word is then not the one after it
        (["cyber* attack"], "a cyber中abc attack", [("cyber* attack", "cyber中abc attack")]),
        # a single word is found only as a whole word, never after Arabic clitics
        (["cyber"], "وcyber cyberattack cyber", [("cyber", "cyber")]),
    ],
)
def test_scanner_shortcuts_keep_the_term_semantics(terms: list[str], text: str, expected: list[Any]) -> None:
    assert _found(terms, text) == expected


def test_anchor_trie_checks_the_word_end_once_and_matches_like_a_check_per_leaf() -> None:
    """One word-end check after the trie (fast to compile) finds the same words as one per leaf."""
    import re

    from monitor.match import WORD_CHAR, _trie

    words = {"ab": False, "abc": False, "abd": True, "b": True, "bc": False, "cyber": False, "cyb": True}
    hoisted, per_leaf = _trie(words), _trie(words, at_leaves=True)
    assert hoisted.count(WORD_CHAR) == 1 and per_leaf.count(WORD_CHAR) > 1
    texts = ["ab", "abc", "abcd", "abd", "abde", "b", "bc", "bcd", "cyber", "cyberx", "cyb", "a", "ab\u093f", "ab中"]
    for text in texts:
        assert bool(re.match(hoisted, text)) == bool(re.match(per_leaf, text)), text


def test_word_positions_count_spaces_line_breaks_and_half_cjk_characters() -> None:
    from monitor.textnorm import WordPositions

    for text in ["", " ", "a b\nc", "  two  spaces\n\nand breaks ", "中文 text 한국어\n網", "tab\there"]:
        positions = WordPositions(text)
        for offset in range(len(text) + 1):
            cjk = sum(1 for char in text[:offset] if char in "中文한국어網")
            expected = text.count(" ", 0, offset) + text.count("\n", 0, offset) + 0.5 * cjk
            assert positions.before(offset) == expected, (text, offset)
        assert positions.length == positions.before(len(text)) + 1


def test_matcher_is_safe_to_share_between_threads(pack_matcher: Matcher) -> None:
    """The scanner's memo and lazily compiled patterns are shared: results must not depend on it."""
    from concurrent.futures import ThreadPoolExecutor

    bench = _bench()
    examples = bench.load_examples(DEV_SET)[:120]
    docs = [Document(e.title, e.text, e.language) for e in examples]
    fresh = compile_rules(load_pack())
    alone = [fresh.match(doc) for doc in docs]
    with ThreadPoolExecutor(4) as pool:
        shared = list(pool.map(compile_rules(load_pack()).match, docs * 2))
    assert shared == alone * 2
