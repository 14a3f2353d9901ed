"""Endpoint rules: slow busy endpoints worth caching, endpoints with rising error rates."""

from __future__ import annotations

import math

from reporter.analysis import text
from reporter.analysis.rules.base import Finding
from reporter.analysis.thresholds import AnalysisThresholds
from reporter.analysis.trend import Measured, fit
from reporter.model import AnalyticsData, Effort, EndpointAnalytics, Impact

# Responses of these methods can be cached; "" is an endpoint whose method
# the source did not know (a probe's URL check is a GET).
CACHEABLE_METHODS = frozenset({"GET", "HEAD", ""})
# A cache candidate this large a share of all calls has a high impact.
_BIG_SHARE_PERCENT = 25.0
# Error rates this many times the threshold are critical (as in collector.health).
_CRITICAL_ERROR_FACTOR = 10.0


def endpoint_key(endpoint: EndpointAnalytics) -> str:
    return f"{endpoint.method} {endpoint.route}".strip()


def cache_candidates(data: AnalyticsData, limits: AnalysisThresholds) -> list[Finding]:
    """GET endpoints among the busiest whose p95 is above the response-time threshold."""
    busiest = sorted(data.endpoints, key=lambda e: (-e.calls_per_hour, e.route, e.method))
    top = busiest[: max(1, math.ceil(len(busiest) * limits.cache_top_share))]
    total_calls = sum(e.calls_per_hour for e in data.endpoints)
    findings = []
    for rank, endpoint in enumerate(top, start=1):
        p95 = endpoint.p95_ms
        if (
            endpoint.method.upper() not in CACHEABLE_METHODS
            or p95 is None
            or p95 <= limits.response_time_ms
            or endpoint.calls_per_hour < limits.cache_min_calls_per_hour
        ):
            continue
        share = endpoint.calls_per_hour / total_calls * 100
        findings.append(_cache_finding(endpoint, p95, share, rank, limits))
    return findings


def _cache_finding(
    endpoint: EndpointAnalytics, p95: float, share: float, rank: int, limits: AnalysisThresholds
) -> Finding:
    key = endpoint_key(endpoint)
    big = p95 >= 2 * limits.response_time_ms or share >= _BIG_SHARE_PERCENT
    average = f" (average {text.ms(endpoint.avg_ms)})" if endpoint.avg_ms is not None else ""
    evidence: dict[str, float | str] = {
        "p95_ms": p95,
        "calls_per_hour": endpoint.calls_per_hour,
        "share_of_calls_percent": share,
        "busiest_rank": float(rank),
        "threshold_ms": limits.response_time_ms,
    }
    if endpoint.avg_ms is not None:
        evidence["avg_ms"] = endpoint.avg_ms
    return Finding(
        type="cache_endpoint",
        title=f"Cache responses of {key}",
        description=(
            f"{key} is the #{rank} busiest endpoint with {text.number(endpoint.calls_per_hour)}"
            f" calls/hour ({text.percent(share)} of all calls), and its p95 response time is"
            f" {text.ms(p95)}{average}, above the {text.ms(limits.response_time_ms)}"
            " threshold. Caching its responses (HTTP cache headers or an application cache)"
            " would cut both the latency and the load."
        ),
        impact=Impact.HIGH if big else Impact.MEDIUM,
        effort=Effort.MEDIUM,
        evidence=evidence,
        endpoint=key,
        urgency=p95 * endpoint.calls_per_hour,
    )


def rising_errors(data: AnalyticsData, limits: AnalysisThresholds) -> list[Finding]:
    """Endpoints whose error-rate series has a significant, sizeable upward trend."""
    findings = []
    for endpoint in data.endpoints:
        measured = Measured.of(endpoint.error_rate, data.range.start)
        result = fit(
            measured, limits, min_change=limits.error_rate_min_change, significant_only=True
        )
        if result is None or not (result.significant and result.practical):
            continue
        start = max(0.0, result.line.at(measured.hours[0]))
        end = result.line.at(measured.hours[-1])
        if result.line.slope <= 0 or end < limits.error_rate_percent:
            continue
        key = endpoint_key(endpoint)
        last_error = (
            f' The latest error was "{endpoint.last_error}".' if endpoint.last_error else ""
        )
        critical = end >= limits.error_rate_percent * _CRITICAL_ERROR_FACTOR
        findings.append(
            Finding(
                type="rising_error_rate",
                title=f"Rising error rate on {key}",
                description=(
                    f"The error rate of {key} rose from about {text.percent(start)} to"
                    f" {text.percent(end)} between {text.moment(measured.points[0].time)} and"
                    f" {text.moment(measured.points[-1].time)}"
                    f" (Mann-Kendall p = {result.test.p_value:.2g} over {len(measured)} points;"
                    f" {endpoint.errors:,} errors in {endpoint.requests:,} requests), above the"
                    f" {text.percent(limits.error_rate_percent)} threshold.{last_error}"
                    " Check what changed for this endpoint and its dependencies."
                ),
                impact=Impact.HIGH if critical else Impact.MEDIUM,
                effort=Effort.MEDIUM,
                evidence={
                    "error_rate_start_percent": start,
                    "error_rate_end_percent": end,
                    "slope_percent_points_per_hour": result.line.slope,
                    "p_value": result.test.p_value,
                    "points": float(len(measured)),
                    "errors": float(endpoint.errors),
                    "requests": float(endpoint.requests),
                    "since": text.iso(measured.points[0].time),
                },
                endpoint=key,
                urgency=end,
            )
        )
    return findings
