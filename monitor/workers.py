"""Where the CPU-bound stages run: parse and match, kept off the event loop that fetches.

`InThread` runs them in a thread of this process: what `run` uses, where a tick brings a few new
items and one process's memory matters more. `InProcesses` runs them in worker processes, one per
core: what `poll` uses, since a first poll of many sources is CPU-bound and one Python process
uses one core. The workers are forked once the rules are compiled, before any other thread
exists, so they start at once with the same analyser and nothing half-locked.

A worker that dies (killed, out of memory) never loses a source: the pool is dropped and that
call, and every later one, runs in a thread of this process instead, with one log line.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from monitor.config import Source
from monitor.models import Fetched, Item, Parsed
from monitor.parse import parse

if TYPE_CHECKING:
    from monitor.analyse import Analyser
    from monitor.store import Analysis

log = logging.getLogger(__name__)
T = TypeVar("T")
_PR_SET_PDEATHSIG = 1  # prctl(2): a signal for this process when its parent dies


class Stages(Protocol):
    async def parse(self, fetched: Fetched, source: Source) -> Parsed: ...

    async def analyse(self, items: Sequence[Item], source: Source) -> dict[str, Analysis]: ...

    def close(self) -> None: ...


@dataclass
class InThread:
    """Parse and match in a thread of this process."""

    analyser: Analyser

    async def parse(self, fetched: Fetched, source: Source) -> Parsed:
        return await asyncio.to_thread(parse, fetched, source)

    async def analyse(self, items: Sequence[Item], source: Source) -> dict[str, Analysis]:
        return await asyncio.to_thread(self.analyser.analyse, items, source)

    def close(self) -> None:
        pass


class InProcesses:
    """Parse and match in `workers` forked processes; build it before starting any thread."""

    def __init__(self, analyser: Analyser, workers: int) -> None:
        self._fallback = InThread(analyser)
        fork = multiprocessing.get_context("fork")
        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            workers, mp_context=fork, initializer=_adopt, initargs=(analyser, os.getpid()))
        for started in [self._pool.submit(os.getpid) for _ in range(workers)]:
            started.result()  # with fork, the first submit starts every worker: now, while no thread runs

    async def parse(self, fetched: Fetched, source: Source) -> Parsed:
        return await self._run(parse, self._fallback.parse, fetched, source)

    async def analyse(self, items: Sequence[Item], source: Source) -> dict[str, Analysis]:
        return await self._run(_analyse, self._fallback.analyse, items, source)

    async def _run(self, work: Callable[..., T], fallback: Callable[..., Any], *args: Any) -> T:
        if self._pool is not None:
            try:
                return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)
            except BrokenProcessPool:
                if self._pool is not None:
                    log.warning("a parsing worker process died; parsing in this process from now on")
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = None
        return await fallback(*args)

    def pids(self) -> list[int]:
        """The live workers' process ids (none once the pool is dropped)."""
        return list(self._pool._processes or ()) if self._pool is not None else []  # no public accessor

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def stages_for(analyser: Analyser, workers: int) -> Stages:
    """Worker processes when more than one is asked for and fork exists; else a thread."""
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        return InProcesses(analyser, workers)
    return InThread(analyser)


def default_workers() -> int:
    """One worker per core this process may run on (a container's CPU set included)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# -- inside a worker process -----------------------------------------------------------------------


class _Worker:
    """The analyser a worker process inherited (one per process, set once by `_adopt`)."""

    analyser: Analyser | None = None


def _adopt(analyser: Analyser, parent: int) -> None:
    _Worker.analyser = analyser
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    _die_with_parent(parent)


def _analyse(items: Sequence[Item], source: Source) -> dict[str, Analysis]:
    assert _Worker.analyser is not None, "a worker runs _adopt first"
    return _Worker.analyser.analyse(items, source)


def _die_with_parent(parent: int) -> None:
    """A parent killed with SIGKILL cannot stop its workers: have the kernel do it (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)
