"""Scheduled reports: one per dealer and period, with two collectors, after a restart, on time."""

from __future__ import annotations

import asyncio
import itertools
import threading
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import func, select

from collector.store import SQLAlchemyMetricStore, open_store
from collector.store.schema import reports
from dealerpulse.clock import FakeClock
from reporter.model import TimeRange
from reporter.reports import ReportGenerator, ReportJobs, ReportJobSettings, Schedule
from reporter.reports.archive import ReportArchive, claim_key
from reporter.reports.content import ReportOptions
from reporter.reports.schedule import DAILY, WEEKLY

from .helpers import CountingAnalytics, add_dealers

NY = "America/New_York"
DAILY_ONLY = ReportJobSettings(schedules=(Schedule(DAILY, time(6)),), timezone=NY)
BOTH = ReportJobSettings(
    schedules=(Schedule(DAILY, time(6)), Schedule(WEEKLY, time(6), weekday=0)), timezone=NY
)


def _jobs(
    store: SQLAlchemyMetricStore, clock: FakeClock, settings: ReportJobSettings
) -> ReportJobs:
    generator = ReportGenerator(
        store.engine, CountingAnalytics(), clock, ReportOptions(timezone=settings.timezone)
    )
    return ReportJobs(store.engine, clock, generator, (), settings)


def _rows(store: SQLAlchemyMetricStore) -> list[tuple[str, str, datetime, datetime, str]]:
    query = select(
        reports.c.dealer_id,
        reports.c.period,
        reports.c.period_start,
        reports.c.period_end,
        reports.c.status,
    ).order_by(reports.c.period, reports.c.dealer_id, reports.c.period_start)
    with store.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def test_restart_makes_nothing_twice_and_catches_up(store: SQLAlchemyMetricStore) -> None:
    add_dealers(store, "acme-motors")
    # Tuesday 2026-03-10 07:00 UTC is 03:00 in New York (EDT since Sunday): the 9th is not due.
    clock = FakeClock(datetime(2026, 3, 10, 7, tzinfo=UTC))
    first = _jobs(store, clock, DAILY_ONLY).run_once()
    assert len(first.made) == 1
    ((dealer, period, start, end, status),) = _rows(store)
    assert (dealer, period, status) == ("acme-motors", "daily", "ready")
    assert start == datetime(2026, 3, 8, 5, tzinfo=UTC)  # midnight EST
    assert end - start == timedelta(hours=23)  # the day the clocks went forward

    restarted = _jobs(store, clock, DAILY_ONLY)
    assert restarted.run_once().made == ()
    clock.advance(3 * 86400)  # three days without a collector
    caught_up = restarted.run_once()
    assert len(caught_up.made) == 3
    rows = _rows(store)
    assert [r[2].astimezone(UTC).day for r in rows] == [8, 9, 10, 11]
    assert all(after[2] == before[3] for before, after in itertools.pairwise(rows))


def test_a_dealer_gets_no_report_of_days_before_it_existed(store: SQLAlchemyMetricStore) -> None:
    add_dealers(store, "acme-motors")  # created 2026-03-01 00:00 UTC
    clock = FakeClock(datetime(2026, 3, 1, 12, tzinfo=UTC))  # the newest due day is Feb 28
    in_utc = ReportJobSettings(schedules=DAILY_ONLY.schedules, timezone="UTC")
    assert _jobs(store, clock, in_utc).run_once().made == ()
    assert _rows(store) == []


def test_two_collectors_on_one_postgresql_make_each_report_once(pg_url: str) -> None:
    stores = [open_store(pg_url, pool_size=3) for _ in range(2)]
    try:
        add_dealers(stores[0], "acme-motors", "zenith-cars", "bravo-autos")
        clock = FakeClock(datetime(2026, 3, 16, 12, tzinfo=UTC))  # a Monday, after 06:00 EDT
        jobs = [_jobs(s, clock, BOTH) for s in stores]
        start = threading.Barrier(len(jobs), timeout=30)
        made: list[tuple[int, ...]] = []

        def run(job: ReportJobs) -> None:
            start.wait()
            made.append(job.run_once().made)

        threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        rows = _rows(stores[0])
        # Three dealers, one daily (the 15th) and one weekly (9th-15th) report each.
        assert len(rows) == 6 and {r[4] for r in rows} == {"ready"}
        assert sorted(made[0] + made[1]) == sorted(_ids(stores[0]))
        for job in jobs:  # and a rerun by either makes nothing
            assert job.run_once().made == ()
    finally:
        for store in stores:
            store.close()


def _ids(store: SQLAlchemyMetricStore) -> list[int]:
    with store.engine.connect() as connection:
        return list(connection.scalars(select(reports.c.id)))


def test_a_claim_left_by_a_dead_collector_is_taken_over_after_the_lease(
    store: SQLAlchemyMetricStore,
) -> None:
    add_dealers(store, "acme-motors")
    clock = FakeClock(datetime(2026, 3, 10, 12, tzinfo=UTC))
    jobs = _jobs(store, clock, DAILY_ONLY)
    # A collector claimed the 9th and died before filling it.
    period_start = datetime(2026, 3, 9, 4, tzinfo=UTC)
    dead = ReportArchive(store.engine).claim(
        dealer_id="acme-motors",
        period=DAILY,
        time_range=TimeRange(period_start, period_start + timedelta(days=1)),
        key=claim_key(DAILY, "acme-motors", period_start),
        timezone=NY,
        title="Daily performance report: acme-motors, 2026-03-09",
        now=clock.now(),
    )
    assert dead is not None
    assert jobs.run_once().made == ()  # still within its lease
    clock.advance(31 * 60)
    assert jobs.run_once().made == (dead.report_id,)
    with store.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(reports)) == 1
    assert ReportArchive(store.engine).get(dead.report_id) is not None


def test_the_scheduler_runs_the_job_at_start(store: SQLAlchemyMetricStore) -> None:
    add_dealers(store, "acme-motors")
    clock = FakeClock(datetime(2026, 3, 10, 12, tzinfo=UTC))
    jobs = _jobs(store, clock, DAILY_ONLY)

    async def scenario() -> None:
        await jobs.start()
        try:
            for _ in range(600):  # up to 30 s
                if jobs.stats().runs:
                    break
                await asyncio.sleep(0.05)
        finally:
            assert await jobs.stop()

    asyncio.run(scenario())
    stats = jobs.stats()
    assert stats.runs >= 1 and stats.made == 1 and stats.failures == 0
