"""Concurrent lookups of one key on the event loop share one (the HTTP burst's single flight)."""

from __future__ import annotations

import asyncio

import pytest

from reporter.http.coalesce import Coalescer

WAIT_S = 10.0


class Lookup:
    """Counts its runs; each waits until released."""

    def __init__(self, error: Exception | None = None) -> None:
        self.runs = 0
        self.released = asyncio.Event()
        self.error = error

    async def __call__(self) -> str:
        self.runs += 1
        await asyncio.wait_for(self.released.wait(), WAIT_S)
        if self.error is not None:
            raise self.error
        return f"principal-{self.runs}"


async def _let_tasks_run() -> None:
    # Not a timed wait: a few turns of the loop take every ready task to its first await
    # (the first into the lookup, the rest to waiting on it).
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_burst_with_one_token_checks_it_once() -> None:
    async def scenario() -> None:
        coalescer: Coalescer[str, str] = Coalescer()
        lookup = Lookup()
        tasks = [asyncio.create_task(coalescer.run("token-hash", lookup)) for _ in range(100)]
        await _let_tasks_run()
        assert len(coalescer) == 1
        lookup.released.set()
        assert await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S) == ["principal-1"] * 100
        assert lookup.runs == 1
        assert len(coalescer) == 0
        # Done means forgotten: a later request looks up again (the caches decide then).
        assert await coalescer.run("token-hash", lookup) == "principal-2"

    asyncio.run(scenario())


def test_different_keys_are_looked_up_side_by_side() -> None:
    async def scenario() -> None:
        coalescer: Coalescer[str, str] = Coalescer()
        slow, quick = Lookup(), Lookup()
        blocked = asyncio.create_task(coalescer.run("a", slow))
        await _let_tasks_run()
        quick.released.set()
        assert await asyncio.wait_for(coalescer.run("b", quick), WAIT_S) == "principal-1"
        assert not blocked.done()
        slow.released.set()
        assert await asyncio.wait_for(blocked, WAIT_S) == "principal-1"

    asyncio.run(scenario())


def test_every_waiter_gets_the_error_of_the_shared_lookup() -> None:
    async def scenario() -> None:
        coalescer: Coalescer[str, str] = Coalescer()
        lookup = Lookup(error=ConnectionError("store down"))
        tasks = [asyncio.create_task(coalescer.run("k", lookup)) for _ in range(10)]
        await _let_tasks_run()
        lookup.released.set()
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT_S)
        assert all(isinstance(o, ConnectionError) for o in outcomes)
        assert lookup.runs == 1
        assert len(coalescer) == 0

    asyncio.run(scenario())


def test_when_the_first_caller_goes_away_a_waiter_looks_up_itself() -> None:
    async def scenario() -> None:
        coalescer: Coalescer[str, str] = Coalescer()
        lookup = Lookup()
        first = asyncio.create_task(coalescer.run("k", lookup))
        await _let_tasks_run()
        second = asyncio.create_task(coalescer.run("k", lookup))
        await _let_tasks_run()
        first.cancel()
        lookup.released.set()
        assert await asyncio.wait_for(second, WAIT_S) == "principal-2"
        with pytest.raises(asyncio.CancelledError):
            await first
        assert len(coalescer) == 0

    asyncio.run(scenario())


def test_a_waiter_that_goes_away_does_not_cancel_the_others() -> None:
    async def scenario() -> None:
        coalescer: Coalescer[str, str] = Coalescer()
        lookup = Lookup()
        first = asyncio.create_task(coalescer.run("k", lookup))
        impatient = asyncio.create_task(coalescer.run("k", lookup))
        await _let_tasks_run()
        impatient.cancel()
        lookup.released.set()
        assert await asyncio.wait_for(first, WAIT_S) == "principal-1"
        assert lookup.runs == 1

    asyncio.run(scenario())
