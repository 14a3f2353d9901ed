"""The collector's report options (declared here, listed in collector/settings.py).

Light on purpose: the collector's settings import it, so it imports nothing
heavier than the schedule's parsers.
"""

from __future__ import annotations

from typing import Any

from dealerpulse.config import Option, boolean, optional_text, positive_float
from reporter.reports.schedule import parse_at, parse_timezone, parse_weekday

# Not None: resolved settings drop None values and would fall back to the default.
OFF = "off"
_OFF = ("", OFF, "none", "no")


def report_timezone(value: Any) -> str:
    name = str(value).strip()
    parse_timezone(name)  # raises ScheduleError (a ValueError) naming the zone
    return name


def report_time(value: Any) -> str:
    """'06:00'; 'off' (or empty, 'none') for no daily report."""
    if value is None or str(value).strip().lower() in _OFF:
        return OFF
    return parse_at(str(value)).strftime("%H:%M")


def report_weekday(value: Any) -> str:
    """'mon'; 'off' (or empty, 'none') for no weekly report."""
    if value is None or str(value).strip().lower() in _OFF:
        return OFF
    day = parse_weekday(str(value))
    return ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[day]


def report_addresses(value: Any) -> tuple[str, ...]:
    """'a@x.com, b@x.com' or a TOML list; empty: the alert recipients (SMTP_TO)."""
    items = value if isinstance(value, list | tuple) else str(value or "").split(",")
    addresses = tuple(str(item).strip() for item in items if str(item).strip())
    for address in addresses:
        if "@" not in address:
            raise ValueError(f"{address!r} is not an email address")
    return addresses


REPORT_OPTIONS: list[Option] = [
    Option(
        "reports_enabled",
        boolean,
        True,
        "make daily and weekly reports per dealer (stored; delivered by email/Slack)",
        env=("REPORTS_ENABLED", "DEALERPULSE_REPORTS_ENABLED"),
    ),
    Option(
        "report_timezone",
        report_timezone,
        "UTC",
        "IANA time zone of report days and due times, e.g. America/New_York",
        env=("REPORT_TIMEZONE",),
    ),
    Option(
        "report_daily_at",
        report_time,
        "06:00",
        "local time (HH:MM) the daily report of the day before goes out; off: none",
        env=("REPORT_DAILY_AT",),
    ),
    Option(
        "report_weekly_on",
        report_weekday,
        "mon",
        "weekday the weekly report of the 7 days before goes out (at report_daily_at); off: none",
        env=("REPORT_WEEKLY_ON",),
    ),
    Option(
        "report_recipients",
        report_addresses,
        (),
        "recipients of report emails, comma-separated (default: smtp_to)",
        env=("REPORT_EMAIL_TO",),
    ),
    Option(
        "report_slack",
        boolean,
        True,
        "post a report summary to the Slack channel of the alerts",
        env=("REPORT_SLACK",),
    ),
    Option(
        "reporter_public_url",
        optional_text,
        None,
        "the reporter's HTTP address as users reach it; reports link to it",
        env=("REPORTER_PUBLIC_URL",),
    ),
    Option(
        "report_check_interval_s",
        positive_float,
        600.0,
        "seconds between checks for due or undelivered reports (besides the due times)",
    ),
]
