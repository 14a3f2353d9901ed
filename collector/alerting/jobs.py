"""The collector's scheduled alerting jobs (APScheduler 3, AsyncIOScheduler).

Two interval jobs: alert evaluation (:meth:`AlertEngine.tick`) every
``alert_interval_s`` and the outbox dispatcher (:meth:`Dispatcher.run_once`)
every ``dispatch_interval_s``. Both are blocking database work, run in a
thread so the event loop keeps serving ingest; ``max_instances=1`` and
``coalesce`` mean a slow tick delays the next one instead of piling up.

Only one process of a ``--workers`` collector schedules (the settings'
``run_jobs``); several collectors on one database share the work: a tick
claims its time slot in the database (:mod:`collector.alerting.ticks`), so
each slot of ``alert_interval_s`` is evaluated by exactly one collector, and
the outbox's claims skip rows another dispatcher holds, so nothing is sent
twice.

The evaluation job fires just after each slot boundary (the same real-time
grid in every collector), so every live collector tries every slot: when the
one that claimed a slot dies mid-tick, its claim rolls back and a collector
waiting on the lock evaluates the slot instead.

The scheduler fires on real time; what the jobs consider "now" comes from the
injected clock, so tests drive minutes of alert behaviour with a FakeClock.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, text

from collector.abc import StoreError
from collector.alerting.abc import Notifier
from collector.alerting.dispatch import Dispatcher, DispatchPolicy, DispatchReport
from collector.alerting.engine import AlertEngine, EngineSettings, TickReport
from collector.alerting.repository import sync_builtin_rules
from collector.alerting.rules import Rule
from collector.alerting.ticks import SlotClaims, default_owner
from collector.scheduling import shut_down
from collector.store.engine import WRITE_OPTION, translated_errors
from dealerpulse.clock import Clock

logger = logging.getLogger(__name__)

# Serialises the built-in sync of collectors starting together on one PostgreSQL.
_SYNC_LOCK_KEY = 0x6470_7275_6C65_7331

TICK_JOB = "alert-evaluation"
DISPATCH_JOB = "notification-dispatch"

# Ticks fire this fraction of an interval after a slot boundary: a run that is
# late by up to the rest of the interval still lands in its slot.
_SLOT_OFFSET = 0.05


@dataclass(frozen=True, slots=True)
class JobSettings:
    alert_interval_s: float = 15.0
    dispatch_interval_s: float = 3.0
    # A dealer's first notification waits this long for others to go out as one message.
    group_wait_s: float = 0.0
    # Who claims tick slots (alert_ticks.claimed_by); None: host and process id.
    tick_owner: str | None = None


@dataclass(frozen=True, slots=True)
class JobStats:
    """Runs completed so far; tests wait on these instead of sleeping."""

    # Evaluation runs, including those that found their slot already evaluated
    # by another collector (counted again in skipped_ticks).
    ticks: int = 0
    dispatches: int = 0
    failures: int = 0
    last_tick: TickReport | None = None
    last_dispatch: DispatchReport | None = None
    # Seconds the last run took (by the clock's monotonic time), failed runs
    # included: a tick slowed down by a struggling database is what to watch.
    last_tick_s: float | None = None
    last_dispatch_s: float | None = None
    skipped_ticks: int = 0


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
        self._claims = SlotClaims(
            self._settings.alert_interval_s, self._settings.tick_owner or default_owner()
        )
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
        tick_s, dispatch_s = self._settings.alert_interval_s, self._settings.dispatch_interval_s
        # The scheduler runs on real time, so the slot grid is laid on real time too
        # (SystemClock's time, the clock production runs with).
        tick_start = slot_aligned_start(datetime.now(UTC), tick_s)
        for job_id, job, trigger in (
            (
                TICK_JOB,
                self._tick,
                IntervalTrigger(seconds=tick_s, start_date=tick_start, timezone=UTC),
            ),
            (DISPATCH_JOB, self._dispatch, IntervalTrigger(seconds=dispatch_s, timezone=UTC)),
        ):
            scheduler.add_job(
                job,
                trigger,
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
        running = [self._tick_running, self._dispatch_running]
        return await shut_down(scheduler, running, timeout_s, "an alert job")

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
                report = await asyncio.to_thread(engine.tick, self._claims)
            except StoreError as error:
                # The database may be briefly away; the next tick tries again.
                self._stats = replace(self._stats, last_tick_s=self._since(started))
                self._failed("alert evaluation", error)
                return
            self._stats = replace(
                self._stats,
                ticks=self._stats.ticks + 1,
                skipped_ticks=self._stats.skipped_ticks + report.skipped,
                last_tick=self._stats.last_tick if report.skipped else report,
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


def slot_aligned_start(now: datetime, interval_s: float) -> datetime:
    """The first fire time: a slot boundary plus the offset, at least one interval away.

    The first run is never sooner than an unaligned trigger's (``now`` plus one
    interval) and at most one interval later.
    """
    if now.tzinfo is None:
        raise ValueError("now: must be timezone-aware UTC")
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"interval_s: must be positive, got {interval_s!r}")
    offset_s = interval_s * _SLOT_OFFSET
    earliest = now.timestamp() + interval_s
    slots = math.ceil((earliest - offset_s) / interval_s)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + timedelta(seconds=slots * interval_s + offset_s)
