"""agent.runner: aligned sampling into the spool, shipping, prompt clean stop."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from agent_testkit import DEALER, TOKEN, Changes, FakeHost, ScriptedCollector, run, serving

from agent.abc import EndpointSource, Source
from agent.backoff import BackoffPolicy
from agent.connection import Endpoint
from agent.runner import Agent, next_boundary_ms
from agent.settings import AgentConfig
from agent.shipper import Shipper
from agent.sources.host import PsutilHostSource
from agent.spool import SqliteSpool
from dealerpulse.clock import FakeClock, SystemClock
from dealerpulse.model import EndpointStat, Sample
from dealerpulse.v1 import ingest_pb2 as pb

REPO = Path(__file__).resolve().parents[2]


class Broken(Source):
    name = "broken"

    def collect(self, now_ms: int) -> list[Sample]:
        raise RuntimeError("sensor unplugged")


class Many(Source):
    name = "many"

    def __init__(self, count: int) -> None:
        self.count = count

    def collect(self, now_ms: int) -> list[Sample]:
        return [Sample("x.value", float(i), "count", now_ms) for i in range(self.count)]


class Requests(EndpointSource):
    name = "requests"

    def __init__(self) -> None:
        self.drained: list[int] = []

    def drain(self, now_ms: int) -> list[EndpointStat]:
        self.drained.append(now_ms)
        return [EndpointStat("/api/vehicles/{id}", "GET", now_ms - 10_000, now_ms, 3)]


def make_agent(
    tmp_path: Path,
    sources: list[Source],
    address: str = "127.0.0.1:1",
    interval_s: float = 10.0,
    endpoint_sources: tuple[EndpointSource, ...] = (),
) -> Agent:
    config = AgentConfig(
        collector=address, token=TOKEN, interval_s=interval_s, spool_path=tmp_path / "s.db"
    )
    spool = SqliteSpool(config.spool_path, dealer_id=DEALER, hostname="h")
    fast = BackoffPolicy(initial_s=0.01, max_s=0.05)
    shipper = Shipper(Endpoint(address, TOKEN), spool, hostname="h", backoff=fast)
    return Agent(config, sources, spool, shipper, SystemClock(), endpoint_sources=endpoint_sources)


def test_boundaries_are_multiples_of_the_interval() -> None:
    assert next_boundary_ms(1_000, 10_000) == 10_000
    assert next_boundary_ms(10_000, 10_000) == 20_000
    assert next_boundary_ms(19_999, 10_000) == 20_000


def test_one_interval_becomes_one_batch_with_every_source(tmp_path: Path) -> None:
    async def body() -> None:
        requests = Requests()
        host = PsutilHostSource(FakeHost(), FakeClock())
        agent = make_agent(tmp_path, [host, Broken()], endpoint_sources=(requests,))
        seqs = await agent.sample_once(1_700_000_010_000)
        assert len(seqs) == 1
        stored = agent.spool.load(seqs[0])
        assert stored is not None
        batch = pb.Batch.FromString(stored.payload)
        assert {s.time_unix_ms for s in batch.samples} == {1_700_000_010_000}
        assert "cpu.percent" in {s.name for s in batch.samples}  # the broken source cost nothing
        assert [e.route for e in batch.endpoints] == ["/api/vehicles/{id}"]
        assert requests.drained == [1_700_000_010_000]
        agent.spool.close()

    run(body())


def test_an_oversized_interval_is_split(tmp_path: Path) -> None:
    async def body() -> None:
        agent = make_agent(tmp_path, [Many(12_000)])
        seqs = await agent.sample_once(0)
        assert len(seqs) == 3
        assert agent.spool.stats().samples == 12_000
        agent.spool.close()

    run(body())


def test_samples_on_interval_boundaries_ships_them_and_stops_cleanly(tmp_path: Path) -> None:
    async def body() -> None:
        changes = Changes()
        collector = ScriptedCollector(changes)
        async with serving(collector) as address:
            host = PsutilHostSource(FakeHost(), SystemClock())
            agent = make_agent(tmp_path, [host], address, interval_s=0.05)
            running = asyncio.create_task(agent.run())
            await changes.wait_until(lambda: len(collector.stored()) >= 3, "three stored batches")
            agent.stop()
            await asyncio.wait_for(running, 5)
        times = sorted({s.time_unix_ms for i in range(3) for s in collector.decoded(i).samples})
        assert all(t % 50 == 0 for t in times)
        assert [b - a for a, b in itertools.pairwise(times)] == [50] * (len(times) - 1)
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            agent.spool.stats()

    run(body())


class ShiftedClock(SystemClock):
    """The system clock, set back or forward at will (an NTP step)."""

    def __init__(self) -> None:
        self.shift_s = 0.0

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.shift_s)


class Pulsing(Source):
    """One sample per interval, and a pulse to the test's loop (from the worker thread)."""

    name = "pulsing"

    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.loop = asyncio.get_running_loop()

    def collect(self, now_ms: int) -> list[Sample]:
        self.loop.call_soon_threadsafe(self.changes.pulse)
        return [Sample("x.value", 1.0, "count", now_ms)]


def test_a_clock_set_back_does_not_stall_sampling(tmp_path: Path) -> None:
    async def body() -> None:
        changes = Changes()
        clock = ShiftedClock()
        agent = make_agent(tmp_path, [Pulsing(changes)], interval_s=0.05)
        agent.clock = clock
        running = asyncio.create_task(agent.run())
        await changes.wait_until(lambda: agent.spool.stats().batches >= 2, "two intervals")
        clock.shift_s = -3600.0
        before = agent.spool.stats().batches
        await changes.wait_until(
            lambda: agent.spool.stats().batches >= before + 2, "sampling after the step back"
        )
        agent.stop()
        await asyncio.wait_for(running, 5)

    run(body())


def test_sigterm_stops_the_agent_promptly_after_flushing(tmp_path: Path) -> None:
    spool_path = tmp_path / "agent.db"
    script = textwrap.dedent(
        f"""
        import asyncio, logging
        from pathlib import Path
        from agent.runner import run_agent
        from agent.settings import AgentConfig
        logging.basicConfig(level=logging.INFO)
        config = AgentConfig(
            collector={{address!r}}, token={TOKEN!r}, interval_s=0.1,
            spool_path=Path({str(spool_path)!r}), hostname="sigterm-host",
        )
        asyncio.run(run_agent(config))
        """
    )

    async def body() -> None:
        changes = Changes()
        collector = ScriptedCollector(changes)
        async with serving(collector) as address:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                script.replace("{address!r}", repr(address)),
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                await changes.wait_until(
                    lambda: len(collector.stored()) >= 2, "two stored batches", timeout_s=15
                )
                process.send_signal(signal.SIGTERM)
                _, stderr = await asyncio.wait_for(process.communicate(), 10)
            finally:
                if process.returncode is None:
                    process.kill()
        assert process.returncode == 0, stderr.decode()
        assert b"agent stopped" in stderr
        # The spool was closed (no lock left) and nothing acked is still in it.
        with SqliteSpool(spool_path, dealer_id=DEALER) as spool:
            stats = spool.stats()
            assert stats.generated == stats.stored + stats.samples + stats.dropped_total
            assert stats.stored == sum(
                len(collector.decoded(i).samples) for i in _firsts(collector)
            )

    run(body(), timeout_s=30)


def _firsts(collector: ScriptedCollector) -> list[int]:
    """Index of the first receipt of each stored seq."""
    seen: dict[int, int] = {}
    for index, received in enumerate(collector.received):
        seen.setdefault(received.seq, index)
    return [seen[seq] for seq in collector.stored()]
