"""The Reporter gRPC service through a real server on 127.0.0.1:0, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock
from dealerpulse.v1 import reporter_pb2 as pb
from reporter import codec
from reporter.server import ReporterServer

from .conftest import ClientOf, serve
from .factories import ACME, NOW, ZENITH, add_dealers, fill_acme, fill_zenith


def test_realtime_figures_match_the_stored_endpoint_stats_and_newest_samples(
    store: SQLAlchemyMetricStore,
) -> None:
    tokens = add_dealers(store)
    fill_acme(store)
    fill_zenith(store)

    async def scenario(server: ReporterServer, client_of: ClientOf) -> None:
        acme = client_of(tokens.acme)
        answer = codec.realtime_from_pb(await acme("GetRealtime", pb.GetRealtimeRequest()))
        health = answer.health
        assert health.dealer_id == ACME
        assert (health.start, health.end) == (NOW - timedelta(minutes=5), NOW)
        assert health.requests == 150
        assert health.errors == 2
        assert health.error_rate_percent == pytest.approx(100 * 2 / 150)
        assert health.avg_ms == pytest.approx(6000 / 150)
        assert health.throughput_per_min == pytest.approx(150 / 5)
        by_route = {e.route: e for e in health.endpoints}
        assert by_route["/api/vehicles"].requests == 100
        assert by_route["/api/vehicles"].errors == 2
        assert by_route["/api/vehicles"].last_error == "HTTP 500"
        assert by_route["/api/leads"].success_rate_percent == pytest.approx(100.0)
        resources = answer.resources
        # The whole-host CPU, not the hottest core; the fullest disk; the busier direction.
        assert resources.cpu_percent == pytest.approx(42.0)
        assert resources.memory_percent == pytest.approx(63.0)
        assert resources.disk_percent == pytest.approx(91.0)
        assert resources.network_percent == pytest.approx(12.0)
        assert resources.as_of == NOW - timedelta(seconds=40)
        assert answer.as_of == NOW

    serve(store, FakeClock(NOW), scenario)


def test_a_dealer_token_reads_only_its_own_dealer_and_never_every_dealer(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    tokens = add_dealers(sqlite_store)
    fill_acme(sqlite_store)
    fill_zenith(sqlite_store)

    async def scenario(server: ReporterServer, client_of: ClientOf) -> None:
        acme, admin = client_of(tokens.acme), client_of(tokens.admin)
        mine = await acme("GetRealtime", pb.GetRealtimeRequest(dealer_id=ACME))
        assert mine.health.dealer_id == ACME

        code, detail = await acme.refused("GetRealtime", pb.GetRealtimeRequest(dealer_id=ZENITH))
        assert code == grpc.StatusCode.PERMISSION_DENIED and ZENITH in detail
        month = pb.TimeRange(name="30d")
        for method, request in (
            ("GetAnalytics", pb.GetAnalyticsRequest(dealer_id=ZENITH, time_range=month)),
            ("GetAnalytics", pb.GetAnalyticsRequest(time_range=month)),
            ("ListRecommendations", pb.ListRecommendationsRequest(time_range=month)),
            ("GenerateReport", pb.GenerateReportRequest(time_range=month)),
            ("ListReports", pb.ListReportsRequest(dealer_id=ZENITH)),
        ):
            code, detail = await acme.refused(method, request)
            assert code == grpc.StatusCode.PERMISSION_DENIED, method
            assert "dealer" in detail

        theirs = await admin("GetRealtime", pb.GetRealtimeRequest(dealer_id=ZENITH))
        assert theirs.health.dealer_id == ZENITH and theirs.health.requests == 10
        code, detail = await admin.refused("GetRealtime", pb.GetRealtimeRequest())
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "dealer_id" in detail
        code, detail = await admin.refused("GetRealtime", pb.GetRealtimeRequest(dealer_id="nobody"))
        assert code == grpc.StatusCode.NOT_FOUND and "nobody" in detail

    serve(sqlite_store, FakeClock(NOW), scenario)


def test_callers_without_a_valid_token_are_unauthenticated(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    add_dealers(sqlite_store)

    async def scenario(server: ReporterServer, client_of: ClientOf) -> None:
        for token in (None, "not-a-token", "dp1.acme-motors.wrongsecretwrongsecretwrongsecret"):
            code, _ = await client_of(token).refused(
                "GetRealtime", pb.GetRealtimeRequest(dealer_id=ACME)
            )
            assert code == grpc.StatusCode.UNAUTHENTICATED, token

    serve(sqlite_store, FakeClock(NOW), scenario)


BAD_RANGES = [
    (pb.TimeRange(name="5x"), "5x"),
    (pb.TimeRange(), "missing"),
    (pb.TimeRange(name="30d", start_unix_ms=1), "not both"),
    (pb.TimeRange(start_unix_ms=2_000_000_000_000, end_unix_ms=1_000_000_000_000), "after"),
    (pb.TimeRange(start_unix_ms=1, end_unix_ms=1_000_000_000_000), "400 days"),
]


def test_a_bad_range_is_invalid_argument_naming_time_range(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    tokens = add_dealers(sqlite_store)

    async def scenario(server: ReporterServer, client_of: ClientOf) -> None:
        acme = client_of(tokens.acme)
        for time_range, named in BAD_RANGES:
            for method, request in (
                ("GetAnalytics", pb.GetAnalyticsRequest(dealer_id=ACME, time_range=time_range)),
                (
                    "ListRecommendations",
                    pb.ListRecommendationsRequest(dealer_id=ACME, time_range=time_range),
                ),
                (
                    "GenerateReport",
                    pb.GenerateReportRequest(dealer_id=ACME, time_range=time_range),
                ),
            ):
                code, detail = await acme.refused(method, request)
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, named)
                assert detail.startswith("timeRange") and named in detail, detail

    serve(sqlite_store, FakeClock(NOW), scenario)


def test_the_health_service_reports_the_reporter_serving(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    async def scenario(server: ReporterServer, client_of: ClientOf) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = await health.Check(
                health_pb2.HealthCheckRequest(service="dealerpulse.v1.Reporter"), timeout=10
            )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING

    serve(sqlite_store, FakeClock(NOW), scenario)
