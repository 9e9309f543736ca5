"""Configuration of digests: the `smtp:` block and `subscriptions:` (validated with config.py).

Validators raise ValueError, so config.py reports each problem with its file, line and key path.
Secrets never appear here: `password_env` and `secret_env` hold the NAMES of environment variables,
read only at the moment of sending (monitor/deliver/). The shape, as documented in docs/digests.md:

    smtp: {host: smtp.example.org, port: 587, security: starttls, username: bot,
           password_env: DW_SMTP_PASSWORD, sender: diplowatch@example.org}
    subscriptions:
      - name: analysts
        cron: "0 7 * * 1-5"
        timezone: Europe/Zurich
        topics: [un-processes]
        email: {to: [desk@example.org]}
        webhook: {url: "https://hooks.example.org/x", format: json, secret_env: DW_HOOK_SECRET}
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Sequence
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from apscheduler.triggers.cron import CronTrigger
from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from monitor.config_types import Duration, Strict, Text
from monitor.errors import ConfigError, Problem

_DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# Places people write as time zones that the IANA database spells differently.
_ZONE_HINTS = {"geneva": "Europe/Zurich", "the_hague": "Europe/Amsterdam", "hague": "Europe/Amsterdam",
               "washington": "America/New_York", "new_delhi": "Asia/Kolkata", "delhi": "Asia/Kolkata",
               "beijing": "Asia/Shanghai", "canberra": "Australia/Sydney", "ottawa": "America/Toronto",
               "brasilia": "America/Sao_Paulo", "abu_dhabi": "Asia/Dubai", "strasbourg": "Europe/Paris"}


def _env_name(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError("write the NAME of an environment variable (e.g. DW_SMTP_PASSWORD), never the secret")
    return value


def _address(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+", value):
        raise ValueError(f"{value!r} is not an email address such as desk@example.org")
    return value


EnvName = Annotated[str, BeforeValidator(_env_name)]
Address = Annotated[str, BeforeValidator(_address)]

class SmtpSettings(Strict):
    """The one SMTP server every email channel uses. The password comes from `$password_env`."""

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # default by security: 25, 587, 465
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password_env: EnvName | None = None
    sender: Address
    timeout: Duration = 30.0

    @model_validator(mode="after")
    def _login_pairs(self) -> SmtpSettings:
        if self.username and not self.password_env:
            raise ValueError("`username` needs `password_env`: the name of the variable holding the password")
        if self.password_env and not self.username:
            raise ValueError("`password_env` needs `username`")
        if self.username and self.security == "none":
            raise ValueError("`security: none` would send the password in clear text: use starttls or tls")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or _DEFAULT_PORTS[self.security]


class EmailChannel(Strict):
    """Send each digest as one multipart (text + HTML) email to `to`."""

    to: tuple[Address, ...]

    @field_validator("to")
    @classmethod
    def _someone(cls, to: tuple[str, ...]) -> tuple[str, ...]:
        if not to:
            raise ValueError("list at least one recipient")
        return to


class WebhookChannel(Strict):
    """POST each digest to `url`; signed with HMAC-SHA256 when `secret_env` is set."""

    url: str
    format: Literal["json", "slack", "teams"] = "json"
    secret_env: EnvName | None = None
    timeout: Duration = 10.0

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", url):
            raise ValueError("a webhook URL must be http(s)://host/... without spaces")
        return url

    @property
    def host(self) -> str:
        """The URL without its path: incoming-webhook paths often ARE the secret, so only this is shown."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class Subscription(Strict):
    """Who receives which matched items, when, and through which channels."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)
    cron: str | None = None
    timezone: str = "UTC"
    every: Duration | None = None
    rules: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    source_tags: dict[str, Text] = {}
    countries: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    min_items: int = Field(default=1, ge=0)
    max_items: int = Field(default=100, ge=1, le=10_000)
    backfill: Duration | None = None
    alerts: bool = False
    email: EmailChannel | None = None
    webhook: WebhookChannel | None = None

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str | None) -> str | None:
        if cron is not None:
            cron_trigger(cron, "UTC")
        return cron

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        return check_timezone(name)

    @model_validator(mode="after")
    def _schedule_and_channel(self) -> Subscription:
        if (self.cron is None) == (self.every is None):
            raise ValueError('a subscription needs exactly one schedule: `cron: "0 7 * * 1-5"` or `every: 1h`')
        if not self.channels:
            raise ValueError("a subscription needs at least one channel: `email:` or `webhook:`")
        return self

    @property
    def channels(self) -> tuple[str, ...]:
        """The names of the configured channels, in a fixed order."""
        return tuple(name for name in ("email", "webhook") if getattr(self, name) is not None)


def check_timezone(name: str) -> str:
    """The IANA name for `name`; diplomatic cities that IANA spells otherwise (Europe/Geneva) are mapped."""
    try:
        zoneinfo.ZoneInfo(name)
        return name
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        hint = _ZONE_HINTS.get(name.rpartition("/")[2].lower().replace(" ", "_"))
        if hint and "/" in name:
            return hint  # "Europe/Geneva" is what people write; it keeps Zurich's time
        also = f"; did you mean {hint}?" if hint else " (write an IANA name such as Europe/Zurich or UTC)"
        raise ValueError(f"unknown time zone {name!r}{also}") from None


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """A five-field crontab line as an APScheduler trigger, with crontab's weekday numbers.

    APScheduler 3 counts weekdays from Monday = 0, so its own `from_crontab("0 7 * * 1-5")` fires
    Tuesday to Saturday; here 0 and 7 are Sunday and 1-5 is Monday to Friday, as in crontab(5).
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"{expression!r}: a cron line has 5 fields (minute hour day month weekday)")
    minute, hour, day, month, weekday = fields
    if day != "*" and weekday != "*":
        raise ValueError("set the day of month or the weekday, not both (crontab would fire on either)")
    try:
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_weekdays(weekday),
                           timezone=timezone)
    except ValueError as e:
        raise ValueError(f"{expression!r} is not a valid cron line: {e}") from None


