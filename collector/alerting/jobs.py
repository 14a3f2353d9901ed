"""The collector's scheduled alerting jobs (APScheduler 3, AsyncIOScheduler).

Two interval jobs: alert evaluation (:meth:`AlertEngine.tick`) every
``alert_interval_s`` and the outbox dispatcher (:meth:`Dispatcher.run_once`)
every ``dispatch_interval_s``. Both are blocking database work, run in a
thread so the event loop keeps serving ingest; ``max_instances=1`` and
``coalesce`` mean a slow tick delays the next one instead of piling up.

Only one process of a ``--workers`` collector schedules (the settings'
``run_jobs``); several collectors on one database are safe regardless: a tick
holds an advisory lock (SQLite: BEGIN IMMEDIATE) and the outbox's claims skip
rows another dispatcher holds, so nothing is evaluated or sent twice.

The scheduler fires on real time; what the jobs consider "now" comes from the
injected clock, so tests drive minutes of alert behaviour with a FakeClock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, text

from collector.abc import StoreError
from collector.alerting.abc import Notifier
from collector.alerting.dispatch import Dispatcher, DispatchPolicy, DispatchReport
from collector.alerting.engine import AlertEngine, EngineSettings, TickReport
from collector.alerting.repository import sync_builtin_rules
from collector.alerting.rules import Rule
from collector.store.engine import WRITE_OPTION, translated_errors
from dealerpulse.clock import Clock

logger = logging.getLogger(__name__)

# Serialises the built-in sync of collectors starting together on one PostgreSQL.
_SYNC_LOCK_KEY = 0x6470_7275_6C65_7331

TICK_JOB = "alert-evaluation"
DISPATCH_JOB = "notification-dispatch"


@dataclass(frozen=True, slots=True)
class JobSettings:
    alert_interval_s: float = 15.0
    dispatch_interval_s: float = 3.0
    # A dealer's first notification waits this long for others to go out as one message.
    group_wait_s: float = 0.0


@dataclass(frozen=True, slots=True)
class JobStats:
    """Runs completed so far; tests wait on these instead of sleeping."""

    ticks: int = 0
    dispatches: int = 0
    failures: int = 0
    last_tick: TickReport | None = None
    last_dispatch: DispatchReport | None = None
    # Seconds the last run took (by the clock's monotonic time), failed runs
    # included: a tick slowed down by a struggling database is what to watch.
    last_tick_s: float | None = None
    last_dispatch_s: float | None = None


class AlertJobs:
    """Start with :meth:`start` inside the collector's event loop; :meth:`stop` on shutdown."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        notifiers: Mapping[str, Notifier],
        builtin_rules: Sequence[Rule],
        settings: JobSettings | None = None,
        engine_settings: EngineSettings | None = None,
    ) -> None:
        self._db = engine
        self._clock = clock
        self._builtin_rules = tuple(builtin_rules)
        self._settings = settings or JobSettings()
        self._engine_settings = engine_settings
        self._notifiers = dict(notifiers)
        self._alert_engine: AlertEngine | None = None
        self._dispatcher = Dispatcher(
            engine,
            self._notifiers,
            clock,
            DispatchPolicy(group_wait_s=self._settings.group_wait_s),
        )
        self._scheduler: AsyncIOScheduler | None = None
        self._stats = JobStats()
        # Held while a job runs: stop() waits for them before the store closes.
        self._tick_running = asyncio.Lock()
        self._dispatch_running = asyncio.Lock()
        self._eager: set[asyncio.Task[None]] = set()

    def stats(self) -> JobStats:
        return self._stats

    async def start(self) -> None:
        if self._scheduler is not None:
            raise RuntimeError("AlertJobs.start() called twice")
        await asyncio.to_thread(self._sync_builtins)
        # Created now so that its start-up grace period begins with the jobs.
        self._alert_engine = AlertEngine(self._db, self._clock, self._engine_settings)
        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=asyncio.get_running_loop())
        for job_id, job, interval_s in (
            (TICK_JOB, self._tick, self._settings.alert_interval_s),
            (DISPATCH_JOB, self._dispatch, self._settings.dispatch_interval_s),
        ):
            scheduler.add_job(
                job,
                IntervalTrigger(seconds=interval_s, timezone=UTC),
                id=job_id,
                max_instances=1,
                coalesce=True,
                # A late run is still worth running (once, thanks to coalesce).
                misfire_grace_time=None,
            )
        scheduler.start()
        self._scheduler = scheduler
        logger.info(
            "alert jobs scheduled: evaluation every %.3g s, dispatch every %.3g s, channels: %s",
            self._settings.alert_interval_s,
            self._settings.dispatch_interval_s,
            ", ".join(sorted(self._notifiers)) or "none",
        )

    async def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop scheduling; wait up to ``timeout_s`` for a running job. True: none is left."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return True
        scheduler.shutdown(wait=False)

        async def settle() -> None:
            async with self._tick_running, self._dispatch_running:
                pass

        try:
            await asyncio.wait_for(settle(), timeout_s)
        except TimeoutError:
            logger.warning("an alert job still runs after %.0f s; leaving it", timeout_s)
            return False
        return True

    def _sync_builtins(self) -> None:
        now = self._clock.now()
        with translated_errors("syncing built-in alert rules"), self._db.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SYNC_LOCK_KEY}
                    )
                sync_builtin_rules(connection, self._builtin_rules, now)

    async def _tick(self) -> None:
        engine = self._alert_engine
        if engine is None:
            return
        async with self._tick_running:
            started = self._clock.monotonic()
            try:
                report = await asyncio.to_thread(engine.tick)
            except StoreError as error:
                # The database may be briefly away; the next tick tries again.
                self._stats = replace(self._stats, last_tick_s=self._since(started))
                self._failed("alert evaluation", error)
                return
            self._stats = replace(
                self._stats,
                ticks=self._stats.ticks + 1,
                last_tick=report,
                last_tick_s=self._since(started),
            )
        if report.notifications:
            self._dispatch_now()

    def _dispatch_now(self) -> None:
        """Send what the tick just queued instead of waiting for the next dispatch run.

        Alert latency is then one evaluation interval plus a send, not plus a
        dispatch interval. The dispatch lock keeps runs one at a time.
        """
        task = asyncio.get_running_loop().create_task(self._dispatch())
        self._eager.add(task)
        task.add_done_callback(self._eager.discard)

    async def _dispatch(self) -> None:
        async with self._dispatch_running:
            if self._scheduler is None:
                return  # stopped while this run waited for the lock
            started = self._clock.monotonic()
            try:
                report = await asyncio.to_thread(self._dispatcher.run_once)
            except StoreError as error:
                self._stats = replace(self._stats, last_dispatch_s=self._since(started))
                self._failed("notification dispatch", error)
                return
            self._stats = replace(
                self._stats,
                dispatches=self._stats.dispatches + 1,
                last_dispatch=report,
                last_dispatch_s=self._since(started),
            )

    def _since(self, started: float) -> float:
        return max(0.0, self._clock.monotonic() - started)

    def _failed(self, what: str, error: Exception) -> None:
        logger.error("%s failed, retrying at the next run: %s", what, error)
        self._stats = replace(self._stats, failures=self._stats.failures + 1)
