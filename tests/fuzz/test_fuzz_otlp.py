"""Fuzzing the collector's OTLP MetricsService/Export over real gRPC.

Requests are ExportMetricsServiceRequests with arbitrary resources, metric
names, units, temporalities, attributes and histogram points (explicit and
exponential), and raw bytes. For every request: no INTERNAL/UNKNOWN; either
INVALID_ARGUMENT (undecodable) or OK with the unusable points counted as
rejected and a reason given; a request whose points are all rejected stores
nothing; the collector stores a good export afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as otlp
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from .live_collector import LiveCollector, live_collector

EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
METRIC = "http.server.request.duration"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
UINT64 = st.integers(0, 2**64 - 1)
SMALL_COUNT = st.integers(0, 50)
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
tried: dict[str, int] = {}


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCollector]:
    with live_collector(Path(tmp_path_factory.mktemp("fuzz-otlp")), "Otlp Fuzz Motors") as live:
        yield live
    print(f"\nOTLP fuzz inputs tried: {tried}")


def count(name: str) -> None:
    tried[name] = tried.get(name, 0) + 1


def key_value(key: str, value: str | int | float | bool) -> KeyValue:
    pair = KeyValue(key=key)
    if isinstance(value, bool):
        pair.value.bool_value = value
    elif isinstance(value, int):
        pair.value.int_value = value
    elif isinstance(value, float):
        pair.value.double_value = value
    else:
        pair.value.string_value = value
    return pair


ATTRIBUTE_VALUE = st.one_of(
    st.text(max_size=600), st.integers(-(2**63), 2**63 - 1), ANY_FLOAT, st.booleans()
)
POINT_ATTRIBUTES = st.dictionaries(
    st.one_of(
        st.sampled_from(
            ["http.route", "http.request.method", "http.response.status_code", "error.type"]
        ),
        st.text(max_size=20),
    ),
    st.one_of(ATTRIBUTE_VALUE, st.integers(100, 599), st.sampled_from(["GET", "/a/{id}"])),
    max_size=5,
)


@st.composite
def explicit_point(draw: st.DrawFn) -> metrics_pb2.HistogramDataPoint:
    now_ns = time.time_ns()
    bounds = draw(st.lists(ANY_FLOAT, max_size=6))
    counts = draw(st.lists(SMALL_COUNT, max_size=8))
    point = metrics_pb2.HistogramDataPoint(
        start_time_unix_nano=draw(st.one_of(UINT64, st.just(now_ns - 10**10))),
        time_unix_nano=draw(st.one_of(UINT64, st.just(now_ns))),
        count=draw(st.one_of(st.just(sum(counts)), UINT64)),
        sum=draw(ANY_FLOAT),
        bucket_counts=counts,
        explicit_bounds=bounds,
    )
    if draw(st.booleans()):
        point.min, point.max = draw(ANY_FLOAT), draw(ANY_FLOAT)
    point.attributes.extend(key_value(k, v) for k, v in draw(POINT_ATTRIBUTES).items())
    return point


@st.composite
def exponential_point(draw: st.DrawFn) -> metrics_pb2.ExponentialHistogramDataPoint:
    now_ns = time.time_ns()
    counts = draw(st.lists(SMALL_COUNT, max_size=8))
    point = metrics_pb2.ExponentialHistogramDataPoint(
        start_time_unix_nano=now_ns - 10**10,
        time_unix_nano=draw(st.one_of(UINT64, st.just(now_ns))),
        count=draw(st.one_of(st.just(sum(counts)), UINT64)),
        sum=draw(ANY_FLOAT),
        scale=draw(st.integers(-20, 30)),
        zero_count=draw(st.integers(0, 5)),
    )
    point.positive.offset = draw(st.integers(-(2**31), 2**31 - 1))
    point.positive.bucket_counts.extend(counts)
    point.negative.bucket_counts.extend(draw(st.lists(SMALL_COUNT, max_size=2)))
    point.attributes.extend(key_value(k, v) for k, v in draw(POINT_ATTRIBUTES).items())
    return point


@st.composite
def export_requests(draw: st.DrawFn) -> otlp.ExportMetricsServiceRequest:
    request = otlp.ExportMetricsServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        resource = request.resource_metrics.add()
        resource.resource.attributes.extend(
            key_value(k, v)
            for k, v in draw(
                st.dictionaries(
                    st.sampled_from(["service.name", "service.instance.id", "host"]),
                    ATTRIBUTE_VALUE,
                    max_size=3,
                )
            ).items()
        )
        for _ in range(draw(st.integers(1, 2))):
            metric = resource.scope_metrics.add().metrics.add()
            metric.name = draw(st.one_of(st.just(METRIC), st.text(max_size=30)))
            metric.unit = draw(st.sampled_from(["s", "ms", "", "us", "By"]))
            temporality = draw(st.sampled_from([0, 1, 2, 7]))
            if draw(st.booleans()):
                metric.histogram.aggregation_temporality = temporality  # type: ignore[assignment]
                metric.histogram.data_points.extend(draw(st.lists(explicit_point(), max_size=3)))
            else:
                data = metric.exponential_histogram
                data.aggregation_temporality = temporality  # type: ignore[assignment]
                data.data_points.extend(draw(st.lists(exponential_point(), max_size=3)))
    return request


def points_in(request: otlp.ExportMetricsServiceRequest) -> int:
    total = 0
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                total += len(metric.histogram.data_points)
                total += len(metric.exponential_histogram.data_points)
    return total


def export(
    live: LiveCollector, payload: bytes
) -> tuple[grpc.StatusCode, otlp.ExportMetricsServiceResponse | None]:
    call = live.channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
    try:
        raw = call(payload, metadata=live.metadata, timeout=20)
    except grpc.RpcError as refused:
        return refused.code(), None
    return grpc.StatusCode.OK, otlp.ExportMetricsServiceResponse.FromString(raw)


def good_request() -> otlp.ExportMetricsServiceRequest:
    request = otlp.ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.append(key_value("service.name", "fuzz-app"))
    metric = resource.scope_metrics.add().metrics.add(name=METRIC, unit="s")
    metric.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    now_ns = time.time_ns()
    point = metric.histogram.data_points.add(
        start_time_unix_nano=now_ns - 10**10,
        time_unix_nano=now_ns,
        count=3,
        sum=0.3,
        bucket_counts=[1, 2, 0],
        explicit_bounds=[0.05, 0.5],
    )
    point.attributes.extend(
        [
            key_value("http.route", "/ok"),
            key_value("http.request.method", "GET"),
            key_value("http.response.status_code", 200),
        ]
    )
    return request


def assert_still_serves(live: LiveCollector) -> None:
    before = live.row_counts()["api_performance"]
    code, answer = export(live, good_request().SerializeToString())
    assert code is grpc.StatusCode.OK and answer is not None
    assert answer.partial_success.rejected_data_points == 0, answer
    assert live.row_counts()["api_performance"] == before + 1


def assert_clear_answer(live: LiveCollector, payload: bytes, points: int | None) -> None:
    before = live.row_counts()
    code, answer = export(live, payload)
    after = live.row_counts()
    assert code in {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}, code
    count(f"answer {code.name}")
    if answer is None:
        assert after == before
        return
    rejected = answer.partial_success.rejected_data_points
    if rejected:
        count("partly or wholly rejected")
        assert answer.partial_success.error_message
    if points is not None:
        assert 0 <= rejected <= points
        if rejected == points:
            assert after["api_performance"] == before["api_performance"]


@FUZZ
@given(request=export_requests())
def test_odd_export_requests_are_answered_cleanly(
    collector: LiveCollector, request: otlp.ExportMetricsServiceRequest
) -> None:
    count("structured")
    assert_clear_answer(collector, request.SerializeToString(), points_in(request))
    assert_still_serves(collector)


@FUZZ
@given(payload=st.binary(max_size=600))
def test_raw_bytes_are_refused_cleanly(collector: LiveCollector, payload: bytes) -> None:
    count("raw_bytes")
    assert_clear_answer(collector, payload, None)
    assert_still_serves(collector)
