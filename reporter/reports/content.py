"""What one report says, before any rendering: analytics, alerts, and who it is for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reporter.model import Analytics, TimeRange
from reporter.reports.alerts import AlertDigest

# The seed's ALERT_THRESHOLD_* defaults; the collector passes its settings.
DEFAULT_RESPONSE_TIME_THRESHOLD_MS = 200.0
DEFAULT_ERROR_RATE_THRESHOLD_PERCENT = 0.1


@dataclass(frozen=True, slots=True)
class ReportOptions:
    timezone: str = "UTC"  # times in the report's text and charts are shown in it
    response_time_threshold_ms: float = DEFAULT_RESPONSE_TIME_THRESHOLD_MS
    error_rate_threshold_percent: float = DEFAULT_ERROR_RATE_THRESHOLD_PERCENT
    # Endpoints in the per-endpoint table and chart, busiest first.
    max_endpoints: int = 20


@dataclass(frozen=True, slots=True)
class ReportContent:
    report_id: int
    title: str
    dealer_id: str | None
    period: str  # "daily", "weekly", "adhoc"
    range: TimeRange
    generated_at: datetime
    analytics: Analytics
    alerts: AlertDigest
    options: ReportOptions


def report_title(dealer_id: str | None, period: str, label: str) -> str:
    """'Daily performance report: acme-motors, 2026-03-08'."""
    kind = {"daily": "Daily", "weekly": "Weekly"}.get(period, "Performance")
    what = "performance report" if kind != "Performance" else "report"
    return f"{kind} {what}: {dealer_id or 'all dealers'}, {label}"
