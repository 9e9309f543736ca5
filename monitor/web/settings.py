"""The web app's settings and the command-line options that fill them, shared by `serve` and `run --serve`.

Light on purpose (no Starlette, no uvicorn): the `diplowatch` command imports this at start-up.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from monitor.config import Config
from monitor.heartbeat import MAX_AGE

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class WebSettings:
    db_path: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None  # DIPLOWATCH_API_TOKEN
    under_run: bool = False  # inside `run --serve`: /healthz also needs a fresh scheduler heartbeat
    heartbeat_max_age: float = MAX_AGE
    config: Config | None = None  # when given, the sources page shows names and disabled sources

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def token_required(self) -> bool:
        return bool(self.token) and not self.loopback


def web_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--host and --port (env DIPLOWATCH_HOST, DIPLOWATCH_PORT), for `serve` and `run --serve`."""
    port = click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, envvar="DIPLOWATCH_PORT",
                        show_default=True, help="TCP port of the web page and API (env DIPLOWATCH_PORT).")
    host = click.option("--host", default=DEFAULT_HOST, envvar="DIPLOWATCH_HOST", show_default=True,
                        help="Address to listen on (env DIPLOWATCH_HOST). Elsewhere than loopback, "
                             "DIPLOWATCH_API_TOKEN, when set, is required on every route but /healthz.")
    return host(port(command))


def web_settings(db_path: str | Path, config: Config | None, host: str, port: int,
                 under_run: bool = False) -> WebSettings:
    """Settings from the options and the environment (DIPLOWATCH_API_TOKEN)."""
    token = os.environ.get("DIPLOWATCH_API_TOKEN") or None
    return WebSettings(Path(db_path), host, port, token, under_run, config=config)
