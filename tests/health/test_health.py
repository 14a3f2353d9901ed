"""collector.health: figures and status computed from endpoint statistics and samples."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from alerting.factories import DEALER, add_dealer, batch, sample
from hypothesis import given
from hypothesis import strategies as st

from agent.aggregate import EndpointAggregator, RequestRecord
from collector.abc import LatestSample, StoredSample
from collector.health import (
    HealthThresholds,
    Status,
    compute_health,
    dealer_health,
    liveness_coverage,
)
from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock, to_unix_ms

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
END = START + timedelta(minutes=5)
T0 = to_unix_ms(START)


def stats_of(*records: tuple[str, int, float, str], source: str = "middleware") -> list:  # type: ignore[type-arg]
    aggregator = EndpointAggregator(clock=FakeClock(START), source=source)
    for i, (route, status, duration, error) in enumerate(records):
        aggregator.record(RequestRecord(route, "GET", status, duration, T0 + i, error))
    return aggregator.drain(T0 + 60_000)


def lower_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def test_traffic_figures_match_the_requests() -> None:
    durations = [float(1 + (i * 37) % 400) for i in range(1000)]
    records = [
        ("/a/{id}" if i % 2 else "/b", 500 if i % 100 == 0 else 200, d, "")
        for i, d in enumerate(durations)
    ]
    health = compute_health("d1", START, END, stats_of(*records))

    assert health.requests == 1000
    assert health.errors == 10
    assert health.error_rate_percent == pytest.approx(1.0)
    assert health.throughput_per_min == pytest.approx(200.0)
    assert health.avg_ms == pytest.approx(sum(durations) / 1000)
    for q, got in ((0.5, health.p50_ms), (0.95, health.p95_ms), (0.99, health.p99_ms)):
        assert got == pytest.approx(lower_quantile(durations, q), rel=0.01)
    by_route = {e.route: e for e in health.endpoints}
    assert by_route["/b"].requests == 500
    assert by_route["/b"].errors == 10
    assert by_route["/b"].calls_per_hour == pytest.approx(500 * 12)
    assert by_route["/b"].success_rate_percent == pytest.approx(98.0)
    assert by_route["/b"].last_error == "HTTP 500"
    assert by_route["/a/{id}"].errors == 0
    # 1 % is 10x the 0.1 % threshold: warning up to it, critical only above
    assert health.status is Status.WARNING
    assert any("error rate" in reason for reason in health.reasons)


def test_probes_give_uptime_and_are_kept_out_of_the_traffic_figures() -> None:
    probe = stats_of(
        *[("probe:home", 200, 5.0, "")] * 9, ("probe:home", 599, 1.0, "no answer"), source="probe"
    )
    traffic = stats_of(("/x", 200, 10.0, ""))
    health = compute_health("d1", START, END, [*probe, *traffic])
    assert health.uptime_percent == pytest.approx(90.0)
    assert health.uptime_source == "probes"
    assert health.requests == 1
    assert health.avg_ms == pytest.approx(10.0)
    assert {e.route for e in health.endpoints} == {"probe:home", "/x"}


def test_uptime_falls_back_to_agent_liveness() -> None:
    # Samples every 10 s for the first 4 of 5 minutes: 80 % of the range.
    samples = [
        StoredSample("cpu.percent", (), "%", 1.0, START + timedelta(seconds=10 * i))
        for i in range(24)
    ]
    health = compute_health("d1", START, END, [], samples)
    assert health.uptime_source == "agent"
    assert health.uptime_percent == pytest.approx(80.0)
    assert health.requests == 0
    assert health.p95_ms is None
    assert health.error_rate_percent is None


def test_uptime_counts_from_when_monitoring_began() -> None:
    # An agent first seen one minute before the end, reporting every 10 s since:
    # up all the time it was monitored, not 20 % of a five-minute window.
    began = END - timedelta(minutes=1)
    samples = [
        StoredSample("cpu.percent", (), "%", 1.0, began + timedelta(seconds=10 * i))
        for i in range(6)
    ]
    fresh = compute_health("d1", START, END, [], samples, monitored_since=began)
    assert fresh.uptime_percent == pytest.approx(100.0)
    assert fresh.status is Status.HEALTHY
    # Monitored since before the window: the silent first four minutes count.
    old = compute_health("d1", START, END, [], samples, monitored_since=START - timedelta(days=1))
    assert old.uptime_percent == pytest.approx(20.0)


def test_no_data_means_unknown_not_down() -> None:
    health = compute_health("d1", START, END, [])
    assert health.uptime_percent is None
    assert health.status is Status.HEALTHY
    assert liveness_coverage([T0], T0, T0 + 1000) is None


def test_an_empty_range_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        compute_health("d1", START, START, [])


def test_thresholds_come_from_the_seed_variables() -> None:
    thresholds = HealthThresholds.from_env(
        {"ALERT_THRESHOLD_RESPONSE_TIME": "50", "ALERT_THRESHOLD_CPU": "70"}
    )
    assert thresholds == HealthThresholds(50.0, 0.1, 70.0, 85.0)
    with pytest.raises(ValueError, match="alert_threshold_error_rate"):
        HealthThresholds.from_env({"ALERT_THRESHOLD_ERROR_RATE": "lots"})


@given(
    avg=st.floats(min_value=0.1, max_value=2000),
    threshold=st.floats(min_value=1, max_value=1000),
)
def test_response_time_status_follows_the_threshold(avg: float, threshold: float) -> None:
    health = compute_health(
        "d1", START, END, stats_of(("/x", 200, avg, "")), thresholds=HealthThresholds(threshold)
    )
    expected = (
        Status.CRITICAL
        if avg > 2 * threshold
        else Status.WARNING
        if avg > threshold
        else Status.HEALTHY
    )
    assert health.status is expected


@given(
    errors=st.integers(min_value=0, max_value=200),
    cpu=st.floats(min_value=0, max_value=100),
    memory=st.floats(min_value=0, max_value=100),
)
def test_error_rate_and_resource_status(errors: int, cpu: float, memory: float) -> None:
    records = [("/x", 500 if i < errors else 200, 1.0, "") for i in range(1000)]
    latest = [
        LatestSample("d1", "a", "cpu.percent", (), "%", cpu, END, END),
        LatestSample("d1", "a", "memory.percent", (), "%", memory, END, END),
        # per-core figures do not count
        LatestSample("d1", "a", "cpu.percent", (("core", "0"),), "%", 100.0, END, END),
    ]
    health = compute_health("d1", START, END, stats_of(*records), latest=latest)
    rate = errors / 10  # percent of 1000
    expected = Status.CRITICAL if rate > 1.0 else Status.WARNING if rate > 0.1 else Status.HEALTHY
    assert health.status is expected
    resource = (
        Status.CRITICAL
        if cpu > 90 or memory > 92.5
        else Status.WARNING
        if cpu > 80 or memory > 85
        else Status.HEALTHY
    )
    assert health.resource_status is resource
    assert health.cpu_percent == cpu


def test_a_dealer_whose_agent_started_a_minute_ago_is_fully_up(
    store: SQLAlchemyMetricStore,
) -> None:
    """Through the store: first contact a minute before the end of a five-minute window."""
    add_dealer(store)
    began = END - timedelta(minutes=1)
    points = tuple(
        sample("cpu.percent", 5.0, to_unix_ms(began + timedelta(seconds=10 * i))) for i in range(6)
    )
    store.write_batches([batch("agent-1", 1, samples=points)], began)
    health = dealer_health(store, DEALER, START, END)
    assert health.uptime_source == "agent"
    assert health.uptime_percent == pytest.approx(100.0)
