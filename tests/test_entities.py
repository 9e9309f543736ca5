"""Entities: countries, organisations and doc type, checked on the cases in tests/data/entities/."""

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from monitor import entities
from monitor.entities import DOC_TYPES, ORG_IDS, Entities, EntityDataError, extract, load_tables

CASES_DIR = Path(__file__).parent / "data" / "entities"
CASE_KEYS = {"name", "lang", "title", "text", "countries", "orgs", "doc_type", "not_countries", "not_orgs"}


def load_cases() -> list:
    cases = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        for case in YAML(typ="safe").load(path.read_text(encoding="utf-8")):
            assert set(case) <= CASE_KEYS, f"{path.name}: unknown keys {set(case) - CASE_KEYS}"
            cases.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return cases


CASES = load_cases()


@pytest.mark.parametrize("case", CASES)
def test_case(case: dict) -> None:
    got = extract(case["title"], case.get("text", ""), case.get("lang"))
    expected = {key: case[key] for key in ("countries", "orgs", "doc_type") if key in case}
    actual = {"countries": list(got.countries), "orgs": list(got.orgs), "doc_type": got.doc_type}
    assert {key: actual[key] for key in expected} == expected
    assert not set(case.get("not_countries", ())) & set(got.countries)
    assert not set(case.get("not_orgs", ())) & set(got.orgs)


def test_cases_cover_every_language_and_type() -> None:
    cases = [param.values[0] for param in CASES]
    assert len(cases) >= 60
    languages = {case["lang"] for case in cases}
    assert languages >= set(entities.LANGUAGES)
    assert {case["doc_type"] for case in cases if "doc_type" in case} == set(DOC_TYPES)


def test_result_is_sorted_and_unique() -> None:
    got = extract("USA, Russia, China", "Russian and American and Chinese officials, UN, EU and the UN")
    assert got == Entities(countries=("CN", "RU", "US"), orgs=("EU", "UN"), doc_type="news-report")


@pytest.mark.parametrize("lang", [None, "xx", "en-GB", "ru_RU", "ZH"])
def test_any_language_tag_is_accepted(lang: str | None) -> None:
    assert "RU" in extract("Россия и Russia", "", lang).countries


def test_empty_item() -> None:
    assert extract("", "") == Entities(countries=(), orgs=(), doc_type="news-report")


def test_tables_cover_the_fixed_lists() -> None:
    tables = load_tables()
    named = {code for alias in tables.names for kind, code in alias.targets if kind == "country"}
    orgs = {code for alias in tables.names for kind, code in alias.targets if kind == "org"}
    assert len(named) >= 249
    assert orgs == set(ORG_IDS)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("countries.yaml", "countries: {Russia: {en: [Russia]}}", "not ISO 3166-1"),
        ("countries.yaml", "countries: {}\ncompounds: {en: {Sino-Russian: [CN, Russia]}}", "not ISO 3166-1"),
        ("countries.yaml", "countries: {}\nperson_name_neighbours: {before: [1]}", "must be a word"),
        ("countries.yaml", "countries: {RU: {xx: [Russia]}}", "unknown language"),
        ("countries.yaml", "countries: {RU: {en: [{alias: Russia, colour: red}]}}", "unknown option"),
        ("countries.yaml", "countries: {RU: {en: [Georgia]}, GE: {en: [Georgia]}}", "names both"),
        ("orgs.yaml", "orgs: {WHO: {en: [World Health Organization]}}", "not one of"),
        ("doc_types.yaml", "cues: {memo: {en: [memo]}}", "not one of"),
        ("doc_types.yaml", "[not, a, mapping]", "expected a mapping"),
    ],
)
def test_bad_tables_are_refused(tmp_path: Path, name: str, text: str, message: str) -> None:
    minimal = {"countries.yaml": "countries: {}", "orgs.yaml": "orgs: {}", "doc_types.yaml": "cues: {}"}
    for file, content in (minimal | {name: text}).items():
        (tmp_path / file).write_text(content, encoding="utf-8")
    with pytest.raises(EntityDataError, match=message):
        load_tables(tmp_path)


def test_extractor_over_own_tables(tmp_path: Path) -> None:
    (tmp_path / "countries.yaml").write_text("countries: {RU: {ru: [Россия]}}", encoding="utf-8")
    (tmp_path / "orgs.yaml").write_text("orgs: {UN: {ru: [ООН]}}", encoding="utf-8")
    (tmp_path / "doc_types.yaml").write_text("cues: {speech: {ru: [выступлени*]}}", encoding="utf-8")
    extractor = entities.EntityExtractor(load_tables(tmp_path))
    got = extractor.extract("Выступление в ООН", "о России; в Оон", "ru")
    assert got == Entities(countries=("RU",), orgs=("UN",), doc_type="speech")
