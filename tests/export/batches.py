"""Batches as the collector stores them, for the export tests."""

from __future__ import annotations

from dealerpulse.model import EndpointStat, MetricBatch, Sample, labels_of
from dealerpulse.sketch import DDSketch

LATENCIES_MS = (3.0, 8.0, 12.0, 40.0, 90.0, 180.0, 600.0, 2400.0)


def endpoint_stat(now_ms: int) -> EndpointStat:
    sketch = DDSketch.of(LATENCIES_MS)
    return EndpointStat(
        route="/api/vehicles/{id}",
        method="GET",
        start_ms=now_ms - 10_000,
        end_ms=now_ms,
        count=len(LATENCIES_MS),
        errors=1,
        client_errors=1,
        duration_sum_ms=sum(LATENCIES_MS),
        duration_min_ms=min(LATENCIES_MS),
        duration_max_ms=max(LATENCIES_MS),
        status_counts=((200, 6), (404, 1), (500, 1)),
        latency=sketch.to_model(),
        source="middleware",
    )


def make_batch(
    dealer_id: str, agent_id: str, seq: int, now_ms: int, n_samples: int = 3
) -> MetricBatch:
    return MetricBatch(
        agent_id=agent_id,
        dealer_id=dealer_id,
        seq=seq,
        boot_id="boot-1",
        hostname="dms-01",
        agent_version="0.1.0",
        created_ms=now_ms,
        samples=tuple(
            Sample("cpu.percent", float(seq * 100 + i), "percent", now_ms, labels_of(core=str(i)))
            for i in range(n_samples)
        ),
        endpoints=(endpoint_stat(now_ms),),
    )
