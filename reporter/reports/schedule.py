"""When periodic reports are due: pure functions of a schedule, a time zone and now.

A daily report covers one local calendar day, [00:00, next 00:00) in the
report time zone, and is due at ``at`` local time on the next day. A weekly
report covers the seven local days before ``weekday`` and is due on that
day at ``at``. Periods are walked by local *date*, never by adding 24 hours
to a UTC instant, so a daylight-saving change makes a day 23 or 25 hours
long but never skips or repeats one. A due time that does not exist on a
spring-forward night (02:30 in New York) or happens twice on a fall-back
night (01:30) resolves with ``fold=0``: one instant per day, either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAILY = "daily"
WEEKLY = "weekly"
PERIODS = (DAILY, WEEKLY)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_AT_PATTERN = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class ScheduleError(ValueError):
    """A schedule setting that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Schedule:
    period: str  # DAILY or WEEKLY
    at: time  # local time of day the report is due
    weekday: int = 0  # WEEKLY: the day (0 = Monday) the report goes out; the week ends then
    # After a long outage, at most this many of the newest missed periods are made.
    max_catch_up: int = 7

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise ScheduleError(f"report period {self.period!r} is not one of {PERIODS}")
        if not 0 <= self.weekday <= 6:
            raise ScheduleError(f"report weekday {self.weekday} is not 0 (Monday) to 6")
        if self.max_catch_up < 1:
            raise ScheduleError("max_catch_up must be at least 1")
        if self.at.tzinfo is not None:
            raise ScheduleError("the due time of day is local to the report time zone")


@dataclass(frozen=True, slots=True)
class Period:
    """One report's range, [start, end) in UTC, and when it is due."""

    name: str
    start: datetime
    end: datetime
    due: datetime
    first_day: date  # local date of the period's first day
    last_day: date

    @property
    def label(self) -> str:
        if self.first_day == self.last_day:
            return self.first_day.isoformat()
        return f"{self.first_day.isoformat()} to {self.last_day.isoformat()}"


def parse_at(value: str) -> time:
    """'06:00' -> time(6, 0)."""
    match = _AT_PATTERN.match(value.strip())
    if match is None:
        raise ScheduleError(f"report time {value!r} is not HH:MM (00:00-23:59)")
    return time(int(match.group(1)), int(match.group(2)))


def parse_weekday(value: str) -> int:
    """'mon' (or 'monday', any case) -> 0."""
    key = value.strip().lower()[:3]
    if key not in WEEKDAYS or not value.strip().lower().startswith(key):
        raise ScheduleError(f"report weekday {value!r} is not one of {', '.join(WEEKDAYS)}")
    return WEEKDAYS.index(key)


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ScheduleError(f"report time zone {name!r} is not an IANA zone name") from error


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """``day`` at ``at`` wall-clock time in ``tz``, as UTC (fold=0 in a gap or an overlap)."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def period_ending(schedule: Schedule, tz: ZoneInfo, end_day: date) -> Period:
    """The period whose last local day is the day before ``end_day``."""
    length = 1 if schedule.period == DAILY else 7
    first = end_day - timedelta(days=length)
    return Period(
        name=schedule.period,
        start=local_instant(first, time(0), tz),
        end=local_instant(end_day, time(0), tz),
        due=local_instant(end_day, schedule.at, tz),
        first_day=first,
        last_day=end_day - timedelta(days=1),
    )


def latest_due(schedule: Schedule, tz: ZoneInfo, now: datetime) -> Period:
    """The newest period already due at ``now``."""
    if now.tzinfo is None:
        raise ScheduleError("now must be timezone-aware")
    end_day = now.astimezone(tz).date()
    step = 1
    if schedule.period == WEEKLY:
        end_day -= timedelta(days=(end_day.weekday() - schedule.weekday) % 7)
        step = 7
    period = period_ending(schedule, tz, end_day)
    if period.due > now:
        period = period_ending(schedule, tz, end_day - timedelta(days=step))
    return period


def due_periods(
    schedule: Schedule, tz: ZoneInfo, last_done: datetime | None, now: datetime
) -> list[Period]:
    """Periods due by ``now`` that start at or after ``last_done``, oldest first.

    ``last_done`` is the end of the newest period already made (None: none
    yet, and only the newest due period is made, not a backlog). At most
    ``schedule.max_catch_up`` periods, the newest ones.
    """
    newest = latest_due(schedule, tz, now)
    if last_done is None:
        return [newest]
    found: list[Period] = []
    period = newest
    # Walked back by local date (period_ending), never by a UTC step.
    while period.start >= last_done and len(found) < schedule.max_catch_up:
        found.append(period)
        period = period_ending(schedule, tz, period.first_day)
    return found[::-1]
