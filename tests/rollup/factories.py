"""Builders for the rollup tests: dealers, batches with honest digests, raw aggregates."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text

from collector.abc import MetricStore
from dealerpulse.clock import to_unix_ms
from dealerpulse.model import EndpointStat, MetricBatch, Sample, labels_of
from dealerpulse.sketch import DDSketch

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW_MS = to_unix_ms(NOW)
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
# Two hours before NOW, on an hour boundary.
T0 = NOW_MS - 2 * HOUR_MS


def add_dealer(store: MetricStore, dealer_id: str) -> str:
    store.create_dealer(dealer_id, dealer_id.title(), f"hash-{dealer_id}", NOW)
    return dealer_id


def sample(name: str, value: float, time_ms: int, unit: str = "percent", **labels: str) -> Sample:
    return Sample(name=name, value=value, unit=unit, time_ms=time_ms, labels=labels_of(**labels))


def endpoint(
    route: str,
    end_ms: int,
    latencies: Iterable[float],
    *,
    errors: int = 0,
    method: str = "GET",
    source: str = "",
    last_error: str = "",
) -> EndpointStat:
    values = list(latencies)
    sketch = DDSketch.of(values) if values else None
    return EndpointStat(
        route=route,
        method=method,
        start_ms=end_ms - 10_000,
        end_ms=end_ms,
        count=len(values),
        errors=errors,
        duration_sum_ms=sum(values),
        duration_min_ms=min(values, default=0.0),
        duration_max_ms=max(values, default=0.0),
        last_error=last_error if errors else "",
        last_error_ms=end_ms - 1 if errors else 0,
        latency=sketch.to_model() if sketch is not None else None,
        source=source,
    )


def batch(
    dealer_id: str,
    agent_id: str,
    seq: int,
    samples: tuple[Sample, ...] = (),
    endpoints: tuple[EndpointStat, ...] = (),
) -> MetricBatch:
    built = MetricBatch(
        agent_id=agent_id,
        dealer_id=dealer_id,
        seq=seq,
        boot_id="boot",
        hostname=f"host-{agent_id}",
        agent_version="test",
        created_ms=T0,
        samples=samples,
        endpoints=endpoints,
    )
    content = dataclasses.replace(built, digest=b"")
    return dataclasses.replace(built, digest=hashlib.sha256(repr(content).encode()).digest())


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(text(sql), params))


def raw_aggregates(
    engine: Engine, agent_id: str, size_ms: int
) -> dict[tuple[int, int], tuple[Any, ...]]:
    """(series_id, bucket) -> (count, sum, min, max, last) straight from the samples."""
    found: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for row in rows(
        engine,
        "SELECT p.series_id, p.time_ms, p.value FROM samples p JOIN series s ON s.id = p.series_id "
        "WHERE s.agent_id = :agent",
        agent=agent_id,
    ):
        bucket = row.time_ms - row.time_ms % size_ms
        found.setdefault((row.series_id, bucket), []).append((row.time_ms, row.value))
    result = {}
    for key, points in found.items():
        values = [v for _, v in points]
        newest = max(t for t, _ in points)
        last = max(v for t, v in points if t == newest)
        result[key] = (len(values), sum(values), min(values), max(values), last)
    return result


def rollup_aggregates(
    engine: Engine, table: str, agent_id: str
) -> dict[tuple[int, int], tuple[Any, ...]]:
    return {
        (row.series_id, row.bucket_ms): (
            row.value_count,
            row.value_sum,
            row.value_min,
            row.value_max,
            row.value_last,
        )
        for row in rows(
            engine,
            f"SELECT * FROM {table} WHERE series_id IN "
            "(SELECT id FROM series WHERE agent_id = :agent)",
            agent=agent_id,
        )
    }
