"""OtlpGrpcExporter: stored batches to an OTLP/gRPC MetricsService, in the background.

The writer thread hands committed batches to :meth:`OtlpGrpcExporter.offer`,
which only appends to a bounded queue (dropping the oldest when full, see
:mod:`collector.export.queue`) and, at most once per wake-up, schedules the
sender on the event loop with ``call_soon_threadsafe``: a slow or dead
endpoint costs ingest nothing but a lock and an append.

One asyncio task sends, one request at a time, each holding whole batches up
to ``max_points_per_request`` data points (at least one batch), with a
per-request deadline and the retries of :mod:`collector.export.retry`.
Headers are sent as gRPC metadata and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Sequence
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceStub

from collector.export.abc import ExportError, ExportStats, MetricExporter
from collector.export.encode import encode_request, points_of
from collector.export.queue import DropOldestQueue
from collector.export.retry import ExportRetry, is_retryable, retry_hint_s
from collector.export.settings import ExportSettings
from dealerpulse.model import MetricBatch

logger = logging.getLogger(__name__)

# Receivers commonly refuse messages above 4 MiB; 8192 points stay far below.
DEFAULT_MAX_POINTS_PER_REQUEST = 8192


class OtlpGrpcExporter(MetricExporter):
    def __init__(
        self,
        settings: ExportSettings,
        *,
        retry: ExportRetry | None = None,
        max_points_per_request: int = DEFAULT_MAX_POINTS_PER_REQUEST,
        rng: random.Random | None = None,
    ) -> None:
        if max_points_per_request < 1:
            raise ValueError(f"max_points_per_request must be >= 1, got {max_points_per_request}")
        self._settings = settings
        self._retry = retry or ExportRetry()
        self._max_points = max_points_per_request
        self._rng = rng or random.Random()
        self._queue: DropOldestQueue[MetricBatch] = DropOldestQueue(settings.queue_batches)
        # Guards the counters and the queue together, so a snapshot always adds up.
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self._in_flight = 0
        self._last_error = ""
        self._closed = False
        self._closing = False
        self._wake_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._export: Any = None

    @property
    def settings(self) -> ExportSettings:
        return self._settings

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("OtlpGrpcExporter.start() called twice")
        self._channel = _open_channel(self._settings, self._retry)
        # The generated stub carries no type hints.
        self._export = MetricsServiceStub(self._channel).Export  # type: ignore[no-untyped-call]
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="dealerpulse-otlp-export")
        self._wake.set()  # anything offered before start
        logger.info(
            "exporting stored metrics to %s over OTLP/gRPC (%s)",
            self._settings.target,
            "plain text" if self._settings.insecure else "TLS",
        )

    def offer(self, batches: Sequence[MetricBatch]) -> None:
        if not batches:
            return
        try:
            self._enqueue(batches)
        except Exception:  # the writer thread must never be hurt by the exporter
            logger.exception("queueing %s batches for export failed", len(batches))

    def _enqueue(self, batches: Sequence[MetricBatch]) -> None:
        with self._lock:
            self._counts["offered"] += len(batches)
            if self._closed:
                self._counts["dropped_at_shutdown"] += len(batches)
                return
            dropped = self._queue.put_all(batches)
            self._counts["dropped_queue_full"] += dropped
            loop = self._loop if not self._wake_scheduled else None
            self._wake_scheduled = self._wake_scheduled or loop is not None
        if dropped:
            logger.debug("export queue full: dropped the %s oldest batches", dropped)
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody sends any more
                loop.call_soon_threadsafe(self._on_wake)

    def _on_wake(self) -> None:
        with self._lock:
            self._wake_scheduled = False
        self._wake.set()

    async def stop(self, timeout_s: float) -> bool:
        task = self._task
        flushed = True
        if task is not None:
            self._closing = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), max(0.0, timeout_s))
            except TimeoutError:
                flushed = False
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with self._lock:
            self._closed = True
            abandoned = self._in_flight + self._queue.clear()
            self._counts["dropped_at_shutdown"] += abandoned
            self._in_flight = 0
        if abandoned:
            logger.warning("export stopped with %s batches not sent (dropped)", abandoned)
        if self._channel is not None:
            await self._channel.close(None)
        return flushed and not abandoned

    def stats(self) -> ExportStats:
        with self._lock:
            return ExportStats(
                **self._counts,
                queued=len(self._queue),
                in_flight=self._in_flight,
                last_error=self._last_error,
            )

    # ---- the sender task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while group := self._take():
                try:
                    await self._send(group)
                except Exception as exc:  # a bug must not end exporting for good
                    logger.exception("exporting %s batches failed unexpectedly", len(group))
                    self._settle(group, failed=True, error=repr(exc))
            if self._closing:
                return

    def _take(self) -> list[MetricBatch]:
        with self._lock:
            group = self._queue.take(points_of, self._max_points)
            self._in_flight = len(group)
        return group

    async def _send(self, group: list[MetricBatch]) -> None:
        # Encoding thousands of points takes tens of milliseconds: not on the
        # event loop, which also answers the agents' streams.
        request = await asyncio.to_thread(encode_request, group)
        for attempt in range(1, self._retry.attempts + 1):
            self._count("requests")
            try:
                response = await self._call(request)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                error = f"{code.name}: {exc.details()}"
                self._note_error(error)
                if not is_retryable(code) or attempt == self._retry.attempts:
                    logger.warning(
                        "export of %s batches to %s failed after %s attempts: %s",
                        len(group),
                        self._settings.target,
                        attempt,
                        error,
                    )
                    self._settle(group, failed=True, error=error)
                    return
                hint_s = retry_hint_s(exc.trailing_metadata())
                delay_s = self._retry.delay_s(attempt, hint_s, self._rng)
                logger.debug(
                    "export attempt %s failed (%s); retrying in %.2f s", attempt, error, delay_s
                )
                self._count("retries")
                await asyncio.sleep(delay_s)
                continue
            self._settle(group, failed=False, response=response)
            return

    async def _call(self, request: ExportMetricsServiceRequest) -> ExportMetricsServiceResponse:
        response: ExportMetricsServiceResponse = await self._export(
            request, timeout=self._settings.timeout_s, metadata=self._settings.headers
        )
        return response

    def _settle(
        self,
        group: list[MetricBatch],
        *,
        failed: bool,
        error: str = "",
        response: ExportMetricsServiceResponse | None = None,
    ) -> None:
        rejected = response.partial_success.rejected_data_points if response is not None else 0
        if rejected:
            logger.warning(
                "the export endpoint rejected %s data points: %s",
                rejected,
                response.partial_success.error_message if response is not None else "",
            )
        with self._lock:
            self._in_flight = 0
            if failed:
                self._counts["failed"] += len(group)
                self._last_error = error or self._last_error
                return
            self._counts["exported"] += len(group)
            self._counts["exported_points"] += sum(points_of(batch) for batch in group)
            self._counts["rejected_points"] += rejected

    def _note_error(self, error: str) -> None:
        with self._lock:
            self._last_error = error

    def _count(self, counter: str) -> None:
        with self._lock:
            self._counts[counter] += 1


_COUNTERS = (
    "offered",
    "exported",
    "dropped_queue_full",
    "failed",
    "dropped_at_shutdown",
    "exported_points",
    "rejected_points",
    "requests",
    "retries",
)


def _open_channel(settings: ExportSettings, retry: ExportRetry) -> grpc.aio.Channel:
    # Reconnect about as patiently as we retry: grpc's own default waits up to 120 s.
    options = [
        ("grpc.initial_reconnect_backoff_ms", max(10, int(retry.base_delay_s * 1000))),
        ("grpc.max_reconnect_backoff_ms", max(10, int(retry.max_delay_s * 1000))),
    ]
    if settings.insecure:
        return grpc.aio.insecure_channel(settings.target, options)
    try:
        roots = settings.ca_file.read_bytes() if settings.ca_file is not None else None
    except OSError as exc:
        raise ExportError(f"otlp_export_ca_file: cannot read {settings.ca_file}: {exc}") from exc
    return grpc.aio.secure_channel(settings.target, grpc.ssl_channel_credentials(roots), options)
