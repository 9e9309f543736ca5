"""The feed farm: N feeds on loopback addresses, each answer delayed by a fixed latency.

    python bench/farm.py --sources 1000 --items 20 --latency 0.1 [--change-every SECONDS]

Run as its own process (so its CPU is not counted against the client). Feed `i` is served at
http://127.77.X.Y:PORT/feed/i.xml, one loopback address per feed (Linux routes all of 127/8 to
`lo`), so the client's per-host limit applies per feed as it would on the real web. Answers carry
ETag and Last-Modified and honour conditional GET with a 304; gzip when asked. With
--change-every, each feed gains a new item every that many seconds (staggered across feeds);
otherwise feeds never change. Prints one JSON line {"port": P} once listening; GET /stats on any
address returns the request counts. Stops on SIGTERM or after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import signal
import socket
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.corpus import EPOCH, feed_body

ADDRESS_PREFIX = "127.77"


def host(i: int) -> str:
    """The loopback address of feed `i` (250 per /24, so feeds never land on .0 or .255)."""
    return f"{ADDRESS_PREFIX}.{i // 250}.{i % 250 + 1}"


def feed_url(i: int, port: int) -> str:
    return f"http://{host(i)}:{port}/feed/{i}.xml"


@dataclass(frozen=True)
class Answer:
    etag: bytes
    last_modified: bytes
    body: bytes
    gzipped: bytes


class Farm:
    def __init__(self, sources: int, items: int, change_every: float):
        self.sources, self.items, self.change_every = sources, items, change_every
        self.started = time.monotonic()
        self.cache: dict[int, tuple[int, Answer]] = {}  # feed -> (version, answer); only the current one kept
        self.stats = {"requests": 0, "ok": 0, "not_modified": 0, "bytes": 0}

    def version(self, i: int) -> int:
        if not self.change_every:
            return 0
        offset = self.change_every * i / self.sources  # staggered: changes spread evenly over time
        return int((time.monotonic() - self.started + offset) // self.change_every)

    def answer(self, i: int) -> Answer:
        v = self.version(i)
        cached = self.cache.get(i)
        if cached and cached[0] == v:
            return cached[1]
        body = feed_body(i, v, self.items)
        modified = format_datetime(EPOCH + timedelta(minutes=v), usegmt=True)
        answer = Answer(f'"{i}-{v}"'.encode(), modified.encode(), body, gzip.compress(body, 6))
        self.cache[i] = (v, answer)
        return answer


class FarmProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 with keep-alive: GET only, one request at a time per connection."""

    def __init__(self, farm: Farm, latency: float):
        self.farm, self.latency = farm, latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            response, close = self.respond(head)
            asyncio.get_running_loop().call_later(self.latency, self.send, response, close)

    def send(self, response: bytes, close: bool) -> None:
        if self.transport and not self.transport.is_closing():
            self.transport.write(response)
            if close:
                self.transport.close()

    def respond(self, head: bytes) -> tuple[bytes, bool]:
        lines = head.decode("latin-1").split("\r\n")
        method, path, version = [*lines[0].split(" "), "", "", ""][:3]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
        self.farm.stats["requests"] += 1
        if path == "/stats":
            return _response(200, json.dumps(self.farm.stats).encode(), b"application/json", close), close
        feed = _feed_number(path)
        if method not in ("GET", "HEAD") or feed is None or feed >= self.farm.sources:
            return _response(404, b"not found", b"text/plain", close), close
        answer = self.farm.answer(feed)
        validators = [(b"ETag", answer.etag), (b"Last-Modified", answer.last_modified)]
        inm, ims = headers.get("if-none-match"), headers.get("if-modified-since")
        if (inm and inm.encode() == answer.etag) or (not inm and ims and ims.encode() == answer.last_modified):
            self.farm.stats["not_modified"] += 1
            return _response(304, b"", None, close, validators), close
        gz = "gzip" in headers.get("accept-encoding", "")
        body = answer.gzipped if gz else answer.body
        extra = [*validators, *([(b"Content-Encoding", b"gzip")] if gz else [])]
        self.farm.stats["ok"] += 1
        self.farm.stats["bytes"] += len(body)
        return _response(200, body if method == "GET" else b"", b"application/rss+xml; charset=utf-8", close,
                         extra, len(body)), close


def _feed_number(path: str) -> int | None:
    if path.startswith("/feed/") and path.endswith(".xml"):
        number = path[6:-4]
        return int(number) if number.isdigit() else None
    return None


REASONS = {200: b"OK", 304: b"Not Modified", 404: b"Not Found"}


def _response(status: int, body: bytes, content_type: bytes | None, close: bool,
              headers: list[tuple[bytes, bytes]] = (), length: int | None = None) -> bytes:  # type: ignore[assignment]
    out = [b"HTTP/1.1 %d %s" % (status, REASONS[status])]
    if content_type:
        out.append(b"Content-Type: " + content_type)
    out.extend(k + b": " + v for k, v in headers)
    if status != 304:
        out.append(b"Content-Length: %d" % (len(body) if length is None else length))
    out.append(b"Connection: close" if close else b"Connection: keep-alive")
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def free_port() -> int:
    with socket.socket() as s:
        s.bind((host(0), 0))
        return s.getsockname()[1]


async def serve(args: argparse.Namespace) -> None:
    farm = Farm(args.sources, args.items, args.change_every)
    for i in range(args.sources) if not args.change_every else ():
        farm.answer(i)  # static feeds: build every body before the clock starts
    loop = asyncio.get_running_loop()
    hosts = [host(i) for i in range(args.sources)]
    port = args.port or free_port()
    server = await loop.create_server(lambda: FarmProtocol(farm, args.latency), host=hosts, port=port,
                                      backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(json.dumps({"port": port}), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added to every answer")
    parser.add_argument("--change-every", type=float, default=0.0, help="seconds between new items per feed")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop by itself after this long")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
