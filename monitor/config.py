"""Load and validate sources.yaml once, into frozen objects.

Every problem is reported at once, each naming the file, the line and the key path. Unknown keys
are errors. YAML 1.2 (ruamel.yaml), so `country: NO` stays the string "NO". This module never
reads secrets' values: it only records the names of the environment variables that hold them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from monitor.config_delivery import SmtpSettings, Subscription, check_delivery
from monitor.config_types import Duration, Size, Strict, Text
from monitor.errors import ConfigError, Problem
from monitor.redact import redact

USER_AGENT = "diplowatch/0.1 (+https://github.com/diplowatch/diplowatch; cyber-diplomacy monitor)"
MAX_YAML_NODES = 200_000  # an alias bomb expands past this long before it hurts
MAX_INTERVAL = 365 * 86400.0  # a longer wait is a typo, and past ~2.7 million years datetime overflows
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110)


class Selectors(Strict):
    """CSS selectors that read a listing page: one `item` per statement, the rest inside it."""

    item: str
    link: str = "a[href]"
    title: str | None = None
    date: str | None = None
    summary: str | None = None

    @field_validator("item", "link", "title", "date", "summary")
    @classmethod
    def _css(cls, selector: str | None) -> str | None:
        """Compiled now, so a typo stops start-up with its line instead of failing every poll."""
        import soupsieve  # BeautifulSoup's CSS engine

        if selector is None:
            return None
        try:
            soupsieve.compile(selector)
        except (soupsieve.SelectorSyntaxError, TypeError, ValueError) as e:
            raise ValueError(f"{selector!r} is not a CSS selector: {str(e).splitlines()[0]}") from None
        return selector


class Source(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=80)
    url: str
    name: str = ""
    kind: Literal["feed", "html"] | None = None
    interval: Duration = 1800.0
    lang: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")
    tags: dict[str, Text] = {}
    headers: dict[str, Text] = {}
    enabled: bool = True
    selectors: Selectors | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s?#]+", url):
            raise ValueError(f"{redact(url)!r} is not an http(s) URL with a host")
        if re.search(r"\s", url):
            raise ValueError("a URL cannot contain spaces")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (reading it validates it)
        except ValueError as e:
            raise ValueError(f"{redact(url)!r} is not a valid URL ({e})") from None
        if not parts.hostname:
            raise ValueError(f"{redact(url)!r} is not an http(s) URL with a host")
        return url

    @field_validator("interval")
    @classmethod
    def _sane_interval(cls, seconds: float) -> float:
        if seconds > MAX_INTERVAL:
            raise ValueError("at most 365d")
        return seconds

    @field_validator("headers")
    @classmethod
    def _http_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not an HTTP header name (letters, digits and - only)")
            if re.search(r"[\r\n\x00]", value):
                raise ValueError(f"the value of {name} contains a line break, which would start another header")
        return headers

    @model_validator(mode="after")
    def _html_needs_selectors(self) -> Source:
        if self.kind == "html" and self.selectors is None:
            raise ValueError("kind: html needs `selectors` (at least `item`)")
        return self

    @property
    def label(self) -> str:
        return self.name or self.id

    def tag_pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.tags.items()))


class Settings(Strict):
    user_agent: str = Field(default=USER_AGENT, min_length=1)  # kremlin.ru answers nothing without one
    connect_timeout: Duration = 10.0
    read_timeout: Duration = 30.0
    fetch_deadline: Duration = 90.0
    max_body: Size = Field(default=10 * 1024 * 1024, ge=1024)
    max_redirects: int = Field(default=5, ge=0, le=20)
    concurrency: int = Field(default=32, ge=1, le=1000)
    per_host: int = Field(default=2, ge=1, le=100)
    tick: Duration = 5.0
    max_backoff: Duration = Field(default=6 * 3600.0, le=MAX_INTERVAL)
    failure_alert_after: int = Field(default=3, ge=1)


class RuleSpec(Strict):
    """A watch rule as written in sources.yaml; see monitor/match.py for the term language."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)
    topic: str = "custom"
    any: tuple[str, ...] = ()
    all: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    near: int | None = Field(default=None, ge=1, le=1000)
    fields: tuple[Literal["title", "text"], ...] = ("title", "text")
    sources: tuple[str, ...] = ()
    source_tags: dict[str, Text] = {}
    tags: tuple[str, ...] = ()
    langs: tuple[str, ...] = ()
    enabled: bool = True

    @model_validator(mode="after")
    def _has_terms(self) -> RuleSpec:
        if not (self.any or self.all):
            raise ValueError("a rule needs `any` or `all` terms")
        return self


