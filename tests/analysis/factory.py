"""Builds AnalyticsData by hand for the analysis tests (no database needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from reporter.model import (
    AnalyticsData,
    EndpointAnalytics,
    Point,
    ResourceUsage,
    Series,
    Summary,
    TimeRange,
)

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, 00:00 UTC
HOUR = timedelta(hours=1)
GIB = 1024.0**3

Values = Sequence[float | None]


def series(values: Values, step: timedelta = HOUR, name: str = "x", unit: str = "") -> Series:
    points = tuple(Point(START + i * step, v) for i, v in enumerate(values))
    return Series(name, unit, step, points)


def noise(n: int, level: float, sigma: float, seed: int = 0) -> list[float]:
    """Independent normal noise around ``level``, clipped at 0 (no negative ms or bytes)."""
    rng = np.random.default_rng(seed)
    return [max(0.0, float(v)) for v in rng.normal(level, sigma, n)]


def line(n: int, start: float, per_step: float, sigma: float = 0.0, seed: int = 0) -> list[float]:
    jitter = np.random.default_rng(seed).normal(0.0, sigma, n) if sigma else np.zeros(n)
    return [start + per_step * i + float(j) for i, j in enumerate(jitter)]


def endpoint(
    route: str = "/api/inventory",
    method: str = "GET",
    *,
    calls_per_hour: float = 100.0,
    p95_ms: float | None = 50.0,
    avg_ms: float | None = 40.0,
    response_time: Values = (),
    error_rate: Values = (),
    requests: int = 2400,
    errors: int = 0,
    last_error: str = "",
    step: timedelta = HOUR,
) -> EndpointAnalytics:
    return EndpointAnalytics(
        route=route,
        method=method,
        requests=requests,
        errors=errors,
        client_errors=0,
        error_rate_percent=errors / requests * 100 if requests else None,
        success_rate_percent=100 - errors / requests * 100 if requests else None,
        calls_per_hour=calls_per_hour,
        avg_ms=avg_ms,
        peak_ms=p95_ms,
        p50_ms=avg_ms,
        p95_ms=p95_ms,
        p99_ms=p95_ms,
        last_error=last_error,
        last_error_at=None,
        response_time=series(response_time, step, "response_time.avg_ms", "ms"),
        error_rate=series(error_rate, step, "error_rate.percent", "percent"),
        throughput=series([], step, "throughput.per_min", "per_min"),
    )


def resource(
    name: str,
    values: Values,
    labels: Mapping[str, str] | None = None,
    unit: str = "percent",
    step: timedelta = HOUR,
) -> ResourceUsage:
    measured = [v for v in values if v is not None]
    return ResourceUsage(
        name=name,
        unit=unit,
        labels=dict(labels or {}),
        avg=sum(measured) / len(measured) if measured else None,
        peak=max(measured) if measured else None,
        latest=measured[-1] if measured else None,
        series=series(values, step, name, unit),
    )


def analytics(
    *,
    n: int = 48,
    step: timedelta = HOUR,
    response_time: Values | None = None,
    error_rate: Values | None = None,
    throughput: Values | None = None,
    endpoints: Sequence[EndpointAnalytics] = (),
    resources: Sequence[ResourceUsage] = (),
    host: Mapping[str, tuple[ResourceUsage, ...]] | None = None,
) -> AnalyticsData:
    """A dealer's data over ``n`` steps; series default to flat, healthy noise."""
    rt = response_time if response_time is not None else noise(n, 80, 5, seed=1)
    er = error_rate if error_rate is not None else noise(n, 0.02, 0.005, seed=2)
    tp = throughput if throughput is not None else noise(n, 30, 2, seed=3)
    return AnalyticsData(
        dealer_id="sunrise",
        range=TimeRange(START, START + n * step),
        step=step,
        summary=Summary(
            requests=10_000,
            errors=2,
            error_rate_percent=0.02,
            avg_ms=80.0,
            peak_ms=300.0,
            p50_ms=70.0,
            p95_ms=150.0,
            p99_ms=200.0,
            throughput_per_min=30.0,
            uptime_percent=100.0,
        ),
        endpoints=tuple(endpoints),
        response_time=series(rt, step, "response_time.avg_ms", "ms"),
        response_time_p95=series(rt, step, "response_time.p95_ms", "ms"),
        error_rate=series(er, step, "error_rate.percent", "percent"),
        throughput=series(tp, step, "throughput.per_min", "per_min"),
        resources=tuple(resources),
        host=dict(host or {}),
    )
