"""OTLP metrics: an app instrumented only with the OpenTelemetry SDK reports to the collector."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as otlp
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from collector.admin import add_dealer
from collector.health import compute_health
from collector.otlp.convert import convert
from collector.server import CollectorServer
from collector.store import SQLAlchemyMetricStore, open_store

METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[SQLAlchemyMetricStore]:
    opened = open_store(sqlite_url, pool_size=5)
    yield opened
    opened.close()


def sdk_requests(exponential: bool) -> tuple[otlp.ExportMetricsServiceRequest, list[float]]:
    """What an SDK-instrumented app exports after 300 requests of known duration."""
    reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    views = (
        [View(instrument_name="*", aggregation=ExponentialBucketHistogramAggregation())]
        if exponential
        else []
    )
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "dms", "service.instance.id": "dms-1"}),
        views=views,
    )
    histogram = provider.get_meter("app").create_histogram("http.server.request.duration", unit="s")
    durations: list[float] = []
    for n in range(300):
        seconds = (1 + n * 37 % 400) / 1000
        status = 500 if n % 30 == 0 else 200
        attributes: dict[str, str | int] = {
            "http.route": "/api/vehicles/{id}",
            "http.request.method": "GET",
            "http.response.status_code": status,
        }
        histogram.record(seconds, attributes)
        durations.append(seconds * 1000)
    data = reader.get_metrics_data()
    assert data is not None
    provider.shutdown()
    from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics

    return encode_metrics(data), durations


@pytest.mark.parametrize("exponential", [True, False], ids=["exponential", "explicit"])
def test_sdk_histograms_become_endpoint_stats(exponential: bool) -> None:
    request, durations = sdk_requests(exponential)
    converted = convert(request)
    assert converted.rejected_points == 0
    [resource] = converted.resources
    assert (resource.instance, resource.service) == ("dms-1", "dms")
    [stat] = resource.endpoints
    assert (stat.route, stat.method, stat.source, stat.count) == (
        "/api/vehicles/{id}",
        "GET",
        "otlp",
        300,
    )
    assert stat.errors == 10
    assert stat.duration_sum_ms == pytest.approx(math.fsum(durations))
    assert stat.duration_max_ms == pytest.approx(max(durations))
    start = datetime.now(UTC) - timedelta(hours=1)
    health = compute_health("d", start, start + timedelta(hours=2), [stat])
    ordered = sorted(durations)
    truth = ordered[math.floor(0.95 * 299)]
    # exponential: OTLP bucket (scale-dependent, ~2 %) + 1 % sketch; explicit: SDK's
    # default bounds (..., 250, 500 ms) make it as coarse as its buckets.
    assert health.p95_ms == pytest.approx(truth, rel=0.05 if exponential else 0.5)


def test_the_sdk_exporter_reports_to_the_collector(store: SQLAlchemyMetricStore) -> None:
    dealer, token = add_dealer(store, "OTel Motors")
    began = datetime.now(UTC) - timedelta(seconds=1)

    async def scenario() -> None:
        server = CollectorServer(store, "127.0.0.1:0")
        port = await server.start()
        try:
            await asyncio.to_thread(export_with_sdk, port, token)
        finally:
            await server.stop(5)

    asyncio.run(asyncio.wait_for(scenario(), 60))
    records = store.query_endpoint_stats(
        dealer.dealer_id, began - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)
    )
    assert sum(r.stat.count for r in records) == 200
    assert {r.stat.route for r in records} == {"/orders"}
    assert {r.stat.source for r in records} == {"otlp"}
    assert all(r.agent_id.startswith("otlp.shop-7.") for r in records)


def export_with_sdk(port: int, token: str) -> None:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    exporter = OTLPMetricExporter(
        endpoint=f"127.0.0.1:{port}",
        insecure=True,
        headers=(("authorization", f"Bearer {token}"),),
        preferred_temporality={Histogram: AggregationTemporality.DELTA},
    )
    # A long period: the export happens on force_flush, not on a timer.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "shop", "service.instance.id": "shop-7"}),
    )
    histogram = provider.get_meter("shop").create_histogram(
        "http.server.request.duration", unit="s"
    )
    for n in range(200):
        histogram.record(
            0.01 + n / 10_000,
            {
                "http.route": "/orders",
                "http.request.method": "POST",
                "http.response.status_code": 201,
            },
        )
    assert provider.force_flush(30_000)
    provider.shutdown()


def test_bad_requests_are_refused_or_partially_rejected(store: SQLAlchemyMetricStore) -> None:
    _, token = add_dealer(store, "Strict Motors")
    metadata = (("authorization", f"Bearer {token}"),)
    cumulative = otlp.ExportMetricsServiceRequest()  # with no temporality at all
    metric = cumulative.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name, metric.unit = "http.server.request.duration", "s"
    metric.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_UNSPECIFIED
    point = metric.histogram.data_points.add(count=1, sum=0.1, bucket_counts=[1])
    point.time_unix_nano = time.time_ns()

    async def scenario() -> None:
        server = CollectorServer(store, "127.0.0.1:0")
        port = await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            raw = channel.unary_unary(METHOD, None, None)
            with pytest.raises(grpc.aio.AioRpcError) as garbage:
                await raw(b"\xff\xff\xff", metadata=metadata, timeout=10)
            assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                await raw(cumulative.SerializeToString(), timeout=10)
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
            answer = otlp.ExportMetricsServiceResponse.FromString(
                await raw(cumulative.SerializeToString(), metadata=metadata, timeout=10)
            )
            assert answer.partial_success.rejected_data_points == 1
            assert "DELTA" in answer.partial_success.error_message
        finally:
            await channel.close(None)
            await server.stop(5)

    asyncio.run(asyncio.wait_for(scenario(), 60))
