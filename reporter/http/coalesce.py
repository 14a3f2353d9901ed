"""Concurrent lookups of the same key on the event loop share one: a burst's single flight.

When a hundred requests with the same token arrive at once, the token and
dealer caches are empty for all of them; without this each would query the
store. The first request of a key does the work; the others await its
outcome (its value or its error). If the first is cancelled (its client went
away), a waiting request does the work itself. Nothing outlives the lookup:
the key is forgotten as soon as it completes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class Coalescer(Generic[_K, _V]):
    """Per key, at most one ``work()`` in progress; concurrent callers share its outcome."""

    def __init__(self) -> None:
        self._pending: dict[_K, asyncio.Future[_V]] = {}

    def __len__(self) -> int:
        """Keys in progress (0 when idle)."""
        return len(self._pending)

    async def run(self, key: _K, work: Callable[[], Awaitable[_V]]) -> _V:
        pending = self._pending.get(key)
        if pending is not None:
            return await self._follow(pending, work)
        future: asyncio.Future[_V] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = await work()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without followers
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._pending[key]

    async def _follow(self, pending: asyncio.Future[_V], work: Callable[[], Awaitable[_V]]) -> _V:
        try:
            # Shielded: this caller's cancellation must not cancel the others' lookup.
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            if not pending.cancelled():
                raise  # this caller itself was cancelled
        return await work()  # the first caller was cancelled: do it here
