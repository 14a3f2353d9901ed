"""The agent's spool fills while the collector is away: bounded, oldest dropped, counted.

The whole agent (runner, spool, shipper) runs against a collector address
where nobody listens, with a spool bound of 64 KiB; then the collector comes
and the agent drains what is left. Per agent: generated = stored + spooled +
dropped, the drops are 'spool_full' and reach the collector as gaps.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from e2e_procs import free_port
from fuzz.live_collector import live_collector
from swarm import SyntheticSource

from agent.connection import Endpoint
from agent.runner import Agent
from agent.settings import AgentConfig
from agent.shipper import Shipper
from agent.spool import SPOOL_FULL, SqliteSpool

SPOOL_BYTES = 64 * 1024


def test_a_full_spool_drops_oldest_counts_it_and_keeps_running(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here until the collector starts on its own port
    path = tmp_path / "spool.db"

    async def fill_then_drain() -> None:
        with live_collector(tmp_path, "Full Disk Motors") as live:
            config = AgentConfig(
                collector=f"127.0.0.1:{port}",
                token=live.token,
                interval_s=0.05,
                spool_path=path,
                spool_max_bytes=SPOOL_BYTES,
                agent_id="full-1",
                hostname="full-1",
            )
            spool = SqliteSpool(path, SPOOL_BYTES, dealer_id=live.dealer_id, agent_id="full-1")
            away = Shipper(Endpoint(config.collector, live.token), spool, hostname="full-1")
            source = SyntheticSource(100, seed=1)
            agent = Agent(config, [source], spool, away)
            running = asyncio.create_task(agent.run())
            async with asyncio.timeout(60):
                while spool.stats().dropped.get(SPOOL_FULL, 0) < 2_000:
                    await asyncio.sleep(0.05)
            # Still sampling, still bounded.
            assert not running.done()
            assert spool.stats().bytes <= SPOOL_BYTES
            agent.stop()
            await running
            # The collector comes back: a new agent process on the same spool drains it.
            spool = SqliteSpool(path, SPOOL_BYTES, dealer_id=live.dealer_id, agent_id="full-1")
            shipper = Shipper(Endpoint(live.target, live.token), spool, hostname="full-1")
            draining = asyncio.create_task(shipper.run())
            async with asyncio.timeout(60):
                while spool.stats().batches:
                    await asyncio.sleep(0.05)
            await shipper.stop()
            await draining
            stats = spool.stats()
            spool.close()
            stored = live.store.count_samples("full-1")
            assert stats.generated == stored + stats.samples + stats.dropped_total
            assert stats.dropped_total == stats.dropped[SPOOL_FULL] >= 2_000
            gaps = [g for g in live.store.list_gaps(live.dealer_id) if g.agent_id == "full-1"]
            assert {g.reason for g in gaps} == {SPOOL_FULL}
            assert sum(g.samples for g in gaps) == stats.dropped[SPOOL_FULL]

    asyncio.run(fill_then_drain())
