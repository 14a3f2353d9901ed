"""A blocking client of the Reporter gRPC service, answering model objects.

The protobuf edge of ``dealerpulse analytics`` and ``dealerpulse report``:
requests are built and answers decoded by :mod:`reporter.codec`, so callers
see only :mod:`reporter.model` types. A refused call raises
:class:`ReporterCallError` with the gRPC status name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from dealerpulse.rpc_client import call_unary, open_channel
from dealerpulse.v1 import reporter_pb2_grpc
from reporter import codec
from reporter.model import (
    Analytics,
    Realtime,
    Recommendation,
    ReportFormat,
    ReportRecord,
    TimeRange,
)

logger = logging.getLogger(__name__)

# Analytics of 30 days over every dealer may take a while to compute the first time.
CALL_TIMEOUT_S = 60.0


class ReporterCallError(Exception):
    """The reporter refused a call or could not be reached."""

    def __init__(self, status: str, details: str) -> None:
        super().__init__(f"{status}: {details}")
        self.status, self.details = status, details


@contextmanager
def connect(address: str, token: str, tls_root: bytes | None = None) -> Iterator[ReporterClient]:
    """A client on a new channel (TLS when ``tls_root``, the CA bundle, is given)."""
    credentials = None if tls_root is None else grpc.ssl_channel_credentials(tls_root)
    channel = open_channel(address, credentials)
    try:
        yield ReporterClient(reporter_pb2_grpc.ReporterStub(channel), token)  # type: ignore[no-untyped-call]
    finally:
        channel.close()


class ReporterClient:
    def __init__(self, stub: reporter_pb2_grpc.ReporterStub, token: str) -> None:
        self._stub, self._token = stub, token

    def _call(self, method: str, request: Any) -> Any:
        return call_unary(
            self._stub, method, request, self._token, CALL_TIMEOUT_S, ReporterCallError
        )

    def realtime(self, dealer_id: str = "") -> Realtime:
        return codec.realtime_from_pb(self._call("GetRealtime", codec.realtime_request(dealer_id)))

    def analytics(self, dealer_id: str | None, time_range: TimeRange | str) -> Analytics:
        request = codec.analytics_request(dealer_id, time_range)
        return codec.analytics_from_pb(self._call("GetAnalytics", request))

    def recommendations(
        self, dealer_id: str | None, time_range: TimeRange | str
    ) -> tuple[Recommendation, ...]:
        request = codec.recommendations_request(dealer_id, time_range)
        return codec.recommendations_from_pb(self._call("ListRecommendations", request))

    def generate_report(
        self, dealer_id: str | None, time_range: TimeRange | str, fmt: ReportFormat
    ) -> ReportRecord:
        request = codec.generate_report_request(dealer_id, time_range, fmt)
        return codec.report_from_pb(self._call("GenerateReport", request))

    def list_reports(self, dealer_id: str | None, limit: int = 50) -> list[ReportRecord]:
        answer = self._call("ListReports", codec.list_reports_request(dealer_id, limit))
        return [codec.report_from_pb(report) for report in answer.reports]

    def get_report(self, report_id: int, fmt: ReportFormat | None = None) -> ReportRecord:
        return codec.report_from_pb(
            self._call("GetReport", codec.get_report_request(report_id, fmt))
        )
