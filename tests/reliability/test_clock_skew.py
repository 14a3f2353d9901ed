"""Agents whose clocks are an hour off: what the collector does, and that it shows it.

The rule (README, "Reliability"): a sample may be at most 10 minutes ahead of
the collector's clock (``max_future_s``) and no older than the retention. So
an agent an hour AHEAD has every batch refused (INVALID_ARGUMENT, field
``created_unix_ms``), which its spool counts as dropped ('rejected') -- never
silently; an agent an hour BEHIND is stored as it is. Either way the
collector records the agent's clock offset on its row, and ``dealerpulse
dealer list`` and ``dealerpulse status`` show it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fuzz.live_collector import LiveCollector, live_collector

from agent.codec import AckStatus
from agent.connection import Endpoint
from agent.shipper import Shipper
from agent.spool import REJECTED, SqliteSpool
from dealerpulse.clock import FakeClock, unix_ms
from dealerpulse.model import Sample

HOUR_MS = 3_600_000
# Delivery delay and scheduling on a busy machine: the estimate may read low by this.
TOLERANCE_MS = 5_000
REPO = Path(__file__).resolve().parents[2]


async def ship_skewed(
    live: LiveCollector, tmp: Path, name: str, skew_s: float
) -> dict[int, AckStatus]:
    """One agent whose clock is off by skew_s sends 3 batches; the acks it got."""
    clock = FakeClock(datetime.now(UTC) + timedelta(seconds=skew_s))
    spool = SqliteSpool(tmp / f"{name}.db", clock=clock, dealer_id=live.dealer_id, agent_id=name)
    acks: dict[int, AckStatus] = {}
    for i in range(3):
        now_ms = unix_ms(clock)
        spool.append([Sample("cpu.percent", 10.0 + i, "percent", now_ms, ())])
        clock.advance(1)
    shipper = Shipper(
        Endpoint(live.target, live.token),
        spool,
        hostname=name,
        on_ack=lambda seq, status, _n: acks.__setitem__(seq, status),
    )
    running = asyncio.create_task(shipper.run())
    try:
        async with asyncio.timeout(30):
            while len(acks) < 3:
                await asyncio.sleep(0.02)
    finally:
        await shipper.stop()
        await running
    stats = spool.stats()
    spool.close()
    # Conservation on the agent's side: nothing pending, what was refused is counted.
    assert stats.samples == 0
    assert stats.dropped.get(REJECTED, 0) == sum(
        1 for s in acks.values() if s is AckStatus.REJECTED
    )
    return acks


def offset_of(live: LiveCollector, agent_id: str) -> int | None:
    [record] = [a for a in live.store.list_agents(live.dealer_id) if a.agent_id == agent_id]
    return record.clock_offset_ms


def cli(live: LiveCollector, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "dealerpulse", *args, "--db", f"sqlite:///{live.db_path}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    return done.stdout


def test_an_agent_an_hour_off_is_judged_by_the_rule_and_its_offset_shown(tmp_path: Path) -> None:
    with live_collector(tmp_path, "Skew Motors") as live:
        ahead = asyncio.run(ship_skewed(live, tmp_path, "ahead-1", 3600))
        behind = asyncio.run(ship_skewed(live, tmp_path, "behind-1", -3600))

        assert set(ahead.values()) == {AckStatus.REJECTED}
        assert live.store.count_samples("ahead-1") == 0
        assert set(behind.values()) == {AckStatus.STORED}
        assert live.store.count_samples("behind-1") == 3

        ahead_ms, behind_ms = offset_of(live, "ahead-1"), offset_of(live, "behind-1")
        assert ahead_ms is not None and abs(ahead_ms - HOUR_MS) < TOLERANCE_MS
        assert behind_ms is not None and abs(behind_ms + HOUR_MS) < TOLERANCE_MS

        listing = cli(live, "dealer", "list")
        assert "CLOCK OFFSET" in listing
        assert f"{ahead_ms / 1000:+.1f}s" in listing and f"{behind_ms / 1000:+.1f}s" in listing
        status = cli(live, "status")
        assert "CLOCK OFFSET" in status
        assert f"{ahead_ms / 1000:+.1f}s" in status and f"{behind_ms / 1000:+.1f}s" in status
