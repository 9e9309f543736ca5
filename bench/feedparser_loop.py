"""The plainest alternative: `feedparser.parse(url)` for each feed in turn. Prints the entries read.

    python bench/feedparser_loop.py URLS_FILE
"""

from __future__ import annotations

import sys

import feedparser


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as listing:
        urls = [line.strip() for line in listing if line.strip()]
    entries = sum(len(feedparser.parse(url).entries) for url in urls)
    print(entries)


if __name__ == "__main__":
    main()