def _weekdays(field: str) -> str:
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            first, last = (_weekday(x) for x in span.split("-", 1))
            last = 7 if last == 0 and first > 0 else last  # fri-sun
        else:
            first = last = _weekday(span)
            last = 6 if step else last
        if (step and not step.isdigit()) or first > last:
            raise ValueError(f"{field!r} is not a weekday field (0-7 or sun-sat, ranges, lists, /steps)")
        days.update(d % 7 for d in range(first, last + 1, int(step or 1)))
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


def _weekday(text: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text.lower()[:3] in _WEEKDAYS:
        return _WEEKDAYS.index(text.lower()[:3])
    raise ValueError(f"{text!r} is not a weekday (0-7 or sun-sat)")


# -- checks that need the whole configuration --------------------------------------------------


def delivery_errors(smtp: SmtpSettings | None, subscriptions: Sequence[Subscription]) -> list[tuple[tuple, str]]:
    """(key path, message) for what no single model can see: email without `smtp:`, duplicate names."""
    errors: list[tuple[tuple, str]] = []
    seen: set[str] = set()
    for i, sub in enumerate(subscriptions):
        if sub.email is not None and smtp is None:
            errors.append((("subscriptions", i, "email"), "an email channel needs the top-level `smtp:` block"))
        if sub.name in seen:
            errors.append((("subscriptions", i, "name"), f"duplicate subscription name {sub.name!r}"))
        seen.add(sub.name)
    return errors


def check_delivery(config: Any) -> Any:
    """For `Config`: `_delivery = model_validator(mode="after")(check_delivery)`; errors keep their key."""
    errors = delivery_errors(config.smtp, config.subscriptions)
    if errors:
        details = [InitErrorDetails(type=PydanticCustomError("value_error", msg), loc=loc, input=None)
                   for loc, msg in errors]
        raise ValidationError.from_exception_data(type(config).__name__, details)
    return config


def require_delivery_settings(config: Any) -> None:
    """Raise ConfigError when the configuration cannot deliver (also when config.py did not check)."""
    errors = delivery_errors(config.smtp, config.subscriptions)
    problems = [Problem(config.path, None, _key(loc), message) for loc, message in errors]
    if problems:
        raise ConfigError(problems)


def _key(loc: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
