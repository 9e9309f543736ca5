"""Parse a fetched answer into items: feeds (RSS, Atom, RDF) or HTML listing pages.

`parse()` is the dispatch: the source's `kind` when set, else sniffed from the body. Parsers are
pure functions of (Fetched, Source); they raise ParseError or Blocked and never touch the store.
"""

from __future__ import annotations

from monitor.botcheck import looks_like_html
from monitor.config import Source
from monitor.errors import ParseError
from monitor.models import Fetched, Parsed
from monitor.parse.feed import parse_feed
from monitor.parse.html import parse_listing


def parse(fetched: Fetched, source: Source) -> Parsed:
    if not fetched.body.strip():
        raise ParseError("empty answer: the server sent no content")
    kind = source.kind or ("html" if source.selectors and looks_like_html(fetched.body) else "feed")
    if kind == "html":
        return parse_listing(fetched, source)
    return parse_feed(fetched, source)
