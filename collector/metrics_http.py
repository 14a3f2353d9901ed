"""The collector's own /metrics (``--metrics-listen``): writer queue, alert job and
maintenance job figures (runs, what the last ones did and how long they took).

Prometheus text exposition from prometheus-client, served on its own small
HTTP server thread, with a registry of its own (never the global one). What
it shows is read at scrape time from :meth:`CollectorServer.writer_stats`
and :meth:`CollectorServer.alert_job_stats`: counts only, no secrets.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.alerting.jobs import DISPATCH_JOB, TICK_JOB, JobStats
from collector.ingest.timings import WriterTimings
from collector.ingest.writer import WriterStats
from collector.rollup.jobs import MaintenanceStats

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class MetricsError(Exception):
    """The metrics server cannot listen where it was told to."""


class StatsSource(Protocol):
    """What :class:`collector.server.CollectorServer` offers."""

    def writer_stats(self) -> WriterStats: ...

    def writer_timings(self) -> WriterTimings: ...

    def alert_job_stats(self) -> JobStats: ...

    def maintenance_job_stats(self) -> MaintenanceStats: ...


def for_server(server: StatsSource) -> CollectorMetrics:
    """The figures of a collector server (no job figures for jobs that do not run)."""
    return CollectorMetrics(
        server.writer_stats,
        _none_when_not_running(server.alert_job_stats),
        _none_when_not_running(server.maintenance_job_stats),
        _none_when_not_running(server.writer_timings),
    )


def _none_when_not_running(figures: Callable[[], _T]) -> Callable[[], _T | None]:
    """``figures``, or None where the server raises RuntimeError (not started, or off)."""

    def read() -> _T | None:
        try:
            return figures()
        except RuntimeError:
            return None

    return read


class CollectorMetrics(Collector):
    """Writer and job figures of one collector process, read at every scrape."""

    def __init__(
        self,
        writer_stats: Callable[[], WriterStats],
        job_stats: Callable[[], JobStats | None],
        maintenance_stats: Callable[[], MaintenanceStats | None] = lambda: None,
        writer_timings: Callable[[], WriterTimings | None] = lambda: None,
    ) -> None:
        self._writer_stats = writer_stats
        self._job_stats = job_stats
        self._maintenance_stats = maintenance_stats
        self._writer_timings = writer_timings

    def collect(self) -> Iterator[Metric]:
        try:
            writer = self._writer_stats()
        except RuntimeError:  # not started yet, or stopping
            return
        yield from _writer_families(writer)
        timings = self._writer_timings()
        if timings is not None:
            yield from timings.collect()
        jobs = self._job_stats()
        if jobs is not None:
            yield from _job_families(jobs)
        maintenance = self._maintenance_stats()
        if maintenance is not None:
            yield from _maintenance_families(maintenance)


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)


def _writer_families(stats: WriterStats) -> Iterator[Metric]:
    prefix = "dealerpulse_writer_"
    yield _gauge(prefix + "queue_batches", "batches waiting for the database", stats.queued_batches)
    yield _gauge(prefix + "queue_samples", "samples waiting for the database", stats.queued_samples)
    yield _counter(prefix + "groups_committed", "transactions committed", stats.groups_committed)
    yield _counter(prefix + "batches_committed", "batches committed", stats.batches_committed)
    yield _counter(prefix + "samples_written", "samples written", stats.samples_written)
    yield _counter(prefix + "groups_failed", "transactions given up", stats.groups_failed)
    yield _counter(
        prefix + "submissions_refused",
        "batches refused because the queue was full (backpressure)",
        stats.submissions_refused,
    )
    yield _gauge(
        prefix + "last_group_batches", "batches in the last transaction", stats.last_group_batches
    )
    yield _gauge(
        prefix + "last_group_latency_seconds",
        "time to write and commit the last transaction (its queue wait not included)",
        stats.last_group_latency_s,
    )


def _job_families(stats: JobStats) -> Iterator[Metric]:
    yield _counter("dealerpulse_alert_ticks", "alert evaluations completed", stats.ticks)
    yield _counter(
        "dealerpulse_notification_dispatches", "outbox dispatch runs completed", stats.dispatches
    )
    yield _counter("dealerpulse_job_failures", "job runs that failed", stats.failures)
    yield from _job_durations(stats)
    tick = stats.last_tick
    if tick is not None:
        family = GaugeMetricFamily(
            "dealerpulse_alert_last_tick", "what the last alert evaluation did", labels=["what"]
        )
        for what in ("rules", "subjects", "opened", "closed", "notifications"):
            family.add_metric([what], float(getattr(tick, what)))
        yield family
    dispatch = stats.last_dispatch
    if dispatch is not None:
        family = GaugeMetricFamily(
            "dealerpulse_notification_last_dispatch",
            "notifications by outcome in the last dispatch run",
            labels=["outcome"],
        )
        for outcome in ("sent", "found_sent", "retrying", "failed", "held", "dropped"):
            family.add_metric([outcome], float(getattr(dispatch, outcome)))
        yield family


def _job_durations(stats: JobStats) -> Iterator[Metric]:
    durations = [
        (job, seconds)
        for job, seconds in ((TICK_JOB, stats.last_tick_s), (DISPATCH_JOB, stats.last_dispatch_s))
        if seconds is not None
    ]
    if not durations:
        return
    family = GaugeMetricFamily(
        "dealerpulse_job_last_duration_seconds",
        "how long the last run of a scheduled job took (failed runs included)",
        labels=["job"],
    )
    for job, seconds in durations:
        family.add_metric([job], seconds)
    yield family


def _maintenance_families(stats: MaintenanceStats) -> Iterator[Metric]:
    prefix = "dealerpulse_maintenance_"
    yield _counter(prefix + "rollup_runs", "rollup job runs completed", stats.rollups)
    yield _counter(prefix + "retention_runs", "retention job runs completed", stats.retentions)
    yield _counter(prefix + "partition_runs", "partition job runs completed", stats.partition_runs)
    yield _counter(prefix + "failures", "maintenance job runs that failed", stats.failures)
    retention = stats.last_retention
    if retention is not None:
        yield _per_table(
            prefix + "last_retention_deleted_rows",
            "rows deleted by the last retention run, per table",
            retention.deleted,
        )
        yield _gauge(
            prefix + "last_retention_dropped_partitions",
            "whole daily partitions dropped by the last retention run",
            retention.partitions_dropped,
        )
    partitions = stats.last_partitions
    if partitions is not None:
        # Rows in DEFAULT mean days without a partition: retention can only delete them row
        # by row, and the partition of their day cannot be attached until they are gone.
        yield _per_table(
            prefix + "default_partition_rows",
            "rows in the DEFAULT partition of a partitioned raw table",
            partitions.default_rows,
        )


def _per_table(name: str, help_text: str, rows: Mapping[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=["table"])
    for table, count in sorted(rows.items()):
        family.add_metric([table], float(count))
    return family


@dataclass
class MetricsServer:
    """A running exposition server; :meth:`stop` ends it."""

    port: int
    _server: WSGIServer
    _thread: threading.Thread

    def stop(self, timeout_s: float = 5.0) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout_s)


def serve_metrics(listen: str, collector: Collector) -> MetricsServer:
    """Serve ``collector``'s figures on ``listen`` (``HOST:PORT``; port 0 picks one)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise MetricsError(f"metrics_listen: must be HOST:PORT, got {listen!r}")
    registry = CollectorRegistry()
    registry.register(collector)
    try:
        server, thread = start_http_server(int(port), host.strip("[]"), registry=registry)
    except OSError as exc:
        raise MetricsError(f"cannot serve metrics on {listen}: {exc}") from exc
    bound = int(server.server_address[1])
    logger.info("collector metrics on http://%s:%s/metrics", host, bound)
    return MetricsServer(bound, server, thread)
