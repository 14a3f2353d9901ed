"""The collector's gRPC server: Ingest, health and reflection, with a graceful stop."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
from collections.abc import Mapping
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from sqlalchemy import Engine

from collector.abc import MetricStore
from collector.alerting.channels import notifiers_from_settings
from collector.alerting.engine import EngineSettings
from collector.alerting.jobs import AlertJobs, JobSettings, JobStats
from collector.alerting.policy import FollowUpPolicy
from collector.alerting.rules import builtin_rules
from collector.alerting.service import ALERTS_SERVICE, AlertsService
from collector.ingest.service import IngestService
from collector.ingest.stream import StreamConfig
from collector.ingest.validate import DAY_S, Limits
from collector.ingest.writer import BatchWriter, RetryPolicy, WriterStats
from collector.settings import CollectorSettings
from collector.store import open_store
from dealerpulse.clock import Clock, SystemClock
from dealerpulse.config import default_database_url, redact_url
from dealerpulse.v1 import alerts_pb2_grpc, ingest_pb2, ingest_pb2_grpc

logger = logging.getLogger(__name__)

INGEST_SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
OTLP_METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"


class CollectorError(Exception):
    """The collector server cannot start (address in use, unreadable TLS files...)."""


class CollectorServer:
    def __init__(
        self,
        store: MetricStore,
        listen: str = "127.0.0.1:0",
        settings: CollectorSettings | None = None,
        clock: Clock | None = None,
        *,
        writer_retry: RetryPolicy | None = None,
    ) -> None:
        self._store = store
        self._writer_retry = writer_retry
        self._listen = listen
        self._settings = settings or CollectorSettings()
        self._clock = clock or SystemClock()
        self._writer: BatchWriter | None = None
        self._service: IngestService | None = None
        self._health: HealthServicer | None = None
        self._server: grpc.aio.Server | None = None
        self._alert_jobs: AlertJobs | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    def writer_stats(self) -> WriterStats:
        if self._writer is None:
            raise RuntimeError("the collector server is not started")
        return self._writer.stats()

    def alert_job_stats(self) -> JobStats:
        if self._alert_jobs is None:
            raise RuntimeError("alert jobs are not running (alerting off, or not started)")
        return self._alert_jobs.stats()

    async def start(self) -> int:
        """Bind, start serving, and return the bound port."""
        if self._server is not None:
            raise RuntimeError("CollectorServer.start() called twice")
        settings = self._settings
        writer = BatchWriter(
            self._store,
            max_queue_samples=settings.max_queue_samples,
            max_group_samples=settings.max_group_samples,
            max_group_delay_s=settings.group_delay_s,
            clock=self._clock,
            retry=self._writer_retry,
        )
        service = IngestService(
            self._store,
            writer,
            clock=self._clock,
            config=_stream_config(settings),
            auth_ttl_s=settings.auth_cache_ttl_s,
        )
        health = HealthServicer()
        server = grpc.aio.server(options=_server_options(settings))
        # The generated registration function carries no type hints.
        ingest_pb2_grpc.add_IngestServicer_to_server(service, server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        services = [INGEST_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME]
        if self._add_alerts(server):
            services.append(ALERTS_SERVICE)
        if self._add_otlp(server, writer):
            services.append(OTLP_METRICS_SERVICE)
        reflection.enable_server_reflection(services, server)
        self._port = self._bind(server)
        writer.start()  # before the first RPC can arrive
        try:
            await server.start()
        except BaseException:
            await writer.drain_and_stop(0.0)
            raise
        serving = ["", INGEST_SERVICE] + [ALERTS_SERVICE] * (ALERTS_SERVICE in services)
        for name in serving:
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._writer, self._service, self._health, self._server = writer, service, health, server
        logger.info("collector ingest listening on %s (port %s)", self._listen, self._port)
        try:
            self._alert_jobs = await self._start_alert_jobs()
        except BaseException:
            await self.stop(0.0)
            raise
        return self._port

    async def _start_alert_jobs(self) -> AlertJobs | None:
        settings = self._settings
        if not (settings.alerting and settings.run_jobs):
            return None
        # Imported here: the SQLAlchemy store is one MetricStore among possible others.
        from collector.store import SQLAlchemyMetricStore

        if not isinstance(self._store, SQLAlchemyMetricStore):
            logger.warning("alerting needs the SQLAlchemy store; alert jobs not started")
            return None
        jobs = _alert_jobs(self._store.engine, settings, self._clock)
        await jobs.start()
        return jobs

    def _add_alerts(self, server: grpc.aio.Server) -> bool:
        """The Alerts service, when the store is the SQLAlchemy one that holds the rules."""
        from collector.store import SQLAlchemyMetricStore

        if not isinstance(self._store, SQLAlchemyMetricStore):
            return False
        service = AlertsService(self._store.engine, self._store, self._clock)
        alerts_pb2_grpc.add_AlertsServicer_to_server(service, server)  # type: ignore[no-untyped-call]
        return True

    def _add_otlp(self, server: grpc.aio.Server, writer: BatchWriter) -> bool:
        """OTLP metrics on the same port; skipped (with a warning) without opentelemetry-proto."""
        try:
            from collector.otlp.service import OtlpMetricsService
        except ImportError as exc:
            logger.warning("OTLP metrics ingest disabled: %s", exc)
            return False
        otlp = OtlpMetricsService(
            self._store,
            writer,
            self._clock,
            auth_ttl_s=self._settings.auth_cache_ttl_s,
            limits=_stream_config(self._settings).limits,
        )
        server.add_generic_rpc_handlers((otlp.handler(),))
        return True

    def _bind(self, server: grpc.aio.Server) -> int:
        settings = self._settings
        try:
            if settings.tls_cert is not None and settings.tls_key is not None:
                root = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
                credentials = grpc.ssl_server_credentials(
                    [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())],
                    root_certificates=root,
                    require_client_auth=root is not None,
                )
                port = server.add_secure_port(self._listen, credentials)
            else:
                port = server.add_insecure_port(self._listen)
        except OSError as exc:
            raise CollectorError(f"cannot read a TLS file: {exc}") from exc
        except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
            raise CollectorError(f"cannot listen on {self._listen}: {exc}") from exc
        if port == 0:
            raise CollectorError(f"cannot listen on {self._listen} (address in use?)")
        return port

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop taking streams, commit and ack what was accepted, then close.

        Streams still open after the drain end with UNAVAILABLE; agents resend
        what was not acked, to this collector after a restart or to another.
        """
        server, service, writer, health = self._server, self._service, self._writer, self._health
        if server is None or service is None or writer is None or health is None:
            return
        self._server = None
        grace_s = self._settings.shutdown_grace_s if grace_s is None else grace_s
        # The grace period is real time spent waiting, not the injected clock.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        jobs, self._alert_jobs = self._alert_jobs, None
        if jobs is not None:
            # A job cut short is safe (its transaction rolls back, a claimed
            # notification comes back after its lease), but finishing is tidier.
            await jobs.stop(max(0.0, deadline - loop.time()))
        await health.enter_graceful_shutdown()
        service.begin_shutdown()
        drained = await writer.drain_and_stop(deadline - loop.time())
        closed = await service.wait_streams_closed(deadline - loop.time())
        await server.stop(max(0.0, deadline - loop.time()))
        logger.info(
            "collector stopped (writer drained: %s, streams closed in time: %s)", drained, closed
        )