class Config(Strict):
    """The whole validated configuration. `path` is the file it came from."""

    path: str = "sources.yaml"
    settings: Settings = Settings()
    sources: Annotated[tuple[Source, ...], BeforeValidator(lambda v: () if v is None else v)] = ()
    rule_packs: tuple[Literal["builtin"], ...] = ("builtin",)
    rules: tuple[RuleSpec, ...] = ()
    smtp: SmtpSettings | None = None
    subscriptions: tuple[Subscription, ...] = ()

    _delivery = model_validator(mode="after")(check_delivery)  # needs smtp and subscriptions together

    @property
    def enabled_sources(self) -> tuple[Source, ...]:
        return tuple(s for s in self.sources if s.enabled)

    def source(self, source_id: str) -> Source | None:
        return next((s for s in self.sources if s.id == source_id), None)


def load_config(path: str | Path) -> Config:
    """Read, parse and validate `path`; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = "file not found (set --config or DIPLOWATCH_CONFIG)"
        raise ConfigError([Problem(str(path), None, "", hint)]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([Problem(str(path), None, "", f"cannot read: {e}")]) from None
    data = _read_yaml(text, str(path))
    return _validate(data, str(path))


def _read_yaml(text: str, file: str) -> CommentedMap:
    yaml = YAML(typ="rt")  # round-trip loader: keeps line numbers; YAML 1.2; duplicate keys are errors
    try:
        data = yaml.load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError([Problem(file, line, "", f"invalid YAML: {e.problem or e}")]) from None
    except YAMLError as e:
        raise ConfigError([Problem(file, None, "", f"invalid YAML: {e}")]) from None
    except RecursionError:
        raise ConfigError([Problem(file, None, "", "invalid YAML: nested too deeply")]) from None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise ConfigError([Problem(file, 1, "", "the top level must be a mapping with a `sources:` list")])
    _check_size(data, file)
    return data


def _check_size(data: Any, file: str) -> None:
    for count, _ in enumerate(_walk(data), start=1):
        if count > MAX_YAML_NODES:
            msg = f"more than {MAX_YAML_NODES} values (a YAML alias bomb?): refusing to expand it"
            raise ConfigError([Problem(file, None, "", msg)])


def _walk(node: Any) -> Iterator[Any]:
    stack = [node]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _validate(data: CommentedMap, file: str) -> Config:
    problems = _duplicate_ids(data, file)
    try:
        config = Config.model_validate({**data, "path": file})
    except ValidationError as e:
        problems += [_problem(data, file, err) for err in e.errors()]
    else:
        problems += _rule_problems(data, file, config)
    if problems:
        raise ConfigError(_dedupe(problems))
    return config


def _rule_problems(data: CommentedMap, file: str, config: Config) -> list[Problem]:
    """Compile each of the user's rules once, so a bad term stops start-up with its line."""
    from monitor.analyse import watch_rule  # the rule engine depends on nothing here
    from monitor.match import RuleError, compile_rules

    problems = []
    for i, spec in enumerate(config.rules):
        try:
            compile_rules([watch_rule(spec)])
        except RuleError as e:
            problems.append(Problem(file, _line_of(data, ["rules", i]), f"rules[{i}] ({spec.name})", str(e)))
    return problems


def _duplicate_ids(data: CommentedMap, file: str) -> list[Problem]:
    sources = data.get("sources")
    if not isinstance(sources, CommentedSeq):
        return []
    first_line: dict[str, int] = {}
    problems = []
    for i, entry in enumerate(sources):
        if not isinstance(entry, CommentedMap) or not isinstance(entry.get("id"), str):
            continue
        line = entry.lc.key("id")[0] + 1
        if entry["id"] in first_line:
            msg = f"duplicate source id {entry['id']!r} (first used on line {first_line[entry['id']]})"
            problems.append(Problem(file, line, f"sources[{i}].id", msg))
        else:
            first_line[entry["id"]] = line
    return problems


def _problem(data: CommentedMap, file: str, err: Any) -> Problem:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    line = _line_of(data, loc)
    key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
    key = _with_id(data, loc, key)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key (check its spelling and indentation)"
    return Problem(file, line, key, message)


def _with_id(data: Any, loc: list, key: str) -> str:
    """`sources[3].interval` -> `sources[3] (tass-en).interval`, to be findable by eye."""
    if len(loc) >= 2 and loc[0] == "sources" and isinstance(loc[1], int):
        try:
            source_id = data["sources"][loc[1]].get("id")
        except (KeyError, IndexError, TypeError, AttributeError):
            return key
        if source_id:
            return key.replace(f"sources[{loc[1]}]", f"sources[{loc[1]}] ({source_id})", 1)
    return key


def _line_of(data: Any, loc: list) -> int | None:
    """The 1-based line of the deepest key on `loc` that exists in the YAML document."""
    node, line = data, None
    for part in loc:
        try:
            if isinstance(node, CommentedMap) and part in node:
                line = node.lc.key(part)[0] + 1
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                line = node.lc.item(part)[0] + 1
            else:
                break
            node = node[part]
        except (AttributeError, KeyError, TypeError):
            break
    return line


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for p in problems:
        if str(p) not in seen:
            seen.add(str(p))
            out.append(p)
    return out
