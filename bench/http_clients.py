"""CPU per conditional GET answered 304, on a new connection each, for HTTP clients side by side.

    python bench/http_clients.py [--sources 1000] [--rounds 2]

Starts the feed farm (bench/farm.py, one loopback address per feed, no added latency), primes the
ETags, then times rounds of one request per feed at concurrency 32: httpx as fetch.py uses it
(AsyncClient.stream), and, when installed, the same under uvloop, the same with httpx2 (pydantic's
fork of httpx, whose httpcore2 talks to asyncio directly), aiohttp alone, and a bare asyncio
socket writing the request by hand (the floor for any client in Python). This is the warm poll's
cost per unchanged source without the pipeline around it. Prints one line per client.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import feed_farm
from monitor.fetch import KEEPALIVE

CONCURRENCY = 32
Round = Callable[[list[str], dict[str, str]], Awaitable[set[int]]]


async def with_httpx(urls: list[str], etags: dict[str, str], module: Any = httpx) -> set[int]:
    limits = module.Limits(max_connections=CONCURRENCY, max_keepalive_connections=KEEPALIVE)
    async with module.AsyncClient(trust_env=False, limits=limits) as client:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(url: str) -> int:
            async with gate, client.stream("GET", url, headers={"If-None-Match": etags.get(url, "")}) as answer:
                async for _ in answer.aiter_raw():
                    pass
                etags[url] = answer.headers.get("etag", "")
                return answer.status_code

        return set(await asyncio.gather(*(one(u) for u in urls)))


async def with_aiohttp(urls: list[str], etags: dict[str, str]) -> set[int]:
    import aiohttp

    async with aiohttp.ClientSession(auto_decompress=False, trust_env=False) as session:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(url: str) -> int:
            async with gate, session.get(url, headers={"If-None-Match": etags.get(url, "")}) as answer:
                await answer.read()
                return answer.status

        return set(await asyncio.gather(*(one(u) for u in urls)))


async def with_socket(urls: list[str], etags: dict[str, str]) -> set[int]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(url: str) -> int:
        host_port, path = url.split("/", 3)[2:]
        host, port = host_port.split(":")
        async with gate:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nIf-None-Match: {etags.get(url, '')}\r\n"
                         "Connection: close\r\n\r\n".encode())
            answer = await reader.read()
            writer.close()
            return int(answer[9:12])

    return set(await asyncio.gather(*(one(u) for u in urls)))


def _clients() -> dict[str, tuple[Round, Callable | None]]:
    clients: dict[str, tuple[Round, Callable | None]] = {"httpx (as fetch.py)": (with_httpx, None)}
    if importlib.util.find_spec("uvloop"):
        import uvloop

        clients["httpx under uvloop"] = (with_httpx, uvloop.new_event_loop)
    if importlib.util.find_spec("httpx2"):  # pydantic's fork of httpx, with a native asyncio network backend
        import httpx2

        clients["httpx2 (fork of httpx)"] = (partial(with_httpx, module=httpx2), None)
    if importlib.util.find_spec("aiohttp"):
        clients["aiohttp alone"] = (with_aiohttp, None)
    clients["bare asyncio socket"] = (with_socket, None)
    return clients


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    with feed_farm(args.sources, 20, 0.0) as farm:
        urls = [farm.url(i) for i in range(args.sources)]
        etags: dict[str, str] = {}
        asyncio.run(with_httpx(urls, etags))  # prime: every later answer is a 304
        for _ in range(args.rounds):
            for name, (client, loop_factory) in _clients().items():
                cpu = time.process_time()
                with asyncio.Runner(loop_factory=loop_factory) as runner:
                    statuses = runner.run(client(urls, etags))
                ms = (time.process_time() - cpu) / len(urls) * 1000
                print(f"{name:22} {ms:5.2f} ms CPU per request  (statuses {sorted(statuses)})", flush=True)


if __name__ == "__main__":
    main()
