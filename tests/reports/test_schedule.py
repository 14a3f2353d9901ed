"""Report periods across daylight-saving changes: never skipped, never doubled."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reporter.reports.schedule import (
    DAILY,
    WEEKLY,
    Period,
    Schedule,
    ScheduleError,
    due_periods,
    parse_at,
    parse_timezone,
    parse_weekday,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
DAILY_6 = Schedule(DAILY, time(6, 0))


def drive(
    schedule: Schedule, tz: ZoneInfo, start: datetime, end: datetime, every: timedelta
) -> list[Period]:
    """Ask every ``every`` from ``start`` to ``end``, as the job does, and record what is made."""
    made: list[Period] = []
    last_done: datetime | None = None
    now = start
    for _ in range(10_000):  # bounded
        if now > end:
            break
        for period in due_periods(schedule, tz, last_done, now):
            assert period.due <= now
            made.append(period)
            last_done = period.end
        now += every
    return made


@pytest.mark.parametrize(
    ("tz", "change_day", "hours"),
    [
        (NEW_YORK, date(2026, 3, 8), 23),  # spring forward
        (NEW_YORK, date(2026, 11, 1), 25),  # fall back
        (BERLIN, date(2026, 3, 29), 23),
        (BERLIN, date(2026, 10, 25), 25),
    ],
)
@pytest.mark.parametrize("at", [time(6, 0), time(2, 30), time(1, 30), time(0, 0)])
def test_one_daily_report_per_local_day_across_a_dst_change(
    tz: ZoneInfo, change_day: date, hours: int, at: time
) -> None:
    schedule = Schedule(DAILY, at)
    start = datetime.combine(change_day - timedelta(days=3), time(12), tzinfo=tz).astimezone(UTC)
    made = drive(schedule, tz, start, start + timedelta(days=6), timedelta(minutes=10))
    days = [p.first_day for p in made]
    assert days == [change_day + timedelta(days=n) for n in range(-4, 3)]
    for before, after in itertools.pairwise(made):
        assert after.start == before.end  # contiguous: nothing skipped or doubled
    (changed,) = [p for p in made if p.first_day == change_day]
    assert changed.end - changed.start == timedelta(hours=hours)
    assert changed.start == datetime.combine(change_day, time(0), tzinfo=tz)
    # Due at the local time asked, on the next day (fold=0 in a gap or an overlap).
    for period in made:
        due_local = period.due.astimezone(tz)
        assert due_local.date() == period.first_day + timedelta(days=1)


def test_november_in_berlin_is_ordinary() -> None:
    made = drive(
        DAILY_6,
        BERLIN,
        datetime(2026, 10, 31, 12, tzinfo=UTC),
        datetime(2026, 11, 4, 12, tzinfo=UTC),
        timedelta(hours=1),
    )
    assert [p.first_day.day for p in made] == [30, 31, 1, 2, 3]
    assert all(p.end - p.start == timedelta(hours=24) for p in made if p.first_day.month == 11)


def test_due_time_in_the_spring_gap_fires_once() -> None:
    # 02:30 does not exist in New York on 2026-03-08; the report of the 7th is still made once.
    made = drive(
        Schedule(DAILY, time(2, 30)),
        NEW_YORK,
        datetime(2026, 3, 8, 5, tzinfo=UTC),
        datetime(2026, 3, 8, 10, tzinfo=UTC),
        timedelta(minutes=1),
    )
    # The first call makes the newest period already due (the 6th), then the 7th, once.
    assert [p.first_day for p in made] == [date(2026, 3, 6), date(2026, 3, 7)]
    assert made[1].due == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 EDT


def test_due_time_in_the_autumn_overlap_fires_once() -> None:
    # 01:30 happens twice in New York on 2026-11-01; the first one counts.
    made = drive(
        Schedule(DAILY, time(1, 30)),
        NEW_YORK,
        datetime(2026, 11, 1, 4, tzinfo=UTC),
        datetime(2026, 11, 1, 9, tzinfo=UTC),
        timedelta(minutes=1),
    )
    # Asked every minute through both 01:30s: the 31st is made once.
    assert [p.first_day for p in made] == [date(2026, 10, 30), date(2026, 10, 31)]
    assert made[1].due == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT


def test_weekly_report_covers_the_seven_days_before_its_weekday() -> None:
    schedule = Schedule(WEEKLY, time(6, 0), weekday=0)
    # Monday 2026-03-09, 06:00 New York: the week of the spring change (167 hours).
    now = datetime(2026, 3, 9, 6, 0, tzinfo=NEW_YORK)
    (period,) = due_periods(schedule, NEW_YORK, None, now)
    assert (period.first_day, period.last_day) == (date(2026, 3, 2), date(2026, 3, 8))
    assert period.end - period.start == timedelta(hours=167)
    assert due_periods(schedule, NEW_YORK, period.end, now) == []
    assert due_periods(schedule, NEW_YORK, None, now - timedelta(minutes=1))[0].first_day == date(
        2026, 2, 23
    )


def test_catch_up_after_an_outage_is_bounded_and_oldest_first() -> None:
    now = datetime(2026, 3, 20, 12, tzinfo=UTC)
    last = datetime(2026, 3, 1, tzinfo=UTC)
    made = due_periods(Schedule(DAILY, time(6), max_catch_up=5), ZoneInfo("UTC"), last, now)
    assert [p.first_day.day for p in made] == [15, 16, 17, 18, 19]
    few = due_periods(DAILY_6, ZoneInfo("UTC"), datetime(2026, 3, 18, tzinfo=UTC), now)
    assert [p.first_day.day for p in few] == [18, 19]


ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago"]


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    start=st.datetimes(
        min_value=datetime(2025, 1, 1),  # noqa: DTZ001 (hypothesis wants naive bounds)
        max_value=datetime(2027, 12, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    at=st.times(),
    weekly=st.booleans(),
    steps=st.lists(st.integers(min_value=1, max_value=36 * 60), min_size=1, max_size=40),
)
def test_periods_are_contiguous_and_each_made_once(
    zone: str, start: datetime, at: time, weekly: bool, steps: list[int]
) -> None:
    tz = ZoneInfo(zone)
    schedule = Schedule(WEEKLY if weekly else DAILY, at.replace(tzinfo=None), max_catch_up=400)
    now, last_done = start, None
    made: list[Period] = []
    for minutes in steps:
        now += timedelta(minutes=minutes)
        for period in due_periods(schedule, tz, last_done, now):
            assert period.due <= now and period.start < period.end
            made.append(period)
            last_done = period.end
    for before, after in itertools.pairwise(made):
        assert after.start == before.end
        assert after.first_day == before.last_day + timedelta(days=1)
    # Nothing due is left behind.
    if last_done is not None:
        assert due_periods(schedule, tz, last_done, now) == []
    for period in made:
        length = period.end - period.start
        days = 1 if not weekly else 7
        assert abs(length - timedelta(days=days)) <= timedelta(hours=2)


def test_bad_settings_are_named() -> None:
    with pytest.raises(ScheduleError, match="25:00"):
        parse_at("25:00")
    with pytest.raises(ScheduleError, match="funday"):
        parse_weekday("funday")
    with pytest.raises(ScheduleError, match="Mars/Olympus"):
        parse_timezone("Mars/Olympus")
    with pytest.raises(ScheduleError, match="hourly"):
        Schedule("hourly", time(6))
    assert parse_weekday("Monday") == 0 and parse_at("6:05") == time(6, 5)
