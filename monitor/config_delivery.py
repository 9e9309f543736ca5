"""Configuration of digests: the `smtp:` block and `subscriptions:` (validated with config.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmtpSettings(_Strict):
    host: str


class Subscription(_Strict):
    name: str
