"""Hand-built analytics and alert episodes with known figures, for the report tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from reporter.model import (
    Analytics,
    AnalyticsData,
    Direction,
    Effort,
    EndpointAnalytics,
    Impact,
    Point,
    Recommendation,
    ResourceUsage,
    Series,
    Summary,
    TimeRange,
    Trend,
)
from reporter.reports.alerts import AlertDigest, AlertEpisode, digest
from reporter.reports.content import ReportContent, ReportOptions

START = datetime(2026, 3, 2, tzinfo=UTC)
RANGE = TimeRange(START, START + timedelta(days=1))
HOUR = timedelta(hours=1)


def series(name: str, unit: str, values: Sequence[float | None], step: timedelta = HOUR) -> Series:
    points = tuple(Point(RANGE.start + i * step, v) for i, v in enumerate(values))
    return Series(name, unit, step, points)


def endpoint(route: str, requests: int, avg_ms: float | None, errors: int = 0) -> EndpointAnalytics:
    hourly = [avg_ms] * 24
    return EndpointAnalytics(
        route=route,
        method="GET",
        requests=requests,
        errors=errors,
        client_errors=1,
        error_rate_percent=100.0 * errors / requests if requests else None,
        success_rate_percent=100.0 - 100.0 * errors / requests if requests else None,
        calls_per_hour=requests / 24,
        avg_ms=avg_ms,
        peak_ms=None if avg_ms is None else avg_ms * 3,
        p50_ms=None if avg_ms is None else avg_ms * 0.9,
        p95_ms=None if avg_ms is None else avg_ms * 2,
        p99_ms=None if avg_ms is None else avg_ms * 2.5,
        last_error="HTTP 503" if errors else "",
        last_error_at=RANGE.start + 5 * HOUR if errors else None,
        response_time=series("response_time.avg_ms", "ms", list(hourly)),
        error_rate=series("error_rate.percent", "%", [0.0] * 24),
        throughput=series("throughput.per_min", "1/min", [requests / 1440] * 24),
    )


def analytics() -> Analytics:
    response: list[float | None] = [120.0 + 5 * i for i in range(24)]
    response[7] = None  # a gap: no requests in that hour
    resources = (
        ResourceUsage(
            "cpu.percent", "%", {}, 41.5, 93.0, 40.0, series("cpu.percent", "%", [41.5] * 24)
        ),
        ResourceUsage(
            "disk.percent",
            "%",
            {"mount": "/"},
            70.25,
            71.0,
            71.0,
            series("disk.percent", "%", [70.25] * 24),
        ),
    )
    data = AnalyticsData(
        dealer_id="acme-motors",
        range=RANGE,
        step=HOUR,
        summary=Summary(
            requests=48_000,
            errors=24,
            error_rate_percent=0.05,
            avg_ms=181.25,
            peak_ms=1250.0,
            p50_ms=150.0,
            p95_ms=420.0,
            p99_ms=900.0,
            throughput_per_min=33.3,
            uptime_percent=99.95,
        ),
        endpoints=(
            endpoint("/api/leads", 30_000, 150.0, errors=20),
            endpoint("/api/inventory", 18_000, 240.0, errors=4),
            endpoint("/api/idle", 0, None),
        ),
        response_time=series("response_time.avg_ms", "ms", response),
        response_time_p95=series("response_time.p95_ms", "ms", [v and v * 2 for v in response]),
        error_rate=series("error_rate.percent", "%", [0.05] * 24),
        throughput=series("throughput.per_min", "1/min", [33.3] * 24),
        resources=resources,
    )
    trends = (
        Trend("response_time", Direction.DEGRADING, "mann-kendall", 23, 0.001, 5.0, 95.8),
        Trend("error_rate", Direction.STABLE, "mann-kendall", 24, 0.8, 0.0, 0.0),
    )
    recommendations = (
        Recommendation(
            type="cache_endpoint",
            title="Cache GET /api/inventory",
            description="p95 of 480 ms over 18,000 calls <script>alert(1)</script>",
            impact=Impact.HIGH,
            effort=Effort.LOW,
            priority=1,
            dealer_id="acme-motors",
            range=RANGE,
            evidence={"p95_ms": 480.0, "requests": 18_000.0},
            endpoint="GET /api/inventory",
        ),
    )
    return Analytics(data, trends, recommendations)


def episodes() -> list[AlertEpisode]:
    at = RANGE.start + HOUR
    return [
        AlertEpisode(
            "builtin:response_time",
            "warning",
            at,
            at + timedelta(minutes=4),
            at + timedelta(minutes=30),
        ),
        AlertEpisode("builtin:response_time", "critical", at, None, at + timedelta(minutes=10)),
        AlertEpisode("builtin:cpu", "warning", at, at + timedelta(minutes=2), None),
    ]


def alert_digest() -> AlertDigest:
    return digest(episodes())


def content(report_id: int = 7, options: ReportOptions | None = None) -> ReportContent:
    return ReportContent(
        report_id=report_id,
        title="Daily performance report: acme-motors, 2026-03-02",
        dealer_id="acme-motors",
        period="daily",
        range=RANGE,
        generated_at=RANGE.end + 6 * HOUR,
        analytics=analytics(),
        alerts=alert_digest(),
        options=options or ReportOptions(timezone="America/New_York"),
    )
