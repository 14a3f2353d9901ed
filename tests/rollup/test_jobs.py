"""The maintenance jobs in a running collector, and their settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from collector.rollup.jobs import maintenance_settings
from collector.server import CollectorServer
from collector.settings import COLLECTOR_OPTIONS, CollectorSettings
from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock
from dealerpulse.config import ConfigError, resolve

from .factories import NOW, T0, add_dealer, batch, rows, sample


async def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_the_collector_rolls_up_on_schedule(sqlite_store: SQLAlchemyMetricStore) -> None:
    dealer = add_dealer(sqlite_store, "acme")
    sqlite_store.write_batches([batch(dealer, "a1", 1, (sample("cpu.percent", 5.0, T0),))], NOW)
    settings = CollectorSettings(alerting=False, rollup_interval_s=0.05, retention_interval_s=0.05)

    async def scenario() -> None:
        server = CollectorServer(sqlite_store, "127.0.0.1:0", settings, FakeClock(NOW))
        await server.start()
        try:
            await _wait_until(
                lambda: (
                    server.maintenance_job_stats().rollups >= 1
                    and server.maintenance_job_stats().retentions >= 1
                ),
                "a rollup and a retention run",
            )
        finally:
            await server.stop(5.0)

    asyncio.run(scenario())
    assert rows(sqlite_store.engine, "SELECT value_sum FROM metric_rollup_1h")[0].value_sum == 5.0


def test_retention_options_come_from_the_environment() -> None:
    env = {"ROLLUP_1M_RETENTION_DAYS": "120", "ROLLUP_1H_RETENTION_DAYS": "1000"}
    settings = CollectorSettings.from_values(resolve(COLLECTOR_OPTIONS, {}, env))
    assert (settings.rollup_1m_retention_days, settings.rollup_1h_retention_days) == (120, 1000)
    assert (settings.rollup_interval_s, settings.retention_interval_s) == (60.0, 3600.0)


def test_partition_options_reach_the_maintenance_jobs() -> None:
    env = {"DEALERPULSE_PARTITION_DAYS_AHEAD": "7", "DEALERPULSE_PARTITION_INTERVAL_S": "600"}
    jobs = maintenance_settings(CollectorSettings.from_values(resolve(COLLECTOR_OPTIONS, {}, env)))
    assert (jobs.partition_days_ahead, jobs.partition_interval_s) == (7, 600.0)
    default = maintenance_settings(
        CollectorSettings.from_values(resolve(COLLECTOR_OPTIONS, {}, {}))
    )
    assert (default.partition_days_ahead, default.partition_interval_s) == (3, 3600.0)
    with pytest.raises(ConfigError, match="partition_days_ahead"):
        resolve(COLLECTOR_OPTIONS, {}, {"DEALERPULSE_PARTITION_DAYS_AHEAD": "0"})


def test_shorter_rollup_retention_than_raw_is_refused() -> None:
    with pytest.raises(ConfigError, match="rollup_1m_retention_days"):
        CollectorSettings(retention_days=30, rollup_1m_retention_days=10)
