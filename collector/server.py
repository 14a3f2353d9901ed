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
from typing import TYPE_CHECKING, Any

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
from collector.export import ExportStats, MetricExporter, exporter_from_settings
from collector.ingest.service import IngestService
from collector.ingest.stream import StreamConfig
from collector.ingest.timings import WriterTimings
from collector.ingest.validate import DAY_S, Limits
from collector.ingest.writer import BatchWriter, RetryPolicy, WriterStats
from collector.metrics_http import MetricsServer, serve_metrics
from collector.metrics_http import for_server as metrics_for_server
from collector.rollup.jobs import MaintenanceJobs, MaintenanceStats, maintenance_settings
from collector.sentry import init_sentry
from collector.settings import CollectorSettings
from collector.store import open_store
from dealerpulse.clock import Clock, SystemClock
from dealerpulse.config import default_database_url, redact_url
from dealerpulse.redact import redact_secrets_in_logs
from dealerpulse.tls import ServerTls, TlsError, server_credentials
from dealerpulse.v1 import alerts_pb2_grpc, ingest_pb2

if TYPE_CHECKING:
    from reporter.reports.jobs import ReportJobs

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
        exporter: MetricExporter | None = None,
    ) -> None:
        self._store = store
        self._writer_retry = writer_retry
        # Given (tests), or made from the settings at start when an endpoint is set.
        self._exporter = exporter
        self._listen = listen
        self._settings = settings or CollectorSettings()
        self._clock = clock or SystemClock()
        self._writer: BatchWriter | None = None
        self._service: IngestService | None = None
        self._health: HealthServicer | None = None
        self._server: grpc.aio.Server | None = None
        self._alert_jobs: AlertJobs | None = None
        self._maintenance_jobs: MaintenanceJobs | None = None
        self._report_jobs: ReportJobs | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    def writer_stats(self) -> WriterStats:
        if self._writer is None:
            raise RuntimeError("the collector server is not started")
        return self._writer.stats()

    def writer_timings(self) -> WriterTimings:
        if self._writer is None:
            raise RuntimeError("the collector server is not started")
        return self._writer.timings

    def export_stats(self) -> ExportStats:
        if self._exporter is None:
            raise RuntimeError("no metrics export configured (otlp_export_endpoint)")
        return self._exporter.stats()

    def alert_job_stats(self) -> JobStats:
        if self._alert_jobs is None:
            raise RuntimeError("alert jobs are not running (alerting off, or not started)")
        return self._alert_jobs.stats()

    def maintenance_job_stats(self) -> MaintenanceStats:
        if self._maintenance_jobs is None:
            raise RuntimeError("maintenance jobs are not running (run_jobs off, or not started)")
        return self._maintenance_jobs.stats()

    async def start(self) -> int:
        """Bind, start serving, and return the bound port."""
        if self._server is not None:
            raise RuntimeError("CollectorServer.start() called twice")
        settings = self._settings
        # Libraries log what they are given (slack_sdk: the webhook URL at DEBUG).
        redact_secrets_in_logs(
            [settings.slack_webhook_url, settings.slack_bot_token, settings.smtp_password]
        )
        exporter = self._exporter = self._exporter or exporter_from_settings(settings)
        writer = BatchWriter(
            self._store,
            max_queue_samples=settings.max_queue_samples,
            max_group_samples=settings.max_group_samples,
            max_group_delay_s=settings.group_delay_s,
            shards=_writer_shards(settings, self._store),
            clock=self._clock,
            retry=self._writer_retry,
            on_committed=exporter.offer if exporter is not None else None,
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
        # Like the generated registration, with undecodable requests refused cleanly.
        service.add_to_server(server)
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        services = [INGEST_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME]
        if self._add_alerts(server):
            services.append(ALERTS_SERVICE)
        if self._add_otlp(server, writer):
            services.append(OTLP_METRICS_SERVICE)
        reflection.enable_server_reflection(services, server)
        self._port = self._bind(server)
        if exporter is not None:
            await exporter.start()
        writer.start()  # before the first RPC can arrive
        try:
            await server.start()
        except BaseException:
            await writer.drain_and_stop(0.0)
            if exporter is not None:
                await exporter.stop(0.0)
            raise
        serving = ["", INGEST_SERVICE] + [ALERTS_SERVICE] * (ALERTS_SERVICE in services)
        for name in serving:
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._writer, self._service, self._health, self._server = writer, service, health, server
        logger.info("collector ingest listening on %s (port %s)", self._listen, self._port)
        try:
            self._alert_jobs = await self._start_alert_jobs()
            self._maintenance_jobs = await self._start_maintenance_jobs()
            self._report_jobs = await self._start_report_jobs()
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

    async def _start_maintenance_jobs(self) -> MaintenanceJobs | None:
        """Rollups and retention (collector/rollup), in the process that runs jobs."""
        from collector.store import SQLAlchemyMetricStore

        if not self._settings.run_jobs or not isinstance(self._store, SQLAlchemyMetricStore):
            return None
        jobs = MaintenanceJobs(
            self._store.engine, self._clock, maintenance_settings(self._settings)
        )
        await jobs.start()
        return jobs

    async def _start_report_jobs(self) -> ReportJobs | None:
        """Daily/weekly reports (reporter/reports), in the process that runs jobs."""
        from collector.store import SQLAlchemyMetricStore

        settings = self._settings
        if not (settings.reports_enabled and settings.run_jobs):
            return None
        if not isinstance(self._store, SQLAlchemyMetricStore):
            return None
        # Imported here: report rendering brings matplotlib, which ingest does not need.
        from reporter.reports.jobs import report_jobs_from_settings

        jobs = report_jobs_from_settings(self._store.engine, settings, self._clock)
        await jobs.start()
        return jobs

    def _add_alerts(self, server: grpc.aio.Server) -> bool:
        """The Alerts service, when the store is the SQLAlchemy one that holds the rules."""
        from collector.store import SQLAlchemyMetricStore

        if not isinstance(self._store, SQLAlchemyMetricStore):
            return False
        service = AlertsService(
            self._store.engine, self._store, self._clock, self._settings.auth_cache_ttl_s
        )
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
                tls = ServerTls(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
                port = server.add_secure_port(self._listen, server_credentials(tls))
            else:
                port = server.add_insecure_port(self._listen)
        except TlsError as exc:
            raise CollectorError(str(exc)) from exc
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
        maintenance, self._maintenance_jobs = self._maintenance_jobs, None
        if maintenance is not None:
            # Cut short is safe too: chunks commit one by one, rollups are idempotent.
            await maintenance.stop(max(0.0, deadline - loop.time()))
        report_jobs, self._report_jobs = self._report_jobs, None
        if report_jobs is not None:
            # Cut short is safe: an unfilled claim is taken over after its lease.
            await report_jobs.stop(max(0.0, deadline - loop.time()))
        await health.enter_graceful_shutdown()
        service.begin_shutdown()
        drained = await writer.drain_and_stop(deadline - loop.time())
        closed = await service.wait_streams_closed(deadline - loop.time())
        await server.stop(max(0.0, deadline - loop.time()))
        if self._exporter is not None:
            # After the writer: what it committed last is queued for export by now.
            await self._exporter.stop(max(0.0, deadline - loop.time()))
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


def _writer_shards(settings: CollectorSettings, store: MetricStore) -> int:
    """Writer threads: as configured, else two on PostgreSQL and one on SQLite.

    On PostgreSQL one writer leaves the database server idle while it prepares
    the next group and the collector idle while the server works; two let them
    overlap. SQLite takes one writing transaction at a time anyway.
    """
    if settings.writer_shards:
        return settings.writer_shards
    return 2 if getattr(store, "dialect", "") == "postgresql" else 1


def _stream_config(settings: CollectorSettings) -> StreamConfig:
    limits = Limits(
        max_samples=settings.max_batch_samples,
        max_batch_bytes=settings.max_batch_bytes,
        max_future_s=settings.max_future_s,
        retention_s=settings.retention_days * DAY_S,
    )
    return StreamConfig(
        limits=limits,
        max_in_flight=settings.max_in_flight_per_stream,
        idle_timeout_s=settings.stream_idle_timeout_s or None,
        max_series_per_agent=settings.max_series_per_agent,
        dealer_rate_limit=settings.ingest_dealer_rate_limit,
    )


def _server_options(settings: CollectorSettings) -> list[tuple[str, Any]]:
    return [
        # Set explicitly, on every server: a larger message is refused with
        # RESOURCE_EXHAUSTED before it is read into memory.
        ("grpc.max_receive_message_length", settings.max_receive_bytes),
        ("grpc.max_send_message_length", settings.max_receive_bytes),
        # gRPC reuses ports by default: a second collector would share the
        # port silently instead of failing to start. Only a collector's own
        # worker processes share it on purpose.
        ("grpc.so_reuseport", 1 if settings.workers > 1 or settings.reuse_port else 0),
        # Agents keep streams open for days: find dead peers, and accept the
        # agents' own keepalive pings (every 10 s at the most).
        ("grpc.keepalive_time_ms", _ms(settings.keepalive_time_s)),
        ("grpc.keepalive_timeout_ms", _ms(settings.keepalive_timeout_s)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        # A client that connects and never finishes the handshake (a stalled
        # or hostile peer) is dropped instead of holding a connection slot.
        ("grpc.server_handshake_timeout_ms", _ms(settings.handshake_timeout_s)),
        *_connection_age_options(settings),
    ]


def _connection_age_options(settings: CollectorSettings) -> list[tuple[str, Any]]:
    """No connection lives for ever: after its age the server sends GOAWAY, then cuts
    what is still open after the grace (the agents reconnect and resend unacked batches)."""
    if not settings.max_connection_age_s:
        return []
    return [
        ("grpc.max_connection_age_ms", _ms(settings.max_connection_age_s)),
        ("grpc.max_connection_age_grace_ms", _ms(settings.max_connection_age_grace_s)),
    ]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


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
    # Only when SENTRY_DSN is set (sentry-sdk is imported only then).
    init_sentry(os.environ, "collector")
    url = settings.db or default_database_url()
    logger.info("opening store %s", redact_url(url))
    # Opening migrates; the first process does it before any worker starts.
    store = await asyncio.to_thread(open_store, url, pool=settings.pool_settings())
    workers = start_workers(settings)
    metrics: MetricsServer | None = None
    try:
        server = CollectorServer(store, settings.listen, settings, SystemClock())
        await server.start()
        if settings.metrics_listen:
            metrics = serve_metrics(settings.metrics_listen, metrics_for_server(server))
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
        if metrics is not None:
            await asyncio.to_thread(metrics.stop)
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
    # The first process alone serves the collector's /metrics port.
    own = dataclasses.replace(
        settings, workers=1, reuse_port=True, run_jobs=False, metrics_listen=None
    )
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
