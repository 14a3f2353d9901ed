"""OTLP metrics -> EndpointStats: the only module here that touches OTLP protobufs.

Used: ``http.server.request.duration`` histograms (unit ``s`` or ``ms``) with
DELTA temporality, attributes ``http.route``, ``http.request.method`` and
``http.response.status_code``. CUMULATIVE ones are turned into DELTA ones
before this, by :mod:`collector.otlp.cumulative`, which keeps state; what
reaches this pure function still CUMULATIVE (no tracker in front) or with no
temporality is rejected. Other metrics are not ours and are ignored (not
rejected). Points that cannot be used are counted as rejected, with the
reason: a missing status code, negative buckets, bucket counts that do not add
up.

Latency sketches: every OTLP bucket's count goes into the project's 1 %
DDSketch at the bucket's representative value ``2*lo*hi/(lo+hi)``, which is
within ``(hi-lo)/(hi+lo)`` of any value in the bucket. So:

- exponential histograms (scale s, base ``b = 2**(2**-s)``): quantiles are
  within ``(b-1)/(b+1)`` (the OTLP bucket) compounded with 1 % (the sketch),
  e.g. 2.2 % + 1 % at the SDK's usual scale 4 for latencies. An exact
  bucket-to-bucket mapping would need a sketch with gamma = b, which would no
  longer merge with the agents' 1 % sketches; mergeability wins.
- explicit-bucket histograms: counts, sum, min and max are exact; quantiles
  are only as good as the bounds: within ``(hi-lo)/(hi+lo)`` of the bucket
  holding them (plus 1 %), clamped to [min, max]. The open first and last
  buckets are represented by min and max when the point has them, else by
  their finite bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from dealerpulse.model import EndpointStat
from dealerpulse.sketch import DDSketch, SketchError

METRIC_NAME = "http.server.request.duration"
SOURCE = "otlp"
# The agent's aggregator names unrouted requests the same way.
UNMATCHED_ROUTE = "__unmatched__"
OTHER_METHOD = "OTHER"
_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
_UNIT_MS = {"s": 1000.0, "ms": 1.0}


@dataclass(frozen=True, slots=True)
class ResourceStats:
    """What one OTLP resource (one app instance) sent."""

    instance: str
    service: str
    endpoints: tuple[EndpointStat, ...]
    # Data points these endpoints were made of (what is rejected if they cannot be stored).
    points: int


@dataclass(slots=True)
class Converted:
    resources: list[ResourceStats] = field(default_factory=list)
    rejected_points: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, count: int, reason: str) -> None:
        self.rejected_points += count
        if reason not in self.reasons and len(self.reasons) < 5:
            self.reasons.append(reason)


class PointError(ValueError):
    """One data point that cannot be used; the message says why."""


def convert(request: ExportMetricsServiceRequest) -> Converted:
    result = Converted()
    for resource_metrics in request.resource_metrics:
        attributes = _attributes(resource_metrics.resource.attributes)
        service = str(attributes.get("service.name", "unknown_service"))
        instance = str(attributes.get("service.instance.id", "")) or service
        series: dict[tuple[str, str], _Series] = {}
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                if metric.name == METRIC_NAME:
                    _convert_metric(metric, series, result)
        if series:
            endpoints = tuple(
                s.stat(route, method) for (route, method), s in sorted(series.items())
            )
            points = sum(s.points for s in series.values())
            result.resources.append(ResourceStats(instance, service, endpoints, points))
    return result


def _convert_metric(
    metric: metrics_pb2.Metric, series: dict[tuple[str, str], _Series], result: Converted
) -> None:
    kind = metric.WhichOneof("data")
    scale = _UNIT_MS.get(metric.unit)
    points: Iterable[metrics_pb2.HistogramDataPoint | metrics_pb2.ExponentialHistogramDataPoint]
    if kind == "histogram":
        points, temporality = metric.histogram.data_points, metric.histogram.aggregation_temporality
    elif kind == "exponential_histogram":
        data = metric.exponential_histogram
        points, temporality = data.data_points, data.aggregation_temporality
    else:
        count = len(getattr(metric, kind).data_points) if kind else 0
        result.reject(count, f"{METRIC_NAME} must be a histogram, got {kind}")
        return
    points = list(points)
    if scale is None:
        result.reject(len(points), f"{METRIC_NAME} unit must be 's' or 'ms', got {metric.unit!r}")
        return
    if temporality != _DELTA:
        result.reject(
            len(points),
            "only DELTA (or CUMULATIVE through the collector) temporality is accepted",
        )
        return
    for point in points:
        try:
            _add_point(point, scale, series)
        except (PointError, SketchError) as exc:
            result.reject(1, str(exc))


def _add_point(
    point: metrics_pb2.HistogramDataPoint | metrics_pb2.ExponentialHistogramDataPoint,
    to_ms: float,
    series: dict[tuple[str, str], _Series],
) -> None:
    attributes = _attributes(point.attributes)
    status = attributes.get("http.response.status_code")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise PointError(f"http.response.status_code missing or invalid: {status!r}")
    route = str(attributes.get("http.route") or UNMATCHED_ROUTE)[:500]
    method = str(attributes.get("http.request.method") or OTHER_METHOD).upper()
    method = OTHER_METHOD if method == "_OTHER" or not method.isalpha() else method[:16]
    if point.count == 0:
        return
    if isinstance(point, metrics_pb2.ExponentialHistogramDataPoint):
        sketch = _exponential_sketch(point, to_ms)
    else:
        sketch = _explicit_sketch(point, to_ms)
    if sketch.count != point.count:
        raise PointError(f"bucket counts add up to {sketch.count}, count is {point.count}")
    failed = bool(attributes.get("error.type")) or status >= 500
    one = series.setdefault((route, method), _Series())
    one.add(point, sketch, status, failed, str(attributes.get("error.type", "")), to_ms)


def _exponential_sketch(point: metrics_pb2.ExponentialHistogramDataPoint, to_ms: float) -> DDSketch:
    if any(point.negative.bucket_counts):
        raise PointError("negative durations in an exponential histogram")
    base = 2.0 ** (2.0**-point.scale)
    sketch = DDSketch()
    if point.zero_count:
        sketch.add(0.0, point.zero_count)
    for position, count in enumerate(point.positive.bucket_counts):
        if count:
            index = point.positive.offset + position
            low, high = base**index, base ** (index + 1)
            sketch.add(2 * low * high / (low + high) * to_ms, count)
    return _with_stats(sketch, point, to_ms)


def _explicit_sketch(point: metrics_pb2.HistogramDataPoint, to_ms: float) -> DDSketch:
    bounds = list(point.explicit_bounds)
    counts = list(point.bucket_counts)
    if len(counts) != len(bounds) + 1 or bounds != sorted(bounds):
        raise PointError("explicit histogram needs len(bounds)+1 bucket counts, bounds ascending")
    low_end = point.min if point.HasField("min") else (bounds[0] if bounds else 0.0)
    high_end = point.max if point.HasField("max") else (bounds[-1] if bounds else low_end)
    edges = [max(low_end, 0.0), *bounds, high_end]
    sketch = DDSketch()
    for position, count in enumerate(counts):
        if count:
            low, high = max(edges[position], 0.0), max(edges[position + 1], 0.0)
            middle = 2 * low * high / (low + high) if low > 0 else high / 2
            sketch.add(middle * to_ms, count)
    return _with_stats(sketch, point, to_ms)


def _with_stats(
    sketch: DDSketch,
    point: metrics_pb2.HistogramDataPoint | metrics_pb2.ExponentialHistogramDataPoint,
    to_ms: float,
) -> DDSketch:
    """The sketch with the point's exact sum/min/max where it has them."""
    model = sketch.to_model()
    total = point.sum * to_ms if point.HasField("sum") else sketch.sum
    low = point.min * to_ms if point.HasField("min") else sketch.min
    high = point.max * to_ms if point.HasField("max") else max(sketch.max, low)
    if not point.HasField("min"):
        # A delta made from cumulative points may know its max but not its min:
        # the lowest bucket's value must not exceed the max.
        low = min(low, high)
    if not all(math.isfinite(v) and v >= 0 for v in (total, low, high)) or low > high:
        raise PointError("sum/min/max must be finite, non-negative, min <= max")
    return DDSketch.from_model(model, sum_ms=total, min_ms=low, max_ms=high)


