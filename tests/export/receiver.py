"""A local OTLP/gRPC metrics receiver for the export tests: a real grpc.aio server on
127.0.0.1:0 that records every request and the headers it came with, and answers as
scripted (OK, an error with an optional RetryInfo delay, or hold until released)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

WAIT_S = 20.0


@dataclass(frozen=True)
class Answer:
    """How the receiver answers one call."""

    code: grpc.StatusCode | None = None
    retry_delay_s: float | None = None
    hold: asyncio.Event | None = None
    rejected_points: int = 0


OK = Answer()


@dataclass(frozen=True)
class Point:
    """One received data point, flattened for assertions."""

    resource: dict[str, Any]
    metric: str
    unit: str
    kind: str
    attributes: dict[str, Any]
    value: Any
    time_unix_nano: int


@dataclass
class OtlpReceiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    answers: deque[Answer] = field(default_factory=deque)
    default: Answer = OK
    calls: int = 0
    holding: int = 0
    requests: list[ExportMetricsServiceRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    port: int = 0
    holds: list[asyncio.Event] = field(default_factory=list)

    async def Export(  # the generated servicer's method name
        self, request: ExportMetricsServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ExportMetricsServiceResponse:
        self.calls += 1
        answer = self.answers.popleft() if self.answers else self.default
        if answer.hold is not None:
            self.holds.append(answer.hold)
            self.holding += 1
            try:
                await answer.hold.wait()
            finally:
                self.holding -= 1
        if answer.code is not None:
            await context.abort(answer.code, "scripted failure", _retry_trailer(answer))
        self.requests.append(request)
        self.headers.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        response = ExportMetricsServiceResponse()
        if answer.rejected_points:
            response.partial_success.rejected_data_points = answer.rejected_points
            response.partial_success.error_message = "scripted partial success"
        return response

    def points(self) -> list[Point]:
        return [point for request in self.requests for point in flatten(request)]

    def gauge_points(self) -> list[Point]:
        return [point for point in self.points() if point.kind == "gauge"]


def _retry_trailer(answer: Answer) -> tuple[tuple[str, bytes], ...]:
    if answer.retry_delay_s is None or answer.code is None:
        return ()
    delay = Duration()
    delay.FromNanoseconds(int(answer.retry_delay_s * 1e9))
    detail = AnyProto()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status = status_pb2.Status(code=answer.code.value[0], message="retry", details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),)


def flatten(request: ExportMetricsServiceRequest) -> list[Point]:
    points: list[Point] = []
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                assert kind is not None
                for point in getattr(metric, kind).data_points:
                    value: Any
                    if kind == "histogram":
                        value = point
                    else:
                        value = getattr(point, point.WhichOneof("value"))
                    points.append(
                        Point(
                            resource,
                            metric.name,
                            metric.unit,
                            kind,
                            attributes(point.attributes),
                            value,
                            point.time_unix_nano,
                        )
                    )
    return points


def attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        kind = pair.value.WhichOneof("value")
        found[pair.key] = getattr(pair.value, kind) if kind else None
    return found


@asynccontextmanager
async def running_receiver(
    receiver: OtlpReceiver | None = None, tls: grpc.ServerCredentials | None = None
) -> AsyncIterator[OtlpReceiver]:
    receiver = receiver or OtlpReceiver()
    server = grpc.aio.server()
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    if tls is None:
        receiver.port = server.add_insecure_port("127.0.0.1:0")
    else:
        receiver.port = server.add_secure_port("127.0.0.1:0", tls)
    await server.start()
    try:
        yield receiver
    finally:
        for answer in (*receiver.answers, receiver.default):
            if answer.hold is not None:
                answer.hold.set()
        for hold in receiver.holds:
            hold.set()
        await server.stop(0)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll a cheap in-process condition until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)
