"""/metrics of the reporter and the collector: Prometheus text with the named families."""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from collector.ingest.writer import WriterStats
from collector.metrics_http import CollectorMetrics, for_server, serve_metrics
from collector.rollup.jobs import MaintenanceStats
from collector.rollup.retention import RetentionReport
from collector.server import CollectorServer
from collector.settings import CollectorSettings
from collector.store import SQLAlchemyMetricStore
from collector.store.partitions import PartitionReport
from dealerpulse.clock import FakeClock

from .harness import ACME, SPOOL_BATCHES, SPOOL_BYTES, Client, Tokens

IDLE_WRITER = WriterStats(0, 0, 0, 0, 0, 0, 0, 0, 0.0)


def _families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_reporter_metrics_show_ingest_spool_outbox_and_http(api: Client, tokens: Tokens) -> None:
    assert api.get(f"/api/ai/performance-monitoring?dealerId={ACME}").status == 200
    # Its labels name every dealer: a dealer's token or none is refused.
    assert Client(api.port).get("/metrics").status == 401
    assert Client(api.port, tokens.acme).get("/metrics").status == 403
    answer = Client(api.port, tokens.admin).get("/metrics")
    assert answer.status == 200
    text = answer.body.decode()
    families = _families(text)

    assert families["dealerpulse_store_up"] == [({}, 1.0)]
    # The one stored batch was received at NOW, inside the last minute.
    assert families["dealerpulse_ingest_batches_per_minute"] == [({}, 1.0)]
    assert families["dealerpulse_ingest_samples_per_minute"][0][1] > 0
    spool = {"dealer_id": ACME, "agent_id": "acme-agent-1"}
    assert families["dealerpulse_agent_spool_bytes"] == [(spool, float(SPOOL_BYTES))]
    assert families["dealerpulse_agent_spool_batches"] == [(spool, float(SPOOL_BATCHES))]
    assert "dealerpulse_notifications" in families
    requests = families["dealerpulse_http_requests"]
    route = {"method": "GET", "route": "/api/ai/performance-monitoring", "status": "200"}
    assert (route, 1.0) in [(labels, value) for labels, value in requests]
    assert "dealerpulse_http_request_duration_seconds" in families
    for secret in (tokens.acme, tokens.zenith, tokens.admin):
        assert secret not in text


def test_collector_metrics_show_the_writer_queue(store: SQLAlchemyMetricStore) -> None:
    async def scrape() -> str:
        server = CollectorServer(
            store, "127.0.0.1:0", CollectorSettings(alerting=False, run_jobs=False), FakeClock()
        )
        await server.start()
        metrics = serve_metrics("127.0.0.1:0", for_server(server))
        try:
            url = f"http://127.0.0.1:{metrics.port}/metrics"
            return await asyncio.to_thread(
                lambda: urllib.request.urlopen(url, timeout=10).read().decode()
            )
        finally:
            metrics.stop()
            await server.stop(1.0)

    families = _families(asyncio.run(scrape()))
    assert families["dealerpulse_writer_queue_batches"] == [({}, 0.0)]
    assert "dealerpulse_writer_queue_samples" in families
    assert "dealerpulse_writer_batches_committed" in families
    assert "dealerpulse_writer_last_group_latency_seconds" in families
    for histogram in ("queue_wait_seconds", "commit_seconds", "group_batches"):
        assert "dealerpulse_writer_" + histogram in families
    # Alerting is off in this collector: no job figures rather than zeros.
    assert "dealerpulse_alert_ticks" not in families


def test_metrics_listen_is_an_option_of_the_collector() -> None:
    from collector.settings import COLLECTOR_OPTIONS
    from dealerpulse.config import resolve

    values = resolve(COLLECTOR_OPTIONS, {}, {"DEALERPULSE_METRICS_LISTEN": "127.0.0.1:9464"})
    assert CollectorSettings.from_values(values).metrics_listen == "127.0.0.1:9464"
    assert CollectorSettings.from_values(resolve(COLLECTOR_OPTIONS, {}, {})).metrics_listen is None


def test_collector_metrics_show_what_the_maintenance_jobs_did() -> None:
    stats = MaintenanceStats(
        rollups=4,
        retentions=2,
        partition_runs=3,
        last_retention=RetentionReport(
            deleted={"samples": 5000, "api_performance": 12},
            dropped_partitions=("samples_p20261001", "api_performance_p20261001"),
        ),
        last_partitions=PartitionReport(default_rows={"samples": 7, "api_performance": 0}),
    )
    metrics = serve_metrics(
        "127.0.0.1:0", CollectorMetrics(lambda: IDLE_WRITER, lambda: None, lambda: stats)
    )
    try:
        url = f"http://127.0.0.1:{metrics.port}/metrics"
        families = _families(urllib.request.urlopen(url, timeout=10).read().decode())
    finally:
        metrics.stop()

    prefix = "dealerpulse_maintenance_"
    assert families[prefix + "rollup_runs"] == [({}, 4.0)]
    assert families[prefix + "retention_runs"] == [({}, 2.0)]
    assert families[prefix + "partition_runs"] == [({}, 3.0)]
    assert sorted(families[prefix + "last_retention_deleted_rows"], key=str) == sorted(
        [({"table": "samples"}, 5000.0), ({"table": "api_performance"}, 12.0)], key=str
    )
    assert families[prefix + "last_retention_dropped_partitions"] == [({}, 2.0)]
    assert sorted(families[prefix + "default_partition_rows"], key=str) == sorted(
        [({"table": "samples"}, 7.0), ({"table": "api_performance"}, 0.0)], key=str
    )
