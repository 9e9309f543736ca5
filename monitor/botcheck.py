"""Recognise the pages sites serve to scripts instead of content: bot checks and JS challenges.

Sources such as mid.ru (a JavaScript challenge) or state.gov (a 200 HTML bot-check page) answer
with such pages; storing "zero items" for them would hide the problem, so we name it instead.
"""

from __future__ import annotations

import re

# marker in the page -> the name shown to the user
_MARKERS = (
    (r"cf-browser-verification|challenge-platform|cf_chl_|/cdn-cgi/challenge", "Cloudflare challenge"),
    (r"<title>\s*just a moment\.\.\.", "Cloudflare challenge"),
    (r"attention required! \| cloudflare", "Cloudflare block page"),
    (r"ddos-guard", "DDoS-Guard check"),
    (r"__qrator|qrator", "Qrator check"),
    (r"servicepipe|variti|antibot", "anti-bot service"),
    (r"_incapsula_resource|incapsula incident", "Imperva/Incapsula check"),
    (r"perimeterx|px-captcha|_pxhd", "PerimeterX check"),
    (r"akamai.{0,200}access denied|reference #\d+\.[0-9a-f]+", "Akamai block page"),
    (r"g-recaptcha|h-captcha|hcaptcha\.com|captcha-delivery|geo\.captcha", "captcha"),
    (r"checking your browser|verify(ing)? you are (a )?human|are you a robot", "browser check"),
    (r"please (turn on|enable) javascript( and cookies)? to continue", "JavaScript challenge"),
    (r"проверка браузера|вы не робот|подтвердите, что вы человек", "browser check"),
)
_PATTERN = re.compile("|".join(f"(?P<m{i}>{p})" for i, (p, _) in enumerate(_MARKERS)), re.I)


def challenge_name(body: bytes) -> str | None:
    """The kind of bot check `body` is, or None when it looks like an ordinary page."""
    head = body[:65536].decode("utf-8", "replace")
    found = _PATTERN.search(head)
    if not found:
        return None
    return _MARKERS[int(found.lastgroup[1:])][1]


def looks_like_html(body: bytes) -> bool:
    head = body[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html")) or (
        b"<html" in head and not head.startswith((b"<?xml", b"<rss", b"<feed", b"<rdf"))
    )
