"""Model types -> the API's JSON (the shapes agreed in json_shapes.md); nothing else builds it.

Times are ISO 8601 UTC strings ending in ``Z``; an unknown number is ``null``,
never 0 (NaN and infinities, which JSON cannot carry, become ``null`` too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.abc import Dealer
from collector.alerting.manage import Episode
from collector.alerting.rules import Rule
from collector.health import DealerHealth, EndpointHealth, worst
from reporter.model import (
    Analytics,
    EndpointAnalytics,
    Realtime,
    Recommendation,
    ReportRecord,
    ResourceUsage,
    Series,
    Summary,
    TimeRange,
    Trend,
)

UNKNOWN = "unknown"
# The dashboard's resource charts, by the stored metric they draw.
RESOURCE_SERIES = {
    "cpu": "cpu.percent",
    "memory": "memory.percent",
    "disk": "disk.percent",
    "network": "network.percent",
}
TREND_METRICS = ("responseTime", "errorRate", "throughput")
_TREND_KEYS = {"response_time": "responseTime", "error_rate": "errorRate"}

JsonDict = dict[str, Any]


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    spec = "seconds" if utc.microsecond == 0 else "milliseconds"
    return utc.isoformat(timespec=spec).replace("+00:00", "Z")


def num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _text_or_null(value: str | None) -> str | None:
    return value or None


# ---- performance-monitoring


def realtime_json(realtime: Realtime) -> JsonDict:
    health = realtime.health
    resources = realtime.resources
    known = _has_data(health)
    resource_values = (
        resources.cpu_percent,
        resources.memory_percent,
        resources.disk_percent,
        resources.network_percent,
    )
    return {
        "dealerId": health.dealer_id,
        "timestamp": iso(realtime.as_of),
        "systemHealth": {
            "status": worst((health.status, health.resource_status)).value if known else UNKNOWN,
            "uptime": num(health.uptime_percent),
            "responseTime": num(health.avg_ms),
            "p95ResponseTime": num(health.p95_ms),
            "errorRate": num(health.error_rate_percent),
            "throughput": num(health.throughput_per_min) if known else None,
            "reasons": list(health.reasons),
        },
        "apiPerformance": [_endpoint_health_json(e) for e in health.endpoints],
        "resourceUsage": {
            "cpu": num(resources.cpu_percent),
            "memory": num(resources.memory_percent),
            "disk": num(resources.disk_percent),
            "network": num(resources.network_percent),
            "status": (
                health.resource_status.value
                if any(v is not None for v in resource_values)
                else UNKNOWN
            ),
            "asOf": iso(resources.as_of),
        },
    }


def _has_data(health: DealerHealth) -> bool:
    figures = (health.uptime_percent, health.cpu_percent, health.memory_percent)
    return health.requests > 0 or any(v is not None for v in figures)


def _endpoint_health_json(endpoint: EndpointHealth) -> JsonDict:
    return {
        "endpoint": endpoint.route,
        "method": endpoint.method,
        "source": endpoint.source,
        "avgResponseTime": num(endpoint.avg_ms),
        "p95ResponseTime": num(endpoint.p95_ms),
        "successRate": num(endpoint.success_rate_percent) if endpoint.requests else None,
        "callsPerHour": num(endpoint.calls_per_hour),
        "errorCount": endpoint.errors,
        "lastError": _text_or_null(endpoint.last_error),
        "lastErrorAt": iso(endpoint.last_error_at),
    }


# ---- performance-analytics


def time_range_json(time_range: TimeRange, step: timedelta | None = None) -> JsonDict:
    found: JsonDict = {"start": iso(time_range.start), "end": iso(time_range.end)}
    if step is not None:
        found["step"] = int(step.total_seconds())
    return found


def analytics_json(analytics: Analytics) -> JsonDict:
    data = analytics.data
    return {
        "dealerId": data.dealer_id,
        "timeRange": time_range_json(data.range, data.step),
        "summary": summary_json(data.summary),
        "trends": trends_json(analytics.trends),
        "endpoints": [endpoint_analytics_json(e) for e in data.endpoints],
        "resources": [resource_json(r) for r in data.resources],
        "series": {
            "responseTime": series_json(data.response_time),
            "responseTimeP95": series_json(data.response_time_p95),
            "errorRate": series_json(data.error_rate),
            "throughput": series_json(data.throughput),
            **{
                key: _resource_series(data.resources, name) for key, name in RESOURCE_SERIES.items()
            },
        },
        "recommendations": [recommendation_json(r) for r in analytics.recommendations],
    }


def summary_json(summary: Summary) -> JsonDict:
    return {
        "avgResponseTime": num(summary.avg_ms),
        "peakResponseTime": num(summary.peak_ms),
        "p50ResponseTime": num(summary.p50_ms),
        "p95ResponseTime": num(summary.p95_ms),
        "p99ResponseTime": num(summary.p99_ms),
        "totalRequests": summary.requests,
        "errorCount": summary.errors,
        "errorRate": num(summary.error_rate_percent),
        "throughput": num(summary.throughput_per_min),
        "uptime": num(summary.uptime_percent),
    }


def trends_json(trends: Iterable[Trend]) -> JsonDict:
    found: JsonDict = dict.fromkeys(TREND_METRICS)
    for trend in trends:
        key = _TREND_KEYS.get(trend.metric, trend.metric)
        found[key] = {
            "direction": trend.direction.value,
            "pValue": num(trend.p_value),
            "slopePerHour": num(trend.slope_per_hour),
            "changePercent": num(trend.change_percent),
            "method": trend.method,
            "n": trend.n,
        }
    return found


def endpoint_analytics_json(endpoint: EndpointAnalytics) -> JsonDict:
    return {
        "endpoint": endpoint.route,
        "method": endpoint.method,
        "requests": endpoint.requests,
        "errorCount": endpoint.errors,
        "clientErrorCount": endpoint.client_errors,
        "errorRate": num(endpoint.error_rate_percent),
        "successRate": num(endpoint.success_rate_percent),
        "callsPerHour": num(endpoint.calls_per_hour),
        "avgResponseTime": num(endpoint.avg_ms),
        "peakResponseTime": num(endpoint.peak_ms),
        "p50ResponseTime": num(endpoint.p50_ms),
        "p95ResponseTime": num(endpoint.p95_ms),
        "p99ResponseTime": num(endpoint.p99_ms),
        "lastError": _text_or_null(endpoint.last_error),
        "lastErrorAt": iso(endpoint.last_error_at),
    }


def resource_json(resource: ResourceUsage) -> JsonDict:
    return {
        "name": resource.name,
        "unit": resource.unit,
        "labels": dict(resource.labels),
        "avg": num(resource.avg),
        "peak": num(resource.peak),
        "latest": num(resource.latest),
    }


def series_json(series: Series) -> list[list[Any]]:
    return [[iso(point.time), num(point.value)] for point in series.points]


def _resource_series(resources: Iterable[ResourceUsage], name: str) -> list[list[Any]]:
    """The host-wide line of a resource: the unlabelled one, else the first."""
    matching = [r for r in resources if r.name == name]
    if not matching:
        return []
    chosen = next((r for r in matching if not r.labels), matching[0])
    return series_json(chosen.series)


def recommendation_json(recommendation: Recommendation) -> JsonDict:
    return {
        "type": recommendation.type,
        "title": recommendation.title,
        "description": recommendation.description,
        "impact": recommendation.impact.value,
        "effort": recommendation.effort.value,
        "priority": recommendation.priority,
        "dealerId": recommendation.dealer_id,
        "endpoint": recommendation.endpoint or None,
        "evidence": _evidence(recommendation.evidence),
        "timeRange": time_range_json(recommendation.range),
    }


def _evidence(evidence: Mapping[str, float | str]) -> JsonDict:
    return {k: v if isinstance(v, str) else num(v) for k, v in evidence.items()}


# ---- alerting


def rule_json(rule: Rule) -> JsonDict:
    condition, levels = rule.condition, rule.condition.thresholds
    return {
        "id": rule.id,
        "name": rule.name,
        "alertType": rule.alert_type,
        "kind": rule.kind.value,
        "metric": condition.metric,
        "aggregation": condition.aggregation.value,
        "windowSeconds": condition.window_s,
        "comparator": condition.comparator.value,
        "warningThreshold": num(levels.warning),
        "criticalThreshold": num(levels.critical),
        "warningRecovery": num(levels.warning_recovery),
        "criticalRecovery": num(levels.critical_recovery),
        "forSeconds": rule.for_s,
        "dealerId": rule.dealer_id,
        "labelMatchers": dict(rule.label_matchers),
        "channels": list(rule.channels),
        "enabled": rule.enabled,
        "builtin": rule.builtin,
    }


def alert_json(episode: Episode) -> JsonDict:
    return {
        "id": episode.id,
        "dealerId": episode.dealer_id,
        "agentId": episode.agent_id,
        "ruleId": episode.rule_id,
        "type": episode.type,
        "severity": episode.severity,
        "message": episode.message,
        "state": episode.state,
        "labels": dict(episode.labels),
        "value": num(episode.value),
        "threshold": num(episode.threshold),
        "startedAt": iso(episode.started_at),
        "acknowledgedBy": episode.acknowledged_by,
        "acknowledgedAt": iso(episode.acknowledged_at),
        "resolvedAt": iso(episode.resolved_at),
    }


# ---- reports and dealers


def report_json(record: ReportRecord) -> JsonDict:
    return {
        "id": record.report_id,
        "dealerId": record.dealer_id,
        "period": record.period,
        "start": iso(record.range.start),
        "end": iso(record.range.end),
        "createdAt": iso(record.created_at),
        "title": record.title,
        "format": record.format.value,
    }


def dealer_json(dealer: Dealer) -> JsonDict:
    return {"dealerId": dealer.dealer_id, "name": dealer.name}
