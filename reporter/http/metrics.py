"""The reporter's /metrics: Prometheus text of the system's own health.

Two sources, each in the app's own :class:`CollectorRegistry` (never the
global one, so several apps in one process do not collide):

- :class:`HttpMetrics`: requests and latencies of this HTTP server, labelled
  by route template (bounded cardinality: unknown paths are ``other``);
- :class:`StoreMetrics`: read from the database at scrape time -- ingest
  rates (``ingest_batches`` of the last minute), the spool sizes agents
  report, notification outbox counts by channel and status, open alerts.

The collector process exposes its own writer queue and job figures
(:mod:`collector.metrics_http`). No secrets: only counts, ids and names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from collector.abc import StoreError
from collector.store.engine import translated_errors
from collector.store.schema import agents, ingest_batches, notification_outbox, system_alerts
from dealerpulse.clock import Clock

logger = logging.getLogger(__name__)

INGEST_WINDOW = timedelta(minutes=1)
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "dealerpulse_http_requests",
            "HTTP requests answered by the reporter",
            ("method", "route", "status"),
            registry=registry,
        )
        self.latency = Histogram(
            "dealerpulse_http_request_duration_seconds",
            "time to answer an HTTP request of the reporter",
            ("method", "route"),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


class StoreMetrics(Collector):
    """Figures read from the store on every scrape (a few small aggregate queries)."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._db = engine
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "dealerpulse_store_up", "1 when the store answered this scrape's queries"
        )
        try:
            families = list(self._read())
        except StoreError as exc:
            logger.warning("/metrics: cannot read the store: %s", exc)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families

    def _read(self) -> Iterator[Metric]:
        since = self._clock.now() - INGEST_WINDOW
        with translated_errors("reading figures for /metrics"), self._db.connect() as connection:
            batches, samples = connection.execute(
                select(func.count(), func.coalesce(func.sum(ingest_batches.c.samples), 0)).where(
                    ingest_batches.c.received_at >= since
                )
            ).one()
            spools = connection.execute(
                select(
                    agents.c.dealer_id,
                    agents.c.agent_id,
                    agents.c.spool_bytes,
                    agents.c.spool_batches,
                ).order_by(agents.c.agent_id)
            ).all()
            outbox = connection.execute(
                select(notification_outbox.c.channel, notification_outbox.c.status, func.count())
                .group_by(notification_outbox.c.channel, notification_outbox.c.status)
                .order_by(notification_outbox.c.channel, notification_outbox.c.status)
            ).all()
            firing = connection.execute(
                select(system_alerts.c.severity, func.count())
                .where(system_alerts.c.state == "firing")
                .group_by(system_alerts.c.severity)
            ).all()
        yield _gauge(
            "dealerpulse_ingest_batches_per_minute",
            "batches stored in the last minute (all collectors)",
            [([], float(batches))],
        )
        yield _gauge(
            "dealerpulse_ingest_samples_per_minute",
            "samples stored in the last minute (all collectors)",
            [([], float(samples))],
        )
        labels = ["dealer_id", "agent_id"]
        yield _gauge(
            "dealerpulse_agent_spool_bytes",
            "bytes waiting in an agent's spool, as the agent last reported",
            [([d, a], float(b)) for d, a, b, _ in spools],
            labels,
        )
        yield _gauge(
            "dealerpulse_agent_spool_batches",
            "batches waiting in an agent's spool, as the agent last reported",
            [([d, a], float(n)) for d, a, _, n in spools],
            labels,
        )
        yield _gauge(
            "dealerpulse_notifications",
            "notifications in the outbox by channel and status (pending, sent, failed)",
            [([c, s], float(n)) for c, s, n in outbox],
            ["channel", "status"],
        )
        yield _gauge(
            "dealerpulse_alerts_firing",
            "alert episodes firing now, by severity",
            [([s], float(n)) for s, n in firing],
            ["severity"],
        )


def _gauge(
    name: str,
    documentation: str,
    values: list[tuple[list[str], float]],
    labels: list[str] | None = None,
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels or [])
    for label_values, value in values:
        family.add_metric(label_values, value)
    return family
