"""Running the web app under uvicorn: in the foreground (`serve`) or on a thread (`run --serve`).

The listening socket is bound here, before uvicorn starts, so a port in use is a clear error
rather than a log line and a silent exit.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from monitor.errors import DiplowatchError
from monitor.store import Store
from monitor.web.app import create_app
from monitor.web.settings import WebSettings

log = logging.getLogger(__name__)


class WebServer:
    """The web app bound to its socket: run() in the foreground, or start()/stop() on a thread."""

    def __init__(self, settings: WebSettings):
        self.settings = settings
        Store.open(settings.db_path).close()  # create or migrate it once, as every command does
        self._socket = bind(settings.host, settings.port)
        _warn_if_open(settings)
        config = uvicorn.Config(create_app(settings), log_config=None, server_header=False, lifespan="on", ws="none",
                                timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def run(self) -> None:
        """Serve until SIGTERM or Ctrl-C (from the main thread)."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def start(self, timeout: float = 10.0) -> None:
        """Serve on a thread (for `run --serve`); returns once requests are answered."""
        self._thread = threading.Thread(target=self.run, name="diplowatch-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise DiplowatchError(f"the web server did not start on {self.url}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise DiplowatchError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise DiplowatchError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port "
                              "or stop what uses it") from None
    return sock


def _warn_if_open(settings: WebSettings) -> None:
    if settings.loopback:
        return
    if settings.token_required:
        log.warning("listening on %s: every route but /healthz needs DIPLOWATCH_API_TOKEN", settings.host)
    else:
        log.warning("listening on %s WITHOUT a token: anyone who reaches this port reads everything; "
                    "set DIPLOWATCH_API_TOKEN", settings.host)
