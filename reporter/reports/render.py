"""The three renderings of a report: a JSON document, plain text, self-contained HTML.

The JSON document carries the figures the HTML shows, in the HTTP API's
analytics shape (camelCase, ISO UTC times, null for "no data"), plus the
report's own fields and the alerts of the period. The HTML embeds its
charts as base64 PNG data URIs, so the stored file needs nothing else.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from reporter.model import (
    AnalyticsData,
    EndpointAnalytics,
    Recommendation,
    ResourceUsage,
    Series,
    Trend,
)
from reporter.reports.alerts import AlertDigest, DurationStats
from reporter.reports.charts import Chart, busiest_endpoints
from reporter.reports.content import ReportContent

TEMPLATES_DIR = Path(__file__).parent / "templates"
NO_DATA = "n/a"

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def iso(moment: datetime | None) -> str | None:
    """'2026-11-26T20:00:00Z' (UTC), or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ---- JSON


def report_document(content: ReportContent) -> dict[str, Any]:
    data = content.analytics.data
    return {
        "report": {
            "id": content.report_id,
            "title": content.title,
            "dealerId": content.dealer_id,
            "period": content.period,
            "start": iso(content.range.start),
            "end": iso(content.range.end),
            "timezone": content.options.timezone,
            "generatedAt": iso(content.generated_at),
        },
        "timeRange": {
            "start": iso(data.range.start),
            "end": iso(data.range.end),
            "step": data.step.total_seconds(),
        },
        "summary": _summary(data),
        "trends": {_camel(t.metric): _trend(t) for t in content.analytics.trends},
        "endpoints": [_endpoint(e) for e in data.endpoints],
        "resources": [_resource(r) for r in data.resources],
        "series": _series(data),
        "alerts": _alerts(content.alerts),
        "recommendations": [_recommendation(r) for r in content.analytics.recommendations],
        "thresholds": {
            "responseTimeMs": content.options.response_time_threshold_ms,
            "errorRatePercent": content.options.error_rate_threshold_percent,
        },
    }


def render_json(content: ReportContent) -> str:
    # allow_nan=False: a NaN would make the document unreadable for strict parsers.
    return json.dumps(report_document(content), indent=2, allow_nan=False) + "\n"


def _summary(data: AnalyticsData) -> dict[str, Any]:
    summary = data.summary
    return {
        "avgResponseTime": summary.avg_ms,
        "peakResponseTime": summary.peak_ms,
        "p50ResponseTime": summary.p50_ms,
        "p95ResponseTime": summary.p95_ms,
        "p99ResponseTime": summary.p99_ms,
        "totalRequests": summary.requests,
        "errorCount": summary.errors,
        "errorRate": summary.error_rate_percent,
        "throughput": summary.throughput_per_min,
        "uptime": summary.uptime_percent,
    }


def _trend(trend: Trend) -> dict[str, Any]:
    return {
        "direction": trend.direction.value,
        "pValue": trend.p_value,
        "slopePerHour": trend.slope_per_hour,
        "changePercent": trend.change_percent,
        "method": trend.method,
        "n": trend.n,
    }


def _endpoint(endpoint: EndpointAnalytics) -> dict[str, Any]:
    return {
        "endpoint": endpoint.route,
        "method": endpoint.method,
        "requests": endpoint.requests,
        "errorCount": endpoint.errors,
        "clientErrorCount": endpoint.client_errors,
        "errorRate": endpoint.error_rate_percent,
        "successRate": endpoint.success_rate_percent,
        "callsPerHour": endpoint.calls_per_hour,
        "avgResponseTime": endpoint.avg_ms,
        "peakResponseTime": endpoint.peak_ms,
        "p50ResponseTime": endpoint.p50_ms,
        "p95ResponseTime": endpoint.p95_ms,
        "p99ResponseTime": endpoint.p99_ms,
        "lastError": endpoint.last_error,
        "lastErrorAt": iso(endpoint.last_error_at),
    }


def _resource(usage: ResourceUsage) -> dict[str, Any]:
    return {
        "name": usage.name,
        "unit": usage.unit,
        "labels": dict(usage.labels),
        "avg": usage.avg,
        "peak": usage.peak,
        "latest": usage.latest,
        "series": _points(usage.series),
    }


