"""Entities: countries, organisations and doc type, checked on the cases in tests/data/entities/."""

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
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


def write_tables(folder: Path, countries: str = "countries: {RU: {en: [Russia]}}") -> None:
    (folder / "countries.yaml").write_text(countries, encoding="utf-8")
    (folder / "orgs.yaml").write_text("orgs: {UN: {en: [UN]}}", encoding="utf-8")
    (folder / "doc_types.yaml").write_text("cues: {speech: {en: [speech]}}", encoding="utf-8")


def read_tables(folder: Path) -> entities.Tables:
    return load_tables.__wrapped__(folder)  # past functools.cache: read the folder again


def test_tables_are_read_from_the_json_copy_of_the_same_yaml(tmp_path: Path) -> None:
    write_tables(tmp_path)
    first = read_tables(tmp_path)
    (copy,) = (tmp_path / "__pycache__").glob("countries.yaml.*.json")
    assert json.loads(copy.read_text(encoding="utf-8")) == {"countries": {"RU": {"en": ["Russia"]}}}
    copy.write_text(json.dumps({"countries": {"RU": {"en": ["Rossiya"]}}}), encoding="utf-8")
    assert read_tables(tmp_path) != first
    assert read_tables(tmp_path).names[0].text == "Rossiya"


def test_a_changed_yaml_is_read_again(tmp_path: Path) -> None:
    write_tables(tmp_path)
    read_tables(tmp_path)
    write_tables(tmp_path, "countries: {FR: {en: [France]}}")
    assert read_tables(tmp_path).names[0].targets == (("country", "FR"),)
    assert len(list((tmp_path / "__pycache__").glob("countries.yaml.*.json"))) == 1  # the old copy is gone


def test_a_broken_or_unwritable_copy_is_passed_over(tmp_path: Path) -> None:
    write_tables(tmp_path)
    expected = read_tables(tmp_path)
    for copy in (tmp_path / "__pycache__").glob("*.json"):
        copy.write_text('{"countries": {"RU"', encoding="utf-8")
    assert read_tables(tmp_path) == expected
    shutil.rmtree(tmp_path / "__pycache__")
    (tmp_path / "__pycache__").write_text("not a folder", encoding="utf-8")
    assert read_tables(tmp_path) == expected


def test_checks_run_on_the_copy_too(tmp_path: Path) -> None:
    write_tables(tmp_path, "countries: {RU: {en: [Georgia]}, GE: {en: [Georgia]}}")
    for _ in range(2):  # from the YAML, then from its JSON copy
        with pytest.raises(EntityDataError, match="names both"):
            read_tables(tmp_path)
    assert list((tmp_path / "__pycache__").glob("countries.yaml.*.json"))


def test_data_json_cannot_hold_is_not_copied(tmp_path: Path) -> None:
    write_tables(tmp_path, "countries: {}\nperson_name_neighbours: {before: [1], after: [2020-01-01]}")
    with pytest.raises(EntityDataError, match="must be a word"):
        read_tables(tmp_path)
    assert not list((tmp_path / "__pycache__").glob("countries.yaml.*.json"))


@pytest.mark.parametrize(
    ("title", "text", "countries"),
    [
        ("Russia", "", ["RU"]),  # at the very start
        ("", "Russia", ["RU"]),  # at the start of the text, after the title
        ("Talks", "(Russia)\nRussia's", ["RU"]),
        ("Belarussia", "prorussian", []),  # never inside a word
        ("", "xRussia _Russia 3Russia Russia_", []),
        ("", "وبالصين", ["CN"]),  # Arabic clitics at the start
        ("", "(للصين) مالصين", ["CN"]),
        ("ابالصين", "", []),
        ("", "在中国", ["CN"]),  # Chinese: anywhere
    ],
)
def test_where_an_alias_may_start(title: str, text: str, countries: list[str]) -> None:
    assert list(extract(title, text).countries) == countries


def test_one_extractor_serves_many_threads() -> None:
    cases = [param.values[0] for param in CASES]
    extractor = entities.EntityExtractor(load_tables())  # tables given: nothing built yet

    def run(case: dict) -> Entities:
        return extractor.extract(case["title"], case.get("text", ""), case.get("lang"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(run, cases * 4))
    assert together == [run(case) for case in cases * 4]
