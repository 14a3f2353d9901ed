"""An asyncio server run in a thread of its own, for callers that are not async.

Benchmarks and tests drive a real server (its own event loop, as in
production) from plain synchronous code: :func:`serving_in_thread` starts it,
yields its bound port once it listens, and stops it on exit. A start that
fails is raised in the caller, not lost in the thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol


class ThreadedServer(Protocol):
    """What the thread needs of a server: start (returning the port) and stop."""

    async def start(self) -> int: ...

    async def stop(self) -> None: ...


@contextmanager
def serving_in_thread(
    make_server: Callable[[], ThreadedServer],
    timeout_s: float = 15.0,
    name: str = "server",
) -> Iterator[int]:
    """Run ``make_server()``'s server on a new event loop in a daemon thread; yield its port.

    ``make_server`` is called inside the thread's loop (servers that bind
    asyncio objects at construction need that).
    """
    ready = threading.Event()
    port: list[int] = []
    failure: list[BaseException] = []
    control: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def serve() -> None:
        stop = asyncio.Event()
        try:
            server = make_server()
            port.append(await server.start())
            control.append((asyncio.get_running_loop(), stop))
        except Exception as exc:
            failure.append(exc)  # raised in the caller; the thread ends quietly
            return
        finally:
            ready.set()
        try:
            await stop.wait()
        finally:
            await server.stop()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name=name, daemon=True)
    thread.start()
    if not ready.wait(timeout_s) or failure:
        cause = failure[0] if failure else None
        raise RuntimeError(f"{name} did not start: {cause or 'timed out'}") from cause
    try:
        yield port[0]
    finally:
        loop, stop = control[0]
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout_s)