def _series(data: AnalyticsData) -> dict[str, Any]:
    return {
        "responseTime": _points(data.response_time),
        "responseTimeP95": _points(data.response_time_p95),
        "errorRate": _points(data.error_rate),
        "throughput": _points(data.throughput),
    }


def _points(series: Series) -> list[list[Any]]:
    return [[iso(p.time), p.value] for p in series.points]


def _duration(stats: DurationStats) -> dict[str, Any]:
    return {"count": stats.count, "medianSeconds": stats.median_s, "meanSeconds": stats.mean_s}


def _alerts(alerts: AlertDigest) -> dict[str, Any]:
    return {
        "total": alerts.total,
        "bySeverity": dict(alerts.by_severity),
        "unresolved": alerts.unresolved,
        "timeToAcknowledge": _duration(alerts.to_acknowledge),
        "timeToResolve": _duration(alerts.to_resolve),
        "noisiestRules": [{"rule": r.rule, "episodes": r.episodes} for r in alerts.noisiest],
    }


def _recommendation(item: Recommendation) -> dict[str, Any]:
    return {
        "type": item.type,
        "title": item.title,
        "description": item.description,
        "impact": item.impact.value,
        "effort": item.effort.value,
        "priority": item.priority,
        "endpoint": item.endpoint,
        "evidence": dict(item.evidence),
        "timeRange": {"start": iso(item.range.start), "end": iso(item.range.end)},
    }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# ---- text and HTML


def number(value: float | int | None, unit: str = "", digits: int = 1) -> str:
    """'242.5 ms'; 'n/a' for no data (never 0)."""
    if value is None:
        return NO_DATA
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.{digits}f}"
    return f"{text} {unit}".strip() if unit and unit != "%" else f"{text}{unit}"


def duration(seconds: float | None) -> str:
    """'4 min 10 s', '2 h 5 min', 'n/a'."""
    if seconds is None:
        return NO_DATA
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _local(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def _context(content: ReportContent) -> dict[str, Any]:
    tz = ZoneInfo(content.options.timezone)
    data = content.analytics.data
    endpoints: Sequence[EndpointAnalytics] = busiest_endpoints(
        data.endpoints, content.options.max_endpoints
    )
    return {
        "c": content,
        "s": data.summary,
        "a": content.alerts,
        "endpoints": endpoints,
        "more_endpoints": len(data.endpoints) - len(endpoints),
        "resources": data.resources,
        "trends": content.analytics.trends,
        "recommendations": sorted(content.analytics.recommendations, key=lambda r: r.priority),
        "start": _local(content.range.start, tz),
        "end": _local(content.range.end, tz),
        "generated": _local(content.generated_at, tz),
        "step": _step_text(data.step),
        "n": number,
        "d": duration,
        "na": NO_DATA,
    }


def _step_text(step: timedelta) -> str:
    return duration(step.total_seconds())


def render_text(content: ReportContent) -> str:
    return _environment.get_template("report.txt.j2").render(_context(content))


def render_html(content: ReportContent, charts: Sequence[Chart]) -> str:
    context = _context(content)
    context["charts"] = {chart.key: chart for chart in charts}
    context["src"] = {chart.key: data_uri(chart.png) for chart in charts}
    return _environment.get_template("report.html.j2").render(context)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def summary_lines(document: Mapping[str, Any]) -> list[str]:
    """A few lines for chat, from the JSON document (what was stored is what is said)."""
    summary, alerts = document["summary"], document["alerts"]
    return [
        f"Requests: {number(summary['totalRequests'])}, error rate "
        f"{number(summary['errorRate'], '%', 2)}, uptime {number(summary['uptime'], '%', 2)}",
        f"Response time: avg {number(summary['avgResponseTime'], 'ms')}, "
        f"peak {number(summary['peakResponseTime'], 'ms')}",
        f"Alerts: {alerts['total']} ({alerts['unresolved']} unresolved)",
        *(f"Recommendation: {item['title']}" for item in document["recommendations"][:3]),
    ]
