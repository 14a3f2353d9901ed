"""Stored batches -> one OTLP ExportMetricsServiceRequest: the export side's protobuf edge.

Mapping (documented for whoever reads the metrics at Datadog or New Relic):

Resource (one per agent; an agent's batches in one request share it):
  ``service.name`` = ``dealerpulse-agent``, ``dealer.id``, ``agent.id``,
  ``host.name`` (the agent's hostname), ``service.version`` (the agent's version;
  ``otlp`` for apps that reported over OTLP themselves).
Scope: ``dealerpulse.collector``.

Samples -> Gauge, one metric per (name, unit), the sample's name unchanged
  (``cpu.percent``), its labels as attributes, ``as_double`` values. Units in
  UCUM as OTLP wants them: percent -> ``%``, bytes -> ``By``,
  bytes_per_second -> ``By/s``, seconds -> ``s``, ms -> ``ms``,
  ops_per_second -> ``{operation}/s``, count -> ``{count}``; others unchanged.

Endpoint stats (one per route, method and interval), attributes ``http.route``
and ``http.request.method``, start/end time the stat's interval, DELTA:
  - ``http.server.request.duration``: Histogram, unit ``s``, the OpenTelemetry
    HTTP semantic conventions' bucket bounds. count, sum, min and max are
    exact; bucket counts come from the latency sketch (each sketch bucket's
    value is within 1 % of its values, so only requests within 1 % of a bound
    can land one bucket off). Without a sketch: one bucket holding all.
    No ``http.response.status_code`` attribute: the sketch is not split by
    status; the status breakdown is the next metric.
  - ``http.server.request.count`` (``{request}``): monotonic Sum, one point per
    status code with ``http.response.status_code``; without status counts one
    point with the total.
  - ``http.server.request.errors`` (``{request}``): monotonic Sum of failed
    requests (5xx or an exception).

Gaps and agent counters are DealerPulse bookkeeping and are not exported.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from dealerpulse.model import EndpointStat, LatencySketch, MetricBatch, Sample
from dealerpulse.sketch import DDSketch

SERVICE_NAME = "dealerpulse-agent"
SCOPE_NAME = "dealerpulse.collector"
DURATION_METRIC = "http.server.request.duration"
COUNT_METRIC = "http.server.request.count"
ERRORS_METRIC = "http.server.request.errors"
# The OpenTelemetry HTTP semantic conventions' advice for request durations, in seconds.
DURATION_BOUNDS_S = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
UNITS = {
    "percent": "%",
    "bytes": "By",
    "bytes_per_second": "By/s",
    "seconds": "s",
    "ms": "ms",
    "ops_per_second": "{operation}/s",
    "count": "{count}",
}
_Metrics = RepeatedCompositeFieldContainer[metrics_pb2.Metric]
_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
_NS_PER_MS = 1_000_000


def points_of(batch: MetricBatch) -> int:
    """How many OTLP data points a batch becomes."""
    per_endpoint = sum(2 + max(1, len(stat.status_counts)) for stat in batch.endpoints)
    return len(batch.samples) + per_endpoint


def encode_request(batches: Sequence[MetricBatch]) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    by_agent: dict[tuple[str, str, str, str], list[MetricBatch]] = {}
    for batch in batches:
        key = (batch.dealer_id, batch.agent_id, batch.hostname, batch.agent_version)
        by_agent.setdefault(key, []).append(batch)
    for (dealer_id, agent_id, hostname, version), own in by_agent.items():
        resource_metrics = request.resource_metrics.add()
        resource_metrics.resource.CopyFrom(_resource(dealer_id, agent_id, hostname, version))
        scope_metrics = resource_metrics.scope_metrics.add()
        scope_metrics.scope.CopyFrom(InstrumentationScope(name=SCOPE_NAME))
        metrics = scope_metrics.metrics
        _add_gauges(metrics, (sample for batch in own for sample in batch.samples))
        _add_endpoints(metrics, [stat for batch in own for stat in batch.endpoints])
    return request


def _resource(dealer_id: str, agent_id: str, hostname: str, version: str) -> Resource:
    return Resource(
        attributes=_attributes(
            (
                ("service.name", SERVICE_NAME),
                ("service.version", version),
                ("dealer.id", dealer_id),
                ("agent.id", agent_id),
                ("host.name", hostname),
            )
        )
    )


def _attributes(pairs: Iterable[tuple[str, str]]) -> list[KeyValue]:
    return [KeyValue(key=key, value=AnyValue(string_value=value)) for key, value in pairs]


def _add_gauges(metrics: _Metrics, samples: Iterable[Sample]) -> None:
    by_series: dict[tuple[str, str], metrics_pb2.Metric] = {}
    # The same labels come back in every batch of an agent: their encoded form
    # is made once and merged (in C), twice as fast as building the messages.
    encoded_labels: dict[tuple[tuple[str, str], ...], bytes] = {}
    for sample in samples:
        metric = by_series.get((sample.name, sample.unit))
        if metric is None:
            metric = metrics.add()
            metric.name = sample.name
            metric.unit = UNITS.get(sample.unit, sample.unit)
            by_series[(sample.name, sample.unit)] = metric
        labels = encoded_labels.get(sample.labels)
        if labels is None:
            only_labels = metrics_pb2.NumberDataPoint(attributes=_attributes(sample.labels))
            labels = encoded_labels[sample.labels] = only_labels.SerializeToString()
        point = metric.gauge.data_points.add()
        point.MergeFromString(labels)
        point.time_unix_nano = sample.time_ms * _NS_PER_MS
        point.as_double = sample.value


def _add_endpoints(metrics: _Metrics, stats: list[EndpointStat]) -> None:
    if not stats:
        return
    duration = _new_metric(metrics, DURATION_METRIC, "s")
    duration.histogram.aggregation_temporality = _DELTA
    count = _new_metric(metrics, COUNT_METRIC, "{request}")
    count.sum.aggregation_temporality = _DELTA
    count.sum.is_monotonic = True
    errors = _new_metric(metrics, ERRORS_METRIC, "{request}")
    errors.sum.aggregation_temporality = _DELTA
    errors.sum.is_monotonic = True
    for stat in stats:
        attributes = _attributes((("http.route", stat.route), ("http.request.method", stat.method)))
        _add_histogram_point(duration.histogram.data_points.add(), stat, attributes)
        for status, requests in stat.status_counts or ((0, stat.count),):
            point = _sum_point(count.sum.data_points.add(), stat, attributes, requests)
            if status:
                point.attributes.add(
                    key="http.response.status_code", value=AnyValue(int_value=status)
                )
        _sum_point(errors.sum.data_points.add(), stat, attributes, stat.errors)


def _new_metric(metrics: _Metrics, name: str, unit: str) -> metrics_pb2.Metric:
    metric: metrics_pb2.Metric = metrics.add()
    metric.name = name
    metric.unit = unit
    return metric


def _sum_point(
    point: metrics_pb2.NumberDataPoint, stat: EndpointStat, attributes: list[KeyValue], value: int
) -> metrics_pb2.NumberDataPoint:
    point.start_time_unix_nano = stat.start_ms * _NS_PER_MS
    point.time_unix_nano = stat.end_ms * _NS_PER_MS
    point.as_int = value
    point.attributes.extend(attributes)
    return point


def _add_histogram_point(
    point: metrics_pb2.HistogramDataPoint, stat: EndpointStat, attributes: list[KeyValue]
) -> None:
    point.start_time_unix_nano = stat.start_ms * _NS_PER_MS
    point.time_unix_nano = stat.end_ms * _NS_PER_MS
    point.attributes.extend(attributes)
    point.count = stat.count
    point.sum = stat.duration_sum_ms / 1000
    if stat.count:
        point.min = stat.duration_min_ms / 1000
        point.max = stat.duration_max_ms / 1000
    buckets = bucket_counts(stat.latency, DURATION_BOUNDS_S)
    if buckets is None or sum(buckets) != stat.count:
        point.bucket_counts.append(stat.count)  # one (-inf, +inf) bucket: still exact
        return
    point.explicit_bounds.extend(DURATION_BOUNDS_S)
    point.bucket_counts.extend(buckets)


def bucket_counts(sketch: LatencySketch | None, bounds_s: Sequence[float]) -> list[int] | None:
    """A latency sketch's counts in explicit buckets ``(b[i-1], b[i]]``; None without one."""
    if sketch is None:
        return None
    values = DDSketch(sketch.relative_accuracy)
    counts = [0] * (len(bounds_s) + 1)
    counts[0] += sketch.zero_count
    for position, bin_count in enumerate(sketch.bin_counts):
        if bin_count:
            value_s = values.value_of_index(sketch.offset + position) / 1000
            counts[bisect.bisect_left(bounds_s, value_s)] += bin_count
    return counts
