"""Model objects with every kind of value (gaps, nulls, labels) for the encoder tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collector.abc import Dealer
from collector.alerting.manage import Episode
from collector.alerting.rules import Rule, rule_from_seed_request
from reporter.model import (
    Analytics,
    AnalyticsData,
    Direction,
    Effort,
    EndpointAnalytics,
    Impact,
    Point,
    Recommendation,
    ReportFormat,
    ReportRecord,
    ResourceUsage,
    Series,
    Summary,
    TimeRange,
    Trend,
)

START = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
RANGE = TimeRange(START, START + timedelta(hours=1))
STEP = timedelta(minutes=1)


def series(name: str, *values: float | None) -> Series:
    points = tuple(Point(START + i * STEP, v) for i, v in enumerate(values))
    return Series(name, "ms", STEP, points)


def analytics() -> Analytics:
    endpoint = EndpointAnalytics(
        route="/api/inventory",
        method="GET",
        requests=10,
        errors=1,
        client_errors=2,
        error_rate_percent=10.0,
        success_rate_percent=90.0,
        calls_per_hour=10.0,
        avg_ms=12.5,
        peak_ms=40.0,
        p50_ms=10.0,
        p95_ms=None,
        p99_ms=float("nan"),
        last_error="HTTP 500",
        last_error_at=START,
        response_time=series("rt", 1.0, None),
        error_rate=series("er", 0.0, None),
        throughput=series("tp", 5.0, 5.0),
    )
    cpu = ResourceUsage("cpu.percent", "percent", {}, 10.0, 20.0, None, series("cpu", 10.0, None))
    disk = ResourceUsage(
        "disk.percent", "percent", {"mount": "/"}, 50.0, 51.0, 51.0, series("d", 50.0)
    )
    data = AnalyticsData(
        dealer_id=None,
        range=RANGE,
        step=STEP,
        summary=Summary(10, 1, 10.0, 12.5, 40.0, 10.0, None, None, 0.5, None),
        endpoints=(endpoint,),
        response_time=series("rt", 1.0, None, 3.0),
        response_time_p95=series("p95"),
        error_rate=series("er", None),
        throughput=series("tp", 1.0),
        resources=(cpu, disk),
    )
    trend = Trend("response_time", Direction.DEGRADING, "mann-kendall", 60, 0.01, 2.0, 15.0)
    recommendation = Recommendation(
        type="cache_endpoint",
        title="Cache GET /api/inventory",
        description="It is slow and called often.",
        impact=Impact.HIGH,
        effort=Effort.LOW,
        priority=1,
        dealer_id="acme-motors",
        range=RANGE,
        evidence={"p95_ms": 840.0, "route": "/api/inventory", "bad": float("inf")},
        endpoint="GET /api/inventory",
    )
    return Analytics(data, (trend,), (recommendation,))


def rule() -> Rule:
    found = rule_from_seed_request("cpu", 90.0, "acme-motors")
    object.__setattr__(found, "id", 7)
    return found


def episode() -> Episode:
    return Episode(
        id=3,
        dealer_id="acme-motors",
        agent_id=None,
        labels=(("mount", "/"),),
        rule_id=None,
        type="disk",
        severity="critical",
        state="firing",
        message="disk 95%",
        value=95.0,
        threshold=None,
        started_at=START,
        resolved_at=None,
        acknowledged_by=None,
        acknowledged_at=None,
    )


def report() -> ReportRecord:
    return ReportRecord(1, None, "daily", RANGE, ReportFormat.HTML, START, "Daily report")


def dealer() -> Dealer:
    return Dealer("acme-motors", "Acme Motors", START)