def _alert_jobs(engine: Engine, settings: CollectorSettings, clock: Clock) -> AlertJobs:
    notifiers = notifiers_from_settings(settings)
    # New built-ins notify on every configured channel; an operator's later
    # choice of channels for a built-in is kept (sync_builtin_rules).
    rules = builtin_rules(settings.alert_threshold_values(), tuple(sorted(notifiers)))
    return AlertJobs(
        engine,
        clock,
        notifiers,
        rules,
        JobSettings(
            settings.alert_interval_s, settings.dispatch_interval_s, settings.alert_group_wait_s
        ),
        EngineSettings(
            dashboard_url=settings.dashboard_url or "",
            follow_up=FollowUpPolicy(
                repeat_interval_s=settings.alert_repeat_interval_s,
                escalate_after_s=settings.alert_escalate_after_s,
                escalation_channels=settings.alert_escalation_channels,
            ),
        ),
    )


def _stream_config(settings: CollectorSettings) -> StreamConfig:
    limits = Limits(
        max_samples=settings.max_batch_samples,
        max_batch_bytes=settings.max_batch_bytes,
        max_future_s=settings.max_future_s,
        retention_s=settings.retention_days * DAY_S,
    )
    return StreamConfig(limits=limits, max_in_flight=settings.max_in_flight_per_stream)


