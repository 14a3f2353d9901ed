"""GetAnalytics, ListRecommendations and reports through a real server, over rolled-up data."""

from __future__ import annotations

from datetime import timedelta

import grpc

from collector.rollup.rollups import RollupRunner
from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock
from dealerpulse.v1 import reporter_pb2 as pb
from reporter import codec
from reporter.server import ReporterServer

from .conftest import ClientOf, serve
from .factories import ACME, NOW, add_dealers, endpoint, fill_acme, fill_zenith, write

HOUR = pb.TimeRange(name="1h")


def test_analytics_of_a_dealer_and_of_every_dealer(store: SQLAlchemyMetricStore) -> None:
    tokens = add_dealers(store)
    fill_acme(store)
    fill_zenith(store)
    RollupRunner(store.engine).run(NOW)
    clock = FakeClock(NOW)

    async def scenario(server: ReporterServer, client_of: ClientOf) -> None:
        acme, admin = client_of(tokens.acme), client_of(tokens.admin)
        request = pb.GetAnalyticsRequest(dealer_id=ACME, time_range=HOUR)
        mine = codec.analytics_from_pb(await acme("GetAnalytics", request))
        assert mine.data.dealer_id == ACME
        assert mine.data.range.end == NOW and mine.data.range.duration == timedelta(hours=1)
        assert mine.data.summary.requests == 150 and mine.data.summary.errors == 2
        assert {e.route for e in mine.data.endpoints} == {"/api/vehicles", "/api/leads"}
        assert {t.metric for t in mine.trends} == {"response_time", "error_rate", "throughput"}

        every = pb.GetAnalyticsRequest(time_range=HOUR)
        fleet = codec.analytics_from_pb(await admin("GetAnalytics", every))
        assert fleet.data.dealer_id is None and fleet.data.summary.requests == 160

        listed = await acme("ListRecommendations", pb.ListRecommendationsRequest(
            dealer_id=ACME, time_range=HOUR
        ))  # fmt: skip
        assert codec.recommendations_from_pb(listed) == mine.recommendations

        # The same range a second later is the same cache entry (and so are the
        # recommendations above); new data for the dealer within the minimum
        # freshness does not recompute a range of an hour.
        clock.advance(1)
        write(
            store,
            ACME,
            2,
            clock.now(),
            endpoints=(endpoint("/api/x", 5, 0, 5.0, clock.now() - timedelta(seconds=1)),),
        )
        again = codec.analytics_from_pb(await acme("GetAnalytics", request))
        assert again == mine
        stats = server.core.cache_stats()
        assert (stats.misses, stats.hits) == (2, 2)

    serve(store, clock, scenario)


def test_reports_are_generated_listed_and_fetched_per_dealer(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    tokens = add_dealers(sqlite_store)
    fill_acme(sqlite_store)
    RollupRunner(sqlite_store.engine).run(NOW)

    async def scenario(server: ReporterServer, client_of: ClientOf) -> None:
        acme, zenith = client_of(tokens.acme), client_of(tokens.zenith)
        made = await acme("GenerateReport", pb.GenerateReportRequest(
            dealer_id=ACME, time_range=HOUR, format="text"
        ))  # fmt: skip
        assert made.report_id > 0 and made.format == "text" and made.dealer_id == ACME
        assert b"acme-motors" in made.body.lower() or b"acme motors" in made.body.lower()

        listed = await acme("ListReports", pb.ListReportsRequest())
        assert [r.report_id for r in listed.reports] == [made.report_id]
        assert listed.reports[0].body == b""
        assert (await zenith("ListReports", pb.ListReportsRequest())).reports == []

        html = await acme("GetReport", pb.GetReportRequest(report_id=made.report_id))
        assert html.format == "html" and b"<html" in html.body.lower()
        code, _ = await zenith.refused("GetReport", pb.GetReportRequest(report_id=made.report_id))
        assert code == grpc.StatusCode.NOT_FOUND
        code, detail = await acme.refused(
            "GetReport", pb.GetReportRequest(report_id=made.report_id, format="pdf")
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and detail.startswith("format")
        code, detail = await zenith.refused("ListReports", pb.ListReportsRequest(limit=501))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "limit" in detail
        code, _ = await zenith.refused("ListReports", pb.ListReportsRequest(dealer_id=ACME))
        assert code == grpc.StatusCode.PERMISSION_DENIED

    serve(sqlite_store, FakeClock(NOW), scenario)
