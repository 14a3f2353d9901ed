"""The collector's maintenance jobs (APScheduler 3, AsyncIOScheduler): rollups, retention
and, on PostgreSQL, the daily partitions of the raw tables.

Like :mod:`collector.alerting.jobs`: interval jobs, blocking database work in
a thread so the event loop keeps serving ingest, ``max_instances=1`` and
``coalesce`` so a slow run delays the next instead of piling up. Only the
process with ``run_jobs`` schedules them; across collectors on one PostgreSQL
the maintenance lock (:mod:`collector.rollup.lock`) lets one run at a time.
The partition job does not take it (it must not wait behind a long
retention run): it runs once at start and hourly, and its own advisory lock
serialises collectors (:mod:`collector.store.partitions`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from collector.abc import StoreError
from collector.rollup.retention import RetentionPolicy, RetentionReport, RetentionRunner
from collector.rollup.rollups import RollupReport, RollupRunner, RollupSettings
from collector.scheduling import shut_down
from collector.settings import CollectorSettings
from collector.store.partitions import DAYS_AHEAD, PartitionReport, partition_manager
from dealerpulse.clock import Clock

logger = logging.getLogger(__name__)

ROLLUP_JOB = "rollup"
RETENTION_JOB = "retention"
PARTITION_JOB = "partitions"


@dataclass(frozen=True, slots=True)
class MaintenanceSettings:
    rollup_interval_s: float = 60.0
    retention_interval_s: float = 3600.0
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    partition_interval_s: float = 3600.0
    partition_days_ahead: int = DAYS_AHEAD


@dataclass(frozen=True, slots=True)
class MaintenanceStats:
    """Runs completed so far; tests wait on these instead of sleeping."""

    rollups: int = 0
    retentions: int = 0
    failures: int = 0
    last_rollup: RollupReport | None = None
    last_retention: RetentionReport | None = None
    partition_runs: int = 0
    last_partitions: PartitionReport | None = None


class MaintenanceJobs:
    """Start with :meth:`start` inside the collector's event loop; :meth:`stop` on shutdown."""

    def __init__(
        self, engine: Engine, clock: Clock, settings: MaintenanceSettings | None = None
    ) -> None:
        self._clock = clock
        self._settings = settings or MaintenanceSettings()
        policy = self._settings.retention
        self._rollups = RollupRunner(engine, RollupSettings(raw_retention_days=policy.raw_days))
        self._retention = RetentionRunner(engine, policy)
        self._partitions = partition_manager(engine, self._settings.partition_days_ahead)
        self._scheduler: AsyncIOScheduler | None = None
        self._stats = MaintenanceStats()
        # Held while a job runs: stop() waits for it before the store closes.
        self._running = asyncio.Lock()

    def stats(self) -> MaintenanceStats:
        return self._stats

    async def start(self) -> None:
        if self._scheduler is not None:
            raise RuntimeError("MaintenanceJobs.start() called twice")
        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=asyncio.get_running_loop())
        for job_id, job, interval_s in (
            (ROLLUP_JOB, self._rollup, self._settings.rollup_interval_s),
            (RETENTION_JOB, self._retain, self._settings.retention_interval_s),
        ):
            scheduler.add_job(
                job,
                IntervalTrigger(seconds=interval_s, timezone=UTC),
                id=job_id,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        if self._partitions is not None:
            # At start too: today's partition may be missing after a long stop.
            scheduler.add_job(
                self._partition,
                IntervalTrigger(seconds=self._settings.partition_interval_s, timezone=UTC),
                id=PARTITION_JOB,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=datetime.now(UTC),
            )
        scheduler.start()
        self._scheduler = scheduler
        logger.info(
            "maintenance jobs scheduled: rollups every %.3g s, retention every %.3g s",
            self._settings.rollup_interval_s,
            self._settings.retention_interval_s,
        )

    async def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop scheduling; wait up to ``timeout_s`` for a running job. True: none is left."""
        scheduler, self._scheduler = self._scheduler, None
        # Safe to leave: every chunk is its own transaction, and rollups are idempotent.
        return await shut_down(scheduler, [self._running], timeout_s, "a maintenance job")

    async def _rollup(self) -> None:
        async with self._running:
            try:
                report = await asyncio.to_thread(self._rollups.run, self._clock.now())
            except StoreError as error:
                self._failed("rollup", error)
                return
            self._stats = replace(self._stats, rollups=self._stats.rollups + 1, last_rollup=report)

    async def _retain(self) -> None:
        async with self._running:
            try:
                report = await asyncio.to_thread(self._retention.run, self._clock.now())
            except StoreError as error:
                self._failed("retention", error)
                return
            self._stats = replace(
                self._stats, retentions=self._stats.retentions + 1, last_retention=report
            )

    async def _partition(self) -> None:
        if self._partitions is None:
            return
        async with self._running:
            try:
                report = await asyncio.to_thread(self._partitions.ensure, self._clock.now())
            except StoreError as error:
                self._failed("partition maintenance", error)
                return
            self._stats = replace(
                self._stats,
                partition_runs=self._stats.partition_runs + 1,
                last_partitions=report,
            )

    def _failed(self, what: str, error: Exception) -> None:
        logger.error("%s failed, retrying at the next run: %s", what, error)
        self._stats = replace(self._stats, failures=self._stats.failures + 1)


def maintenance_settings(settings: CollectorSettings) -> MaintenanceSettings:
    """From the collector's settings (collector.settings.ROLLUP_OPTIONS)."""
    return MaintenanceSettings(
        rollup_interval_s=settings.rollup_interval_s,
        retention_interval_s=settings.retention_interval_s,
        retention=RetentionPolicy(
            raw_days=settings.retention_days,
            rollup_1m_days=settings.rollup_1m_retention_days,
            rollup_1h_days=settings.rollup_1h_retention_days,
        ),
        partition_interval_s=settings.partition_interval_s,
        partition_days_ahead=settings.partition_days_ahead,
    )
