"""CUMULATIVE OTLP histograms (the SDK's default) become the right per-interval deltas."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as otlp
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from collector.admin import add_dealer
from collector.health import compute_health
from collector.otlp.convert import METRIC_NAME, convert
from collector.otlp.cumulative import CumulativeToDelta
from collector.server import CollectorServer
from collector.store import SQLAlchemyMetricStore, open_store
from dealerpulse.clock import FakeClock
from dealerpulse.model import EndpointStat

CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


class SdkApp:
    """An app instrumented with the OpenTelemetry SDK, default (CUMULATIVE) temporality."""

    def __init__(self, exponential: bool = False) -> None:
        self.reader = InMemoryMetricReader()
        views = (
            [View(instrument_name="*", aggregation=ExponentialBucketHistogramAggregation())]
            if exponential
            else []
        )
        self.provider = MeterProvider(
            metric_readers=[self.reader],
            resource=Resource.create({"service.name": "dms", "service.instance.id": "dms-1"}),
            views=views,
        )
        self.histogram = self.provider.get_meter("app").create_histogram(METRIC_NAME, unit="s")

    def serve(self, durations_ms: list[float], status: int = 200) -> None:
        for ms in durations_ms:
            self.histogram.record(
                ms / 1000,
                {
                    "http.route": "/api/vehicles/{id}",
                    "http.request.method": "GET",
                    "http.response.status_code": status,
                },
            )

    def export(self) -> otlp.ExportMetricsServiceRequest:
        data = self.reader.get_metrics_data()
        assert data is not None
        request: otlp.ExportMetricsServiceRequest = encode_metrics(data)
        return request


def tracker(started: datetime | None = None, **options: float) -> CumulativeToDelta:
    clock = FakeClock(started or datetime.now(UTC) - timedelta(seconds=1))
    return CumulativeToDelta(METRIC_NAME, clock, **options)  # type: ignore[arg-type]


def stats_of(
    deltas: CumulativeToDelta, request: otlp.ExportMetricsServiceRequest
) -> list[EndpointStat]:
    deltas.to_delta("d1", request)
    converted = convert(request)
    assert converted.rejected_points == 0, converted.reasons
    return [stat for resource in converted.resources for stat in resource.endpoints]


def durations(count: int, spread_ms: int, seed: int) -> list[float]:
    return [float(1 + (n * 7919 + seed) % spread_ms) for n in range(count)]


@pytest.mark.parametrize("exponential", [False, True], ids=["explicit", "exponential"])
def test_each_export_yields_what_happened_since_the_previous_one(exponential: bool) -> None:
    app, deltas = SdkApp(exponential), tracker()
    first, second = durations(200, 20, 1), durations(300, 4000, 2)  # wider: downscales
    app.serve(first)
    app.serve([5.0] * 7, status=503)
    [stat_1] = stats_of(deltas, app.export())  # one endpoint: both status series merge
    app.serve(second)
    [ok_2] = stats_of(deltas, app.export())  # the 503 series had no new requests
    assert [stat_1.count, stat_1.errors, ok_2.count, ok_2.errors] == [207, 7, 300, 0]
    assert ok_2.duration_sum_ms == pytest.approx(math.fsum(second))
    # The second interval set a new maximum, so it is exact; its minimum is not derivable.
    assert ok_2.duration_max_ms == pytest.approx(max(second))
    health = compute_health("d1", datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC), [ok_2])
    truth = sorted(second)[math.floor(0.95 * 299)]
    # exponential: OTLP bucket (~4 % at the downscaled scale) + 1 %; explicit: as coarse as
    # the SDK's default bounds.
    assert health.p95_ms == pytest.approx(truth, rel=0.06 if exponential else 0.5)
    assert deltas.stats.baselines == 0 and len(deltas) == 2


def test_a_stream_older_than_the_collector_only_sets_the_baseline() -> None:
    app = SdkApp()
    app.serve(durations(50, 100, 3))
    before_restart = app.export()  # what an earlier collector process stored
    deltas = tracker(started=datetime.now(UTC) + timedelta(seconds=1))
    assert stats_of(deltas, before_restart) == []
    assert deltas.stats.baselines == 1
    app.serve(durations(30, 100, 4))
    [stat] = stats_of(deltas, app.export())
    assert stat.count == 30
    # A series the app starts now (its first 500) began after the last export we
    # saw from this app, so it counts whole even though the collector is younger.
    app.serve([9.0, 9.0], status=500)
    app.serve([1.0])
    [stat] = stats_of(deltas, app.export())
    assert (stat.count, stat.errors) == (3, 2)


def cumulative_point(
    counts: list[int], start_ns: int, at_ns: int, bounds: tuple[float, ...] = (0.01, 0.1)
) -> otlp.ExportMetricsServiceRequest:
    request = otlp.ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "dms"
    metric = resource.scope_metrics.add().metrics.add(name=METRIC_NAME, unit="s")
    metric.histogram.aggregation_temporality = CUMULATIVE
    point = metric.histogram.data_points.add(
        start_time_unix_nano=start_ns,
        time_unix_nano=at_ns,
        count=sum(counts),
        sum=0.05 * sum(counts),
        bucket_counts=counts,
        explicit_bounds=bounds,
    )
    point.attributes.add(key="http.response.status_code").value.int_value = 200
    return request


def counts_of(deltas: CumulativeToDelta, request: otlp.ExportMetricsServiceRequest) -> list[int]:
    return [s.count for s in stats_of(deltas, request)]


def test_resets_and_layout_changes_start_new_baselines() -> None:
    deltas, start = tracker(), time.time_ns()
    assert counts_of(deltas, cumulative_point([1, 2, 3], start, start + 1)) == [6]
    assert counts_of(deltas, cumulative_point([2, 4, 3], start, start + 2)) == [3]
    # The app restarted without a new start time: counts went down; whole, new baseline.
    assert counts_of(deltas, cumulative_point([0, 1, 1], start, start + 3)) == [2]
    assert counts_of(deltas, cumulative_point([0, 2, 1], start, start + 4)) == [1]
    # Other bounds: nothing says which part is new; dropped, new baseline.
    assert counts_of(deltas, cumulative_point([5, 5, 5], start, start + 5, (0.5, 1.0))) == []
    assert counts_of(deltas, cumulative_point([5, 6, 5], start, start + 6, (0.5, 1.0))) == [1]
    # A new start time is a new stream, seen whole.
    assert counts_of(deltas, cumulative_point([1, 0, 0], start + 7, start + 8)) == [1]
    assert (deltas.stats.resets, deltas.stats.layout_changes, deltas.stats.streams) == (1, 1, 2)


def test_memory_is_bounded_by_count_and_idle_time() -> None:
    deltas, start = tracker(max_streams=3, max_idle_s=60), time.time_ns()
    for n in range(5):
        counts_of(deltas, cumulative_point([1, 0, 0], start + n, start + 10 + n))
    assert (len(deltas), deltas.stats.evicted) == (3, 2)
    assert isinstance(deltas.clock, FakeClock)
    deltas.clock.advance(61)
    counts_of(deltas, cumulative_point([1, 1, 0], start + 99, start + 100))
    assert (len(deltas), deltas.stats.expired) == (1, 3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 50), min_size=4, max_size=4), min_size=1, max_size=12))
def test_deltas_add_up_to_the_last_cumulative_point(increments: list[list[int]]) -> None:
    # A collector started after the stream: the first point is the baseline, and
    # the deltas after it add up exactly to the last point minus the first.
    deltas = tracker(started=datetime.now(UTC) + timedelta(days=1))
    start, totals, stored = time.time_ns(), [1, 1, 1, 1], 0
    counts_of(deltas, cumulative_point(totals, start, start + 1, (0.01, 0.1, 1.0)))
    for n, step in enumerate(increments):
        totals = [t + i for t, i in zip(totals, step, strict=True)]
        point = cumulative_point(totals, start, start + 2 + n, (0.01, 0.1, 1.0))
        stored += sum(counts_of(deltas, point))
    assert stored == sum(totals) - 4


@pytest.fixture
def store(sqlite_url: str) -> Iterator[SQLAlchemyMetricStore]:
    opened = open_store(sqlite_url, pool_size=5)
    yield opened
    opened.close()


def test_the_sdk_default_exporter_reports_with_only_an_endpoint(
    store: SQLAlchemyMetricStore,
) -> None:
    dealer, token = add_dealer(store, "Default Motors")
    began = datetime.now(UTC) - timedelta(seconds=1)

    async def scenario() -> None:
        server = CollectorServer(store, "127.0.0.1:0")
        port = await server.start()
        try:
            await asyncio.to_thread(export_twice_with_defaults, port, token)
        finally:
            await server.stop(5)

    asyncio.run(asyncio.wait_for(scenario(), 60))
    records = store.query_endpoint_stats(
        dealer.dealer_id, began - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)
    )
    by_status: dict[int, int] = {}
    for record in records:
        for status, count in record.stat.status_counts:
            by_status[status] = by_status.get(status, 0) + count
    assert by_status == {200: 250, 500: 4}
    assert sum(r.stat.errors for r in records) == 4


def export_twice_with_defaults(port: int, token: str) -> None:
    # No temporality preference: the exporter's default, CUMULATIVE.
    exporter = OTLPMetricExporter(
        endpoint=f"127.0.0.1:{port}",
        insecure=True,
        headers=(("authorization", f"Bearer {token}"),),
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "shop"})
    )
    histogram = provider.get_meter("shop").create_histogram(METRIC_NAME, unit="s")

    def serve(count: int, status: int) -> None:
        for n in range(count):
            attributes: dict[str, str | int] = {
                "http.route": "/orders",
                "http.request.method": "GET",
                "http.response.status_code": status,
            }
            histogram.record(0.01 + n / 10_000, attributes)

    serve(150, 200)
    assert provider.force_flush(30_000)
    serve(100, 200)
    serve(4, 500)
    assert provider.force_flush(30_000)
    provider.shutdown()