def _server_options(settings: CollectorSettings) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", settings.max_receive_bytes),
        # gRPC reuses ports by default: a second collector would share the
        # port silently instead of failing to start. Only a collector's own
        # worker processes share it on purpose.
        ("grpc.so_reuseport", 1 if settings.workers > 1 or settings.reuse_port else 0),
        # Agents keep streams open for days: find dead peers, and accept the
        # agents' own keepalive pings (every 10 s at the most).
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ]


async def run_collector(
    settings: CollectorSettings | Mapping[str, Any], stop: asyncio.Event | None = None
) -> None:
    """Open the store, serve until ``stop`` is set -- by default until SIGTERM/SIGINT --
    then shut down gracefully.

    Without ``stop``, a second signal during the shutdown gets Python's default
    handling (a forced exit); what was not acked by then is resent by the agents.
    """
    if not isinstance(settings, CollectorSettings):
        settings = CollectorSettings.from_values(settings)
    url = settings.db or default_database_url()
    logger.info("opening store %s", redact_url(url))
    # Opening migrates; the first process does it before any worker starts.
    store = await asyncio.to_thread(open_store, url)
    workers = start_workers(settings)
    try:
        server = CollectorServer(store, settings.listen, settings, SystemClock())
        await server.start()
        try:
            if stop is None:
                await _wait_for_signal()
            else:
                await stop.wait()
            logger.info("collector shutting down")
        finally:
            await asyncio.gather(
                server.stop(settings.shutdown_grace_s),
                asyncio.to_thread(stop_workers, workers, settings.shutdown_grace_s + 5),
            )
    finally:
        await asyncio.to_thread(store.close)


def start_workers(settings: CollectorSettings) -> list[multiprocessing.process.BaseProcess]:
    """The extra worker processes of ``--workers N`` (this process is the first).

    One Python process decodes, validates and writes under one GIL; workers
    put the other cores to use. Each has its own writer; dedup, series ids and
    agents are resolved in the database, so any worker may take any stream.
    """
    context = multiprocessing.get_context("spawn")
    workers: list[multiprocessing.process.BaseProcess] = []
    for index in range(1, settings.workers):
        worker = context.Process(
            target=_worker_main,
            args=(settings, logging.getLevelName(logging.getLogger().level), os.getpid()),
            name=f"collector-worker-{index}",
            daemon=True,
        )
        worker.start()
        workers.append(worker)
    if workers:
        logger.info("started %s worker processes on %s", len(workers), settings.listen)
    return workers


def stop_workers(workers: list[multiprocessing.process.BaseProcess], timeout_s: float) -> None:
    for worker in workers:
        if worker.pid is not None and worker.is_alive():
            os.kill(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.join(timeout_s)
        if worker.is_alive():
            logger.warning("%s did not stop in %.0f s; killing it", worker.name, timeout_s)
            worker.kill()
            worker.join(5)


def _worker_main(settings: CollectorSettings, log_level: str, parent_pid: int) -> None:
    from dealerpulse import logs

    logs.setup(log_level)
    # A worker is one process of the same collector: it serves, it does not spawn.
    # Scheduled jobs run in the first process only (the database claims would
    # keep extra schedulers harmless, but they would only add contention).
    own = dataclasses.replace(settings, workers=1, reuse_port=True, run_jobs=False)
    asyncio.run(_serve_worker(own, parent_pid))


async def _serve_worker(settings: CollectorSettings, parent_pid: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def watch_parent() -> None:
        # A parent killed with -9 cannot stop us; an orphan must not keep the port.
        while not stop.is_set():
            if os.getppid() != parent_pid:
                logger.warning("collector parent %s is gone; worker stopping", parent_pid)
                stop.set()
            await asyncio.sleep(1.0)

    watcher = asyncio.create_task(watch_parent())
    try:
        await run_collector(settings, stop)
    finally:
        watcher.cancel()


async def _wait_for_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
