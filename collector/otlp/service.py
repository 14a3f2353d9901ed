"""``opentelemetry.proto.collector.metrics.v1.MetricsService/Export`` on the collector.

Authenticated like Ingest (``authorization: Bearer <dealer token>``). Each OTLP
resource (an app instance, named by ``service.instance.id`` or else
``service.name``) becomes a synthetic agent ``otlp.<service>.<hash>`` of the
token's dealer, and its points one MetricBatch that goes through the normal
validation and the BatchWriter (group commit; answered only after commit).

CUMULATIVE histograms (the SDK's default) become DELTA ones first, see
:mod:`collector.otlp.cumulative`.

Delivery is at-least-once: OTLP carries no sequence number, so an exporter
that retries a request the collector had stored (its answer lost) stores the
points twice. The batch's seq is the receive time in microseconds, raised past
the last one this process used for the agent: unique per agent within a
collector, and in practice across collectors (an exporter sends one request at
a time); a collision shows as a CONFLICT and is retried once with the next seq.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from collector.abc import AgentInfo, MetricStore, StoreError, UnknownDealer
from collector.ingest.auth import NotAuthenticated, TokenAuthenticator
from collector.ingest.errors import IngestError
from collector.ingest.stream import not_a_writer
from collector.ingest.validate import Caller, Limits, validate_batch
from collector.ingest.writer import BatchWriter
from collector.otlp.convert import METRIC_NAME, ResourceStats, convert
from collector.otlp.cumulative import CumulativeToDelta
from dealerpulse.clock import Clock, unix_ms
from dealerpulse.model import MetricBatch, WriteOutcome

logger = logging.getLogger(__name__)

SERVICE_NAME = "opentelemetry.proto.collector.metrics.v1.MetricsService"
AGENT_VERSION = "otlp"
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")


def otlp_agent_id(dealer_id: str, instance: str) -> str:
    """A stable, valid agent id for one OTLP resource of one dealer."""
    digest = hashlib.sha256(f"{dealer_id}\0{instance}".encode()).hexdigest()[:12]
    readable = _UNSAFE.sub("-", instance)[:80].strip("-") or "app"
    return f"otlp.{readable}.{digest}"


class OtlpMetricsService:
    def __init__(
        self,
        store: MetricStore,
        writer: BatchWriter,
        clock: Clock,
        *,
        auth_ttl_s: float = 10.0,
        limits: Limits | None = None,
    ) -> None:
        self._store = store
        self._writer = writer
        self._clock = clock
        self._auth = TokenAuthenticator(store, clock, auth_ttl_s)
        self._limits = limits or Limits()
        self._last_seq: dict[str, int] = {}
        self._registered: set[str] = set()
        # The SDK's default temporality is CUMULATIVE; the store wants intervals.
        self.cumulative = CumulativeToDelta(METRIC_NAME, clock)

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        # Raw bytes in: an undecodable request is answered INVALID_ARGUMENT by us,
        # not INTERNAL by gRPC's deserializer.
        export = grpc.unary_unary_rpc_method_handler(
            self.export,
            request_deserializer=None,
            response_serializer=ExportMetricsServiceResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {"Export": export})

    async def export(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            principal = await self._auth.authenticate(context.invocation_metadata())
        except NotAuthenticated as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except IngestError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        dealer_id = principal.dealer_id
        if dealer_id is None or not principal.may_ingest():
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, not_a_writer(principal))
        try:
            request = ExportMetricsServiceRequest.FromString(data)
        except DecodeError as exc:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"not an ExportMetricsServiceRequest: {exc}"
            )
        self.cumulative.to_delta(dealer_id, request)
        converted = convert(request)
        rejected, reasons = converted.rejected_points, list(converted.reasons)
        for resource in converted.resources:
            problem = await self._store_resource(dealer_id, resource, len(data))
            if problem is not None:
                rejected += resource.points
                reasons.append(problem)
        if not rejected:
            return ExportMetricsServiceResponse()
        message = "; ".join(dict.fromkeys(reasons))[:1000]
        logger.info(
            "OTLP export of dealer %s: %s points rejected: %s",
            dealer_id,
            rejected,
            message,
        )
        return ExportMetricsServiceResponse(
            partial_success=ExportMetricsPartialSuccess(
                rejected_data_points=rejected, error_message=message
            )
        )

    async def _store_resource(
        self, dealer_id: str, resource: ResourceStats, size: int
    ) -> str | None:
        """None when stored; else why not (its points count as rejected)."""
        agent_id = otlp_agent_id(dealer_id, resource.instance)
        try:
            await self._register(agent_id, dealer_id, resource)
        except (StoreError, UnknownDealer) as exc:
            return f"cannot register {resource.instance!r}: {exc}"
        for _attempt in range(2):
            batch = self._batch(agent_id, dealer_id, resource)
            caller = Caller(dealer_id, True, size, unix_ms(self._clock))
            rejection = validate_batch(batch, caller, self._limits)
            if rejection is not None:
                return rejection.message
            try:
                result = await self._writer.submit(batch)
            except IngestError as exc:
                return f"not stored, retry later: {exc}"
            if result.outcome is not WriteOutcome.CONFLICT:
                return None
        return "sequence conflict; retry"

    async def _register(self, agent_id: str, dealer_id: str, resource: ResourceStats) -> None:
        if agent_id in self._registered:
            return
        info = AgentInfo(agent_id, dealer_id, resource.service[:255], AGENT_VERSION, "")
        last = await asyncio.to_thread(self._store.register_agent, info, self._clock.now())
        self._last_seq[agent_id] = max(self._last_seq.get(agent_id, 0), last)
        self._registered.add(agent_id)

    def _batch(self, agent_id: str, dealer_id: str, resource: ResourceStats) -> MetricBatch:
        now_ms = unix_ms(self._clock)
        seq = max(now_ms * 1000, self._last_seq.get(agent_id, 0) + 1)
        self._last_seq[agent_id] = seq
        return MetricBatch(
            agent_id=agent_id,
            dealer_id=dealer_id,
            seq=seq,
            boot_id="",
            hostname=resource.service[:255],
            agent_version=AGENT_VERSION,
            created_ms=now_ms,
            endpoints=resource.endpoints,
        )
