"""Hide credentials written into URLs (https://user:secret@host, https://token@host) before a text is shown.

Used wherever a source URL or an error may reach a person: logs, messages, `sources`, the web, alerts.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(\w+://)[^/\s?#@]*?(:[^/\s?#@]*)?@")


def redact(text: str) -> str:
    return _USERINFO.sub(lambda m: f"{m[1]}***:***@" if m[2] else f"{m[1]}***@", text)
