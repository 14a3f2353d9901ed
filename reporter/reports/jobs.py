"""The collector's scheduled report job (APScheduler 3, AsyncIOScheduler).

One job makes every due report and sends what waits for delivery. It fires
at each schedule's local time (cron), every ``check_interval_s`` as a
safety net, and once at start-up, which catches up the periods missed while
no collector ran. Which periods are due is decided by
:func:`reporter.reports.schedule.due_periods` from the injected clock, not by
the trigger, so the trigger's own DST behaviour cannot skip or double a
report; the unique claim in ``reports`` makes several collectors (or a rerun)
harmless.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, select

from collector.abc import StoreError
from collector.alerting.errors import PermanentSendError, SendError
from collector.scheduling import shut_down
from collector.store.engine import translated_errors
from collector.store.schema import dealers
from dealerpulse.clock import Clock
from reporter.model import ReportFormat
from reporter.reports.abc import OutgoingReport, ReportSender
from reporter.reports.archive import PendingDelivery
from reporter.reports.content import ReportOptions
from reporter.reports.delivery import report_url, senders_from_settings
from reporter.reports.generator import ReportError, ReportGenerator, store_analytics
from reporter.reports.options import OFF
from reporter.reports.render import summary_lines
from reporter.reports.schedule import (
    DAILY,
    WEEKLY,
    Schedule,
    due_periods,
    parse_at,
    parse_timezone,
    parse_weekday,
)

if TYPE_CHECKING:
    from collector.settings import CollectorSettings

logger = logging.getLogger(__name__)

REPORT_JOB = "periodic-reports"


def default_schedules(daily_at: str = "06:00", weekly_on: str = "mon") -> tuple[Schedule, ...]:
    """Daily at ``daily_at``; weekly on ``weekly_on`` at the same time. "off": not that one."""
    daily = daily_at != OFF
    at = parse_at(daily_at if daily else "06:00")
    schedules: list[Schedule] = []
    if daily:
        schedules.append(Schedule(DAILY, at))
    if weekly_on != OFF:
        schedules.append(Schedule(WEEKLY, at, parse_weekday(weekly_on), max_catch_up=4))
    return tuple(schedules)


@dataclass(frozen=True, slots=True)
class ReportJobSettings:
    schedules: tuple[Schedule, ...] = field(default_factory=default_schedules)
    timezone: str = "UTC"
    check_interval_s: float = 600.0
    public_url: str | None = None  # REPORTER_PUBLIC_URL: linked from Slack and email
    max_delivery_attempts: int = 5


@dataclass(frozen=True, slots=True)
class RunReport:
    made: tuple[int, ...] = ()  # report ids made by this run
    delivered: tuple[int, ...] = ()
    failures: int = 0


@dataclass(frozen=True, slots=True)
class ReportJobStats:
    """Runs completed so far; tests wait on these instead of sleeping."""

    runs: int = 0
    made: int = 0
    delivered: int = 0
    failures: int = 0
    last_run: RunReport | None = None


class ReportJobs:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        generator: ReportGenerator,
        senders: Sequence[ReportSender] = (),
        settings: ReportJobSettings | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._generator = generator
        self._archive = generator.archive
        self._senders = tuple(senders)
        self._settings = settings or ReportJobSettings()
        self._tz = parse_timezone(self._settings.timezone)
        self._scheduler: AsyncIOScheduler | None = None
        self._running = asyncio.Lock()
        self._stats = ReportJobStats()

    def stats(self) -> ReportJobStats:
        return self._stats

    # ---- the work (blocking; the scheduler runs it in a thread)

    def run_once(self) -> RunReport:
        """Make every due report, then send what waits for delivery."""
        made: list[int] = []
        failures = 0
        now = self._clock.now()
        for dealer_id, created_at in self._dealers():
            for schedule in self._settings.schedules:
                last = self._archive.last_period_end(dealer_id, schedule.period, now)
                for period in due_periods(schedule, self._tz, last, now):
                    if period.end <= created_at:
                        continue  # the dealer did not exist yet
                    try:
                        record = self._generator.generate_period(
                            dealer_id, period, deliver=bool(self._senders)
                        )
                    except ReportError as error:
                        logger.error("%s", error)
                        failures += 1
                        continue
                    if record is not None:
                        made.append(record.report_id)
        delivered, delivery_failures = self.deliver_pending()
        return RunReport(tuple(made), tuple(delivered), failures + delivery_failures)

    def deliver_pending(self) -> tuple[list[int], int]:
        """Send ready reports to every channel that has not had them. (sent ids, failures)"""
        sent: list[int] = []
        failures = 0
        if not self._senders:
            return sent, failures
        for pending in self._archive.pending_deliveries(self._clock.now()):
            outcome = self._deliver(pending)
            if outcome == "sent":
                sent.append(pending.report_id)
            elif outcome is not None:
                failures += 1
        return sent, failures

    def _deliver(self, pending: PendingDelivery) -> str | None:
        claim = self._archive.claim_delivery(pending.report_id, self._clock.now())
        if claim is None:
            return None  # another collector sends it
        try:
            report = self._outgoing(pending)
        except ReportError as error:
            self._archive.record_delivery(
                claim, pending.delivered_channels, "failed", str(error), pending.attempts + 1
            )
            return "failed"
        done = set(pending.delivered_channels)
        errors: list[str] = []
        permanent = False
        for sender in self._senders:
            if sender.channel in done:
                continue
            try:
                sender.send(report)
                done.add(sender.channel)
            except SendError as error:
                errors.append(f"{sender.channel}: {error}")
                permanent |= isinstance(error, PermanentSendError)
        attempts = pending.attempts + 1
        if not errors:
            outcome = "sent"
        elif permanent or attempts >= self._settings.max_delivery_attempts:
            outcome = "failed"
        else:
            outcome = "pending"
        if errors:
            logger.warning(
                "report %s delivery (%s): %s", report.report_id, outcome, "; ".join(errors)
            )
        self._archive.record_delivery(
            claim, sorted(done), outcome, "; ".join(errors) or None, attempts
        )
        return outcome

    def _outgoing(self, pending: PendingDelivery) -> OutgoingReport:
        html = self._archive.get(pending.report_id, ReportFormat.HTML)
        text = self._archive.get(pending.report_id, ReportFormat.TEXT)
        document = self._archive.get(pending.report_id, ReportFormat.JSON)
        if html is None or text is None or document is None:
            raise ReportError(f"report {pending.report_id} has no stored body to deliver")
        return OutgoingReport(
            report_id=pending.report_id,
            dealer_id=pending.dealer_id,
            title=pending.title,
            html=html.body.decode("utf-8"),
            text=text.body.decode("utf-8"),
            summary=tuple(summary_lines(json.loads(document.body))),
            url=report_url(self._settings.public_url, pending.report_id),
        )

    def _dealers(self) -> list[tuple[str, datetime]]:
        query = select(dealers.c.dealer_id, dealers.c.created_at).order_by(dealers.c.dealer_id)
        with translated_errors("listing dealers for reports"), self._engine.connect() as connection:
            return [(row.dealer_id, row.created_at) for row in connection.execute(query)]

    # ---- scheduling

    async def start(self) -> None:
        if self._scheduler is not None:
            raise RuntimeError("ReportJobs.start() called twice")
        scheduler = AsyncIOScheduler(timezone=UTC, event_loop=asyncio.get_running_loop())
        triggers: list[CronTrigger | IntervalTrigger] = [
            IntervalTrigger(seconds=self._settings.check_interval_s, timezone=UTC)
        ]
        for schedule in self._settings.schedules:
            day = "*" if schedule.period == DAILY else str(schedule.weekday)
            triggers.append(
                CronTrigger(
                    day_of_week=day,
                    hour=schedule.at.hour,
                    minute=schedule.at.minute,
                    timezone=self._tz,
                )
            )
        scheduler.add_job(
            self._run,
            OrTrigger(triggers),
            id=REPORT_JOB,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=datetime.now(UTC),  # catch up at start-up (real time: the scheduler's)
        )
        scheduler.start()
        self._scheduler = scheduler
        logger.info(
            "report jobs scheduled: %s in %s, channels: %s",
            ", ".join(f"{s.period} at {s.at:%H:%M}" for s in self._settings.schedules) or "none",
            self._settings.timezone,
            ", ".join(s.channel for s in self._senders) or "none",
        )

    async def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop scheduling; wait up to ``timeout_s`` for a running job. True: none is left."""
        scheduler, self._scheduler = self._scheduler, None
        # Safe to leave: a claim outlives its owner only until its lease ends.
        return await shut_down(scheduler, [self._running], timeout_s, "a report job")

    async def _run(self) -> None:
        async with self._running:
            try:
                report = await asyncio.to_thread(self.run_once)
            except StoreError as error:
                logger.error("report job failed, retrying at the next run: %s", error)
                self._stats = replace(
                    self._stats, runs=self._stats.runs + 1, failures=self._stats.failures + 1
                )
                return
            self._stats = replace(
                self._stats,
                runs=self._stats.runs + 1,
                made=self._stats.made + len(report.made),
                delivered=self._stats.delivered + len(report.delivered),
                failures=self._stats.failures + report.failures,
                last_run=report,
            )


def report_jobs_from_settings(
    engine: Engine, settings: CollectorSettings, clock: Clock
) -> ReportJobs:
    """The collector's report jobs: schedules, time zone, thresholds and channels from settings."""
    options = ReportOptions(
        timezone=settings.report_timezone,
        response_time_threshold_ms=settings.alert_threshold_response_time,
        error_rate_threshold_percent=settings.alert_threshold_error_rate,
    )
    generator = ReportGenerator(engine, store_analytics(engine), clock, options)
    return ReportJobs(
        engine,
        clock,
        generator,
        senders_from_settings(settings),
        ReportJobSettings(
            schedules=default_schedules(settings.report_daily_at, settings.report_weekly_on),
            timezone=settings.report_timezone,
            check_interval_s=settings.report_check_interval_s,
            public_url=settings.reporter_public_url,
        ),
    )
