"""The Reporter gRPC service: the transport over :class:`reporter.core.ReporterCore`.

Callers send ``authorization: Bearer <token>`` like agents
(:mod:`collector.auth`). A dealer or viewer token reads its own dealer only
(everything here is reading, so a viewer may also generate a report); an
admin token reads any dealer, and only an admin may ask for every dealer at
once (an empty ``dealer_id``). A report of
another dealer answers NOT_FOUND, so report ids do not reveal other dealers.
Bad input answers INVALID_ARGUMENT naming the field (``timeRange``,
``format``, ``limit``). The core is blocking: calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc

from collector.abc import MetricStore, StoreError, UnknownDealer
from collector.auth import Authenticator, NotAuthenticated, Principal
from collector.ingest.errors import StoreUnavailable
from dealerpulse.clock import Clock
from dealerpulse.v1 import reporter_pb2 as pb
from dealerpulse.v1 import reporter_pb2_grpc
from reporter import codec
from reporter.core import NotAvailable
from reporter.model import Reporter

logger = logging.getLogger(__name__)

REPORTER_SERVICE = pb.DESCRIPTOR.services_by_name["Reporter"].full_name
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 500
_T = TypeVar("_T")


class ReportNotFound(LookupError):
    """No report with that id that the caller may see."""


class PermissionDenied(Exception):
    """The caller's token does not reach that dealer (or needs to be an admin)."""


_STATUS: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (NotAuthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (UnknownDealer, grpc.StatusCode.NOT_FOUND),
    (ReportNotFound, grpc.StatusCode.NOT_FOUND),
    (NotAvailable, grpc.StatusCode.UNIMPLEMENTED),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    (StoreError, grpc.StatusCode.UNAVAILABLE),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),  # RangeError, CodecError
)


def one_dealer(caller: Principal, requested: str) -> str:
    """The single dealer a call is about: the requested one, or the caller's own."""
    if caller.dealer_id is None:  # an admin names the dealer
        if not requested:
            raise ValueError("dealer_id: required with an admin token")
        return requested
    if requested and not caller.may_read(requested):
        raise PermissionDenied(f"{caller.name} may not read dealer {requested!r}")
    return caller.dealer_id


def dealer_or_all(caller: Principal, requested: str) -> str | None:
    """``requested``, where empty means every dealer: an admin's privilege."""
    if not requested:
        if not caller.may_manage():
            raise PermissionDenied(
                "dealer_id: every dealer (empty dealer_id) needs an admin token; "
                f"ask for dealer {caller.dealer_id!r}"
            )
        return None
    return one_dealer(caller, requested)


def _limit(raw: int) -> int:
    if raw < 0 or raw > MAX_LIST_LIMIT:
        raise ValueError(f"limit: must be between 0 and {MAX_LIST_LIMIT}, got {raw}")
    return raw or DEFAULT_LIST_LIMIT


class ReporterService(reporter_pb2_grpc.ReporterServicer):
    def __init__(
        self, core: Reporter, store: MetricStore, clock: Clock, auth_ttl_s: float = 10.0
    ) -> None:
        self._core = core
        self._clock = clock
        self._auth = Authenticator(store, clock, ttl_s=auth_ttl_s)

    async def _run(self, context: Any, work: Callable[[Principal], _T]) -> _T:
        """Authenticate, then run the blocking ``work`` in a thread; errors become statuses."""
        try:
            caller = await self._auth.authenticate(context.invocation_metadata())
            return await asyncio.to_thread(work, caller)
        except Exception as error:
            for kind, code in _STATUS:
                if isinstance(error, kind):
                    await _abort(context, code, str(error))
            logger.exception("reporter call failed unexpectedly")
            raise

    async def GetRealtime(self, request: pb.GetRealtimeRequest, context: Any) -> pb.Realtime:
        def work(caller: Principal) -> pb.Realtime:
            dealer_id = one_dealer(caller, request.dealer_id)
            return codec.realtime_to_pb(self._core.realtime(dealer_id))

        return await self._run(context, work)

    async def GetAnalytics(self, request: pb.GetAnalyticsRequest, context: Any) -> pb.Analytics:
        def work(caller: Principal) -> pb.Analytics:
            dealer_id = dealer_or_all(caller, request.dealer_id)
            time_range = codec.time_range_from_pb(request.time_range, self._clock.now())
            return codec.analytics_to_pb(self._core.analytics(dealer_id, time_range))

        return await self._run(context, work)

    async def ListRecommendations(
        self, request: pb.ListRecommendationsRequest, context: Any
    ) -> pb.ListRecommendationsResponse:
        def work(caller: Principal) -> pb.ListRecommendationsResponse:
            dealer_id = dealer_or_all(caller, request.dealer_id)
            time_range = codec.time_range_from_pb(request.time_range, self._clock.now())
            return codec.recommendations_to_pb(self._core.recommendations(dealer_id, time_range))

        return await self._run(context, work)

    async def GenerateReport(self, request: pb.GenerateReportRequest, context: Any) -> pb.Report:
        def work(caller: Principal) -> pb.Report:
            dealer_id = dealer_or_all(caller, request.dealer_id)
            time_range = codec.time_range_from_pb(request.time_range, self._clock.now())
            fmt = codec.report_format(request.format)
            assert fmt is not None  # the default is HTML
            record = self._core.generate_report(dealer_id, time_range, fmt)
            logger.info(
                "report %s (%s) generated for %s by %s",
                record.report_id,
                fmt.value,
                dealer_id or "every dealer",
                caller.name,
            )
            return codec.report_to_pb(record)

        return await self._run(context, work)

    async def ListReports(
        self, request: pb.ListReportsRequest, context: Any
    ) -> pb.ListReportsResponse:
        def work(caller: Principal) -> pb.ListReportsResponse:
            limit = _limit(request.limit)
            if caller.may_manage():
                scope = request.dealer_id or None
            else:
                scope = one_dealer(caller, request.dealer_id)
            records = self._core.list_reports(scope, limit)
            return pb.ListReportsResponse(
                reports=[codec.report_to_pb(r, with_body=False) for r in records]
            )

        return await self._run(context, work)

    async def GetReport(self, request: pb.GetReportRequest, context: Any) -> pb.Report:
        def work(caller: Principal) -> pb.Report:
            fmt = codec.report_format(request.format, default=None)
            record = self._core.get_report(request.report_id, fmt)
            if record is None or not caller.may_read(record.dealer_id):
                raise ReportNotFound(f"no report with id {request.report_id}")
            return codec.report_to_pb(record)

        return await self._run(context, work)


async def _abort(context: Any, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returns only by raising")
