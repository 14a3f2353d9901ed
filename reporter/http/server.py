"""Serve the HTTP app with uvicorn inside the running asyncio loop (next to gRPC).

The socket is bound here, before uvicorn starts, so that the port is known
at once (``127.0.0.1:0`` picks a free one) and a bind failure is our own
error, not uvicorn's ``sys.exit``. Signals stay with the reporter: uvicorn's
own handlers are not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 10.0


class HttpServerError(Exception):
    """The HTTP server cannot start (address in use, bad address)."""


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The reporter owns SIGINT/SIGTERM and stops us through stop().
        yield


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise HttpServerError(f"http: must be HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


class HttpServer:
    def __init__(
        self,
        app: ASGIApp,
        listen: str,
        shutdown_grace_s: float = 5.0,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """``tls``: (certificate chain, private key) PEM files; HTTPS when given."""
        self._app = app
        self._tls = tls
        self._listen = listen
        self._grace_s = shutdown_grace_s
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> int:
        """Bind, start serving in this loop, and return the bound port."""
        if self._server is not None:
            raise RuntimeError("HttpServer.start() called twice")
        sock = _bind(*parse_listen(self._listen))
        self._port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, math.ceil(self._grace_s)),
            server_header=False,
            ssl_certfile=str(self._tls[0]) if self._tls else None,
            ssl_keyfile=str(self._tls[1]) if self._tls else None,
        )
        server = _EmbeddedServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="reporter-http")
        self._server, self._task = server, task
        await self._wait_started(server, task)
        logger.info("reporter HTTP listening on %s (port %s)", self._listen, self._port)
        return self._port

    async def _wait_started(self, server: uvicorn.Server, task: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_TIMEOUT_S
        while not server.started:
            if task.done() or loop.time() > deadline:
                await self.stop()
                raise HttpServerError(f"the HTTP server on {self._listen} did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop taking connections, let open requests finish (up to the grace period)."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(task, self._grace_s + 5.0)
        except TimeoutError:
            logger.warning("the HTTP server did not stop in time; cancelled")
        except (Exception, SystemExit) as exc:  # uvicorn exits the process on some failures
            logger.warning("the HTTP server stopped with an error: %s", exc)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise HttpServerError(f"cannot listen on {host}:{port} for HTTP: {exc}") from exc
    sock.set_inheritable(True)
    return sock
