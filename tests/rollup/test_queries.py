"""read_analytics over rollups: figures of a known synthetic data set, on both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from collector.rollup.rollups import RollupRunner
from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import from_unix_ms
from dealerpulse.model import EndpointStat, MetricBatch, Sample
from dealerpulse.sketch import DDSketch
from reporter.model import RangeError, TimeRange
from reporter.queries import read_analytics

from .factories import HOUR_MS, MINUTE_MS, NOW, T0, add_dealer, batch, endpoint, sample

RANGE = TimeRange(from_unix_ms(T0), from_unix_ms(T0 + 2 * HOUR_MS))
LEADS = [10.0, 20.0, 30.0, 40.0]


def _minute(dealer: str, index: int, *, probes: bool, skip_cpu: bool = False) -> MetricBatch:
    """Minute ``index`` of two hours: host samples every 10 s, endpoint stats once."""
    start = T0 + index * MINUTE_MS
    second_hour = index >= 60
    points: list[Sample] = []
    for tick in range(6):
        at = start + tick * 10_000
        if not skip_cpu:
            points.append(sample("cpu.percent", 60.0 if second_hour else 40.0, at))
        points += [
            sample("memory.percent", 70.0, at),
            sample("disk.used_percent", 80.0, at, mount="/"),
            sample("memory.used_bytes", 100.0, at, unit="bytes"),
            sample("memory.total_bytes", 200.0, at, unit="bytes"),
        ]
    end = start + 30_000
    stats: list[EndpointStat] = [
        endpoint("/api/leads", end, LEADS, errors=1 if second_hour else 0, last_error=f"e{index}"),
        endpoint("/api/sales", end, [100.0], method="POST"),
    ]
    if probes:
        stats.append(endpoint("/health", end, [1.0], source="probe", errors=int(index % 60 == 0)))
    return batch(dealer, "a1", index + 1, tuple(points), tuple(stats))


def _load(store: SQLAlchemyMetricStore, *, probes: bool, gap: range = range(0)) -> str:
    dealer = add_dealer(store, "acme")
    batches = [_minute(dealer, i, probes=probes, skip_cpu=i in gap) for i in range(120)]
    for first in range(0, len(batches), 40):
        store.write_batches(batches[first : first + 40], NOW)
    RollupRunner(store.engine).run(NOW)
    return dealer


def test_figures_match_the_synthetic_data(store: SQLAlchemyMetricStore) -> None:
    dealer = _load(store, probes=True)
    every = DDSketch.of(LEADS * 120 + [100.0] * 120)

    for step in (timedelta(hours=1), timedelta(minutes=1)):
        data = read_analytics(store.engine, dealer, RANGE, step)
        summary = data.summary
        assert (summary.requests, summary.errors) == (600, 60)
        assert summary.error_rate_percent == pytest.approx(10.0)
        assert summary.avg_ms == pytest.approx(40.0)
        assert summary.peak_ms == 100.0
        assert summary.p50_ms == pytest.approx(every.quantile(0.5))
        assert summary.p95_ms == pytest.approx(every.quantile(0.95))
        assert summary.p99_ms == pytest.approx(every.quantile(0.99))
        assert summary.throughput_per_min == pytest.approx(5.0)
        # Probes: 2 failed checks of 120 (and they are not traffic).
        assert summary.uptime_percent == pytest.approx(100.0 * 118 / 120)

        leads, sales = data.endpoints
        assert (leads.method, leads.route, leads.requests, leads.errors) == (
            "GET",
            "/api/leads",
            480,
            60,
        )
        assert leads.calls_per_hour == pytest.approx(240.0)
        assert leads.avg_ms == pytest.approx(25.0)
        assert leads.peak_ms == 40.0
        assert leads.p95_ms == pytest.approx(DDSketch.of(LEADS * 120).quantile(0.95))
        assert leads.error_rate_percent == pytest.approx(12.5)
        assert leads.last_error == "e119"
        assert (sales.route, sales.requests, sales.p50_ms) == ("/api/sales", 120, 100.0)

    hourly = read_analytics(store.engine, dealer, RANGE, timedelta(hours=1))
    assert [p.value for p in hourly.response_time.points] == [pytest.approx(40.0)] * 2
    assert [p.value for p in hourly.error_rate.points] == [0.0, pytest.approx(20.0)]
    assert [p.value for p in hourly.throughput.points] == [pytest.approx(5.0)] * 2
    assert [p.time for p in hourly.throughput.points] == [
        RANGE.start,
        RANGE.start + timedelta(hours=1),
    ]
    assert [p.value for p in hourly.endpoints[0].error_rate.points] == [0.0, pytest.approx(25.0)]

    resources = {(r.name, tuple(sorted(r.labels.items()))): r for r in hourly.resources}
    cpu = resources[("cpu.percent", ())]
    assert cpu.avg == pytest.approx(50.0)
    assert (cpu.peak, cpu.latest) == (60.0, 60.0)
    assert [p.value for p in cpu.series.points] == [pytest.approx(40.0), pytest.approx(60.0)]
    assert resources[("disk.percent", (("mount", "/"),))].avg == pytest.approx(80.0)
    assert resources[("memory.percent", ())].latest == 70.0
    (used,) = hourly.host["memory.used_bytes"]
    (total,) = hourly.host["memory.total_bytes"]
    assert used.avg == pytest.approx(100.0)
    assert total.latest == 200.0

    everyone = read_analytics(store.engine, None, RANGE, timedelta(hours=1))
    assert everyone.summary.requests == 600 and everyone.dealer_id is None


def test_uptime_from_agent_liveness_and_empty_ranges(store: SQLAlchemyMetricStore) -> None:
    dealer = _load(store, probes=False, gap=range(30, 60))
    data = read_analytics(store.engine, dealer, RANGE, timedelta(minutes=1))
    assert data.summary.uptime_percent == pytest.approx(75.0)

    later = TimeRange(RANGE.end + timedelta(days=1), RANGE.end + timedelta(days=2))
    empty = read_analytics(store.engine, dealer, later)
    assert (empty.summary.requests, empty.summary.avg_ms, empty.summary.p95_ms) == (0, None, None)
    assert empty.summary.uptime_percent is None and empty.endpoints == ()
    assert all(p.value is None for p in empty.throughput.points)
    assert len(empty.throughput.points) == 288  # 24 h at 5 min


@pytest.mark.parametrize(
    ("step", "message"),
    [(timedelta(seconds=90), "whole number of minutes"), (timedelta(minutes=1), "at most")],
)
def test_unservable_steps_are_refused(
    sqlite_store: SQLAlchemyMetricStore, step: timedelta, message: str
) -> None:
    year = TimeRange(NOW - timedelta(days=365), NOW)
    with pytest.raises(RangeError, match=message):
        read_analytics(sqlite_store.engine, "acme", year, step)
