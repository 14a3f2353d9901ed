"""The lean real-time read answers what the store-wide health read answers.

GetRealtime reads its health through reporter.queries.health (the columns
health needs, one connection); collector.health.dealer_health reads the same
rows through the store. On data with every case health treats apart (probes,
rows without a sketch or without requests, two sketch accuracies, errors whose
last-error times tie, late rows written after newer ones, a second agent,
another dealer, rows just outside the window) both must give the same
DealerHealth and the same newest samples, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime, timedelta

from sqlalchemy import update

from collector.health import HealthThresholds, dealer_health
from collector.store import SQLAlchemyMetricStore
from collector.store.schema import api_performance
from dealerpulse.clock import FakeClock, to_unix_ms
from dealerpulse.model import EndpointStat, MetricBatch, Sample
from dealerpulse.sketch import DDSketch
from reporter.core import SNAPSHOT_METRICS, ReporterCore, resource_snapshot
from reporter.queries.health import read_realtime
from reporter.settings import CacheTtls, ReporterSettings

from .factories import ACME, NOW, ZENITH, add_dealers, sample

START = NOW - timedelta(minutes=5)
THRESHOLDS = HealthThresholds(response_time_ms=150.0, error_rate_percent=1.0)


def _stat(
    route: str,
    end: datetime,
    values: list[float],
    *,
    errors: int = 0,
    error_at: datetime | None = None,
    source: str = "middleware",
    accuracy: float = 0.01,
    with_sketch: bool = True,
    method: str = "GET",
) -> EndpointStat:
    sketch = DDSketch(accuracy)
    for value in values:
        sketch.add(value)
    end_ms = to_unix_ms(end)
    return EndpointStat(
        route=route,
        method=method,
        start_ms=end_ms - 10_000,
        end_ms=end_ms,
        count=len(values),
        errors=errors,
        client_errors=errors // 2,
        duration_sum_ms=sum(values),
        duration_min_ms=min(values, default=0.0),
        duration_max_ms=max(values, default=0.0),
        status_counts=((200, len(values) - errors), (503, errors)),
        last_error=f"HTTP 503 on {route} at {end:%H:%M:%S}" if errors else "",
        last_error_ms=to_unix_ms(error_at or end) - 1 if errors else 0,
        latency=sketch.to_model() if with_sketch and values else None,
        source=source,
    )


def _batch(
    dealer_id: str,
    agent: str,
    seq: int,
    stats: tuple[EndpointStat, ...],
    samples: tuple[Sample, ...],
) -> MetricBatch:
    agent_id, created_ms = f"{dealer_id}-{agent}", to_unix_ms(NOW)
    built = MetricBatch(agent_id, dealer_id, seq, "boot", agent, "test", created_ms, samples, stats)
    digest = hashlib.sha256(repr(dataclasses.replace(built, digest=b"")).encode()).digest()
    return dataclasses.replace(built, digest=digest)


def _host(at: datetime, cpu: float) -> tuple[Sample, ...]:
    return (
        sample("cpu.percent", cpu, at),
        sample("cpu.core.percent", 99.0, at, core="0"),
        sample("memory.percent", 64.0, at),
        sample("disk.used_percent", 81.0, at, mount="/"),
        sample("net.sent_percent", 4.0, at, nic="eth0"),
    )


def _values(step: int, k: int) -> list[float]:
    return [0.5 + (step * 37 + i * 11 * k) % 450 + i / 7 for i in range(5 + (step + k) % 9)]


def _fill(store: SQLAlchemyMetricStore) -> None:
    add_dealers(store)
    batches: list[MetricBatch] = []
    # Every 10 s over the window and a minute either side, in an order that makes
    # the two oldest minutes late: written last, their rows have the highest ids.
    for seq, step in enumerate([*range(12, 42), *range(12)], start=1):
        end = START - timedelta(minutes=1) + timedelta(seconds=10 * step)
        stats = (
            _stat("/orders", end, _values(step, 1), errors=int(step % 5 == 0)),
            _stat("/parts", end, _values(step, 2), method="POST", with_sketch=step % 4 != 0),
            # The same last-error time on two rows of one endpoint: the later row wins.
            _stat("/leads", end, _values(step, 3), errors=step % 3, error_at=NOW - timedelta(1)),
            _stat("/quiet", end, []),  # no requests
            # The first accuracy in time order (a late row's) gives the percentiles.
            _stat("/slow", end, _values(step, 4), accuracy=0.02 if step in (6, 25) else 0.01),
            _stat("/health", end, [3.0, 4.0], errors=int(step % 7 == 0), source="probe"),
        )
        batches.append(_batch(ACME, "dms-1", seq, stats, _host(end, 20.0 + step)))
        if step % 3 == 0:  # a second agent, less often
            batches.append(_batch(ACME, "dms-2", seq, stats[:2], _host(end, 55.0)))
        batches.append(_batch(ZENITH, "dms-1", seq, stats[:1], _host(end, 90.0)))
    for first in range(0, len(batches), 40):
        store.write_batches(batches[first : first + 40], NOW)


def test_the_lean_read_gives_the_health_and_samples_the_store_read_gives(
    store: SQLAlchemyMetricStore,
) -> None:
    _fill(store)

    read = read_realtime(store.engine, ACME, START, NOW, THRESHOLDS, SNAPSHOT_METRICS)

    assert read is not None
    expected = dealer_health(store, ACME, START, NOW, THRESHOLDS)
    assert read.health == expected
    assert read.latest == store.latest_samples(ACME, SNAPSHOT_METRICS)
    # The data exercises what it is meant to: traffic, probes, errors, sketches.
    assert expected.requests > 0 and expected.p95_ms is not None
    assert expected.uptime_source == "probes" and expected.errors > 0
    assert {e.route for e in expected.endpoints} == {
        "/orders",
        "/parts",
        "/leads",
        "/quiet",
        "/slow",
        "/health",
    }


def test_get_realtime_answers_from_the_lean_read(store: SQLAlchemyMetricStore) -> None:
    _fill(store)
    settings = ReporterSettings(ttls=CacheTtls(realtime_s=0), thresholds=THRESHOLDS)
    core = ReporterCore(store, FakeClock(NOW), settings)

    realtime = core.realtime(ACME)

    assert realtime.health == dealer_health(store, ACME, START, NOW, THRESHOLDS)
    assert realtime.resources == resource_snapshot(store.latest_samples(ACME, SNAPSHOT_METRICS))
    assert read_realtime(store.engine, "nobody", START, NOW, THRESHOLDS, SNAPSHOT_METRICS) is None


def test_a_corrupt_stored_sketch_leaves_the_row_counted(store: SQLAlchemyMetricStore) -> None:
    _fill(store)
    with store.engine.begin() as connection:
        connection.execute(
            update(api_performance)
            .where(api_performance.c.endpoint == "/orders")
            .values(latency_sketch={"ra": 0.01, "offset": 0, "bins": [1, "x"], "zero": 0})
        )

    read = read_realtime(store.engine, ACME, START, NOW, THRESHOLDS, SNAPSHOT_METRICS)

    assert read is not None
    orders = next(e for e in read.health.endpoints if e.route == "/orders")
    assert orders.requests > 0 and orders.p95_ms is None
    assert read.health.p95_ms is not None  # the other endpoints' sketches still merge


def test_agent_uptime_counts_the_whole_host_cpu_series_only(store: SQLAlchemyMetricStore) -> None:
    add_dealers(store)
    batches = []
    # A whole-host CPU sample every 20 s, and a per-core one (a labelled cpu.percent
    # series) 5 s after each: counted as liveness, it would halve the median spacing.
    for seq, step in enumerate(range(0, 30, 2), start=1):
        at = START + timedelta(seconds=10 * step)
        samples = (
            sample("cpu.percent", 30.0, at),
            sample("cpu.percent", 99.0, at + timedelta(seconds=5), core="0"),
            sample("memory.percent", 50.0, at),
        )
        batches.append(_batch(ZENITH, "dms-1", seq, (), samples))
    store.write_batches(batches, NOW)

    read = read_realtime(store.engine, ZENITH, START, NOW, THRESHOLDS, SNAPSHOT_METRICS)

    assert read is not None
    expected = dealer_health(store, ZENITH, START, NOW, THRESHOLDS)
    assert read.health == expected
    assert expected.uptime_source == "agent" and expected.uptime_percent is not None


def test_a_dealer_without_agents_exists_and_has_no_figures(store: SQLAlchemyMetricStore) -> None:
    add_dealers(store)  # registered, nothing sent yet

    read = read_realtime(store.engine, ACME, START, NOW, THRESHOLDS, SNAPSHOT_METRICS)

    assert read is not None
    assert read.health == dealer_health(store, ACME, START, NOW, THRESHOLDS)
    assert read.latest == []
