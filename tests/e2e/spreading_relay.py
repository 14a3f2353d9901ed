"""A TCP relay on 127.0.0.1 that spreads agent connections over several collectors.

Agents know one address; the relay opens each incoming connection to the next
collector in turn that accepts it (round robin), as a load balancer in front
of a collector fleet does. When a collector dies, its connections break, the
agents reconnect, and the relay sends them to the collectors still up.

The relay runs its own event loop in a thread, so a synchronous test can use it.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_DEADLINE_S = 10.0


class SpreadingRelay:
    def __init__(self, ports: list[int]) -> None:
        if not ports:
            raise ValueError("ports: at least one collector port is needed")
        self._ports = list(ports)
        self._turn = itertools.cycle(range(len(ports)))
        # Connections opened per collector port: the spread is visible to tests.
        self.opened: Counter[int] = Counter()
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> int:
        """Start listening; returns the port agents connect to."""
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._relay, "127.0.0.1", 0))
        return int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop accepting, reset every relayed connection, stop the thread."""
        if self._server is not None:
            self._call(self._shutdown(self._server))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_DEADLINE_S)
        if not self._thread.is_alive():
            self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=_DEADLINE_S)

    async def _shutdown(self, server: asyncio.Server) -> None:
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await server.wait_closed()

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self._ports)):  # each collector at most once
            port = self._ports[next(self._turn)]
            try:
                streams = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue  # that collector is down: the next one
            self.opened[port] += 1
            return streams
        return None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect_upstream()
        if upstream is None:
            writer.transport.abort()
            return
        up_reader, up_writer = upstream
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):  # ends at EOF or when a side breaks
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        # One side gone: reset the other, so the agent notices at once and reconnects.
        writer.transport.abort()