@dataclass(slots=True)
class _Series:
    sketch: DDSketch | None = None
    start_ns: int = 0
    end_ns: int = 0
    errors: int = 0
    client_errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    last_error: str = ""
    last_error_ns: int = 0
    points: int = 0

    def add(
        self,
        point: metrics_pb2.HistogramDataPoint | metrics_pb2.ExponentialHistogramDataPoint,
        sketch: DDSketch,
        status: int,
        failed: bool,
        error_type: str,
        to_ms: float,
    ) -> None:
        if self.sketch is None:
            self.sketch, self.start_ns = sketch, point.start_time_unix_nano
        else:
            self.sketch.merge(sketch)
        self.start_ns = min(self.start_ns, point.start_time_unix_nano)
        self.end_ns = max(self.end_ns, point.time_unix_nano)
        self.points += 1
        self.statuses[status] = self.statuses.get(status, 0) + point.count
        if failed:
            self.errors += point.count
            if point.time_unix_nano >= self.last_error_ns:
                self.last_error_ns = point.time_unix_nano
                self.last_error = error_type or f"HTTP {status}"
        elif 400 <= status < 500:
            self.client_errors += point.count

    def stat(self, route: str, method: str) -> EndpointStat:
        sketch = self.sketch or DDSketch()
        return EndpointStat(
            route=route,
            method=method,
            start_ms=self.start_ns // 1_000_000,
            end_ms=self.end_ns // 1_000_000,
            count=sketch.count,
            errors=self.errors,
            client_errors=self.client_errors,
            duration_sum_ms=sketch.sum,
            duration_min_ms=sketch.min,
            duration_max_ms=sketch.max,
            status_counts=tuple(sorted(self.statuses.items())),
            last_error=self.last_error,
            last_error_ms=self.last_error_ns // 1_000_000,
            latency=sketch.to_model(),
            source=SOURCE,
        )


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, str | int | float | bool]:
    found: dict[str, str | int | float | bool] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        if kind in ("string_value", "int_value", "double_value", "bool_value"):
            found[pair.key] = getattr(pair.value, kind)
    return found
