"""Rules on dealer health figures (health.*), evaluated by the engine on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from agent.aggregate import EndpointAggregator, RequestRecord
from collector.alerting.engine import AlertEngine
from collector.alerting.errors import RuleError
from collector.alerting.queries import Subject, observe
from collector.alerting.repository import insert_rule
from collector.alerting.rules import (
    HEALTH_FIGURES,
    Aggregation,
    Comparator,
    Condition,
    Rule,
    Thresholds,
    validate_rule,
)
from collector.health import dealer_health
from collector.store import SQLAlchemyMetricStore
from collector.store.schema import system_alerts
from dealerpulse.clock import FakeClock, to_unix_ms
from dealerpulse.model import EndpointStat

from .factories import DEALER, NOW, add_dealer, batch, sample

WINDOW_S = 300


def health_rule(metric: str, comparator: Comparator, thresholds: Thresholds, **fields: Any) -> Rule:
    condition = Condition(metric, Aggregation.AVG, WINDOW_S, comparator, thresholds)
    return Rule(name=f"watch {metric}", condition=condition, alert_type="health", **fields)


def endpoint_stats(
    requests: list[tuple[str, int, float]], source: str = "middleware", minutes_ago: int = 1
) -> list[EndpointStat]:
    """One interval of (route, status, duration_ms) requests, ending ``minutes_ago`` before NOW."""
    end_ms = to_unix_ms(NOW - timedelta(minutes=minutes_ago))
    start_ms = end_ms - 60_000
    aggregator = EndpointAggregator(
        clock=FakeClock(NOW - timedelta(minutes=minutes_ago + 1)), source=source
    )
    for i, (route, status, duration) in enumerate(requests):
        error = "" if status < 500 else f"HTTP {status}"
        aggregator.record(RequestRecord(route, "GET", status, duration, start_ms + i, error))
    return aggregator.drain(end_ms)


class Setup:
    """A store with a dealer, an engine on a fake clock at NOW, and batch numbering."""

    def __init__(self, store: SQLAlchemyMetricStore) -> None:
        self.store = store
        self.clock = FakeClock(NOW)
        self.engine = AlertEngine(store.engine, self.clock)
        self.seq = 0
        add_dealer(store)

    def write(self, stats: list[EndpointStat], agent_id: str = "agent-1") -> None:
        self.seq += 1
        self.store.write_batches([batch(agent_id, self.seq, endpoints=tuple(stats))], NOW)

    def add_rule(self, rule: Rule) -> None:
        with self.store.engine.begin() as connection:
            insert_rule(connection, rule, NOW)

    def observe(self, rule: Rule) -> dict[Subject, float]:
        with self.store.engine.connect() as connection:
            return observe(connection, validate_rule(rule), self.clock.now())

    def episodes(self) -> list[Any]:
        with self.store.engine.connect() as connection:
            return list(connection.execute(select(system_alerts).order_by(system_alerts.c.id)))


def slow_tail(route: str = "/api/leads") -> list[tuple[str, int, float]]:
    # 94 % fast, 6 % slow: the average stays low, the 95th percentile is slow.
    return [(route, 200, 900.0 if i % 50 < 3 else 50.0) for i in range(1000)]


P95_RULE = health_rule(
    "health.response_time_p95_ms",
    Comparator.GT,
    Thresholds(warning=500, critical=2000, warning_recovery=400),
    for_s=0,
    channels=("slack",),
)


def test_a_slow_tail_fires_the_p95_rule_but_not_the_average_rule(
    store: SQLAlchemyMetricStore,
) -> None:
    setup = Setup(store)
    setup.write(endpoint_stats(slow_tail()))
    setup.add_rule(P95_RULE)
    avg_rule = dataclasses.replace(
        P95_RULE,
        name="avg",
        condition=dataclasses.replace(P95_RULE.condition, metric="health.response_time_avg_ms"),
    )
    setup.add_rule(avg_rule)
    report = setup.engine.tick()
    assert report.opened == 1
    (episode,) = setup.episodes()
    assert (episode.dealer_id, episode.severity, episode.resolved) == (DEALER, "warning", False)
    assert episode.value == pytest.approx(900.0, rel=0.01)  # the sketch's 1 %
    assert setup.observe(avg_rule)[Subject(DEALER, "")] == pytest.approx(
        (60 * 900 + 940 * 50) / 1000
    )


def test_the_figures_are_the_health_apis_own(store: SQLAlchemyMetricStore) -> None:
    setup = Setup(store)
    setup.write(endpoint_stats([*slow_tail("/a"), ("/b", 503, 10.0), ("/b", 200, 30.0)]))
    start, end = NOW - timedelta(seconds=WINDOW_S), NOW
    health = dealer_health(store, DEALER, start, end)
    expected = {
        "health.response_time_avg_ms": health.avg_ms,
        "health.response_time_p50_ms": health.p50_ms,
        "health.response_time_p95_ms": health.p95_ms,
        "health.response_time_p99_ms": health.p99_ms,
        "health.error_rate_percent": health.error_rate_percent,
        "health.throughput_rpm": health.throughput_per_min,
    }
    for metric, value in expected.items():
        rule = health_rule(metric, Comparator.GT, Thresholds(warning=1))
        assert setup.observe(rule) == {Subject(DEALER, ""): value}, metric
    assert expected["health.throughput_rpm"] == pytest.approx(1002 / 5)
    assert expected["health.error_rate_percent"] == pytest.approx(100 / 1002)


def test_a_route_matcher_watches_one_endpoint(store: SQLAlchemyMetricStore) -> None:
    setup = Setup(store)
    setup.write(endpoint_stats([*slow_tail("/slow"), *[("/fast", 200, 20.0)] * 500]))
    fast = dataclasses.replace(P95_RULE, name="fast", label_matchers=(("route", "/fast"),))
    slow = dataclasses.replace(P95_RULE, name="slow", label_matchers=(("route", "/slow"),))
    setup.add_rule(fast)
    setup.add_rule(slow)
    setup.engine.tick()
    (episode,) = setup.episodes()
    assert episode.labels == {"route": "/slow"}
    assert setup.observe(fast)[Subject(DEALER, "", (("route", "/fast"),))] == pytest.approx(
        20.0, rel=0.01
    )


def probe_checks(failed: int, passed: int) -> list[EndpointStat]:
    checks = [("probe:home", 599, 1.0)] * failed + [("probe:home", 200, 5.0)] * passed
    return endpoint_stats(checks, source="probe")


UPTIME_RULE = health_rule(
    "health.uptime_percent",
    Comparator.LT,
    Thresholds(warning=99.9, critical=99.0),
    for_s=30,
    channels=("slack",),
)


def test_uptime_below_the_threshold_fires_after_for_s(store: SQLAlchemyMetricStore) -> None:
    setup = Setup(store)
    setup.write(probe_checks(failed=2, passed=98))  # 98 % up
    setup.add_rule(UPTIME_RULE)
    setup.engine.tick()
    assert setup.episodes() == []  # pending
    setup.clock.advance(30)
    setup.engine.tick()
    (episode,) = setup.episodes()
    assert (episode.severity, episode.value) == ("critical", pytest.approx(98.0))


def test_uptime_at_the_threshold_does_not_fire(store: SQLAlchemyMetricStore) -> None:
    setup = Setup(store)
    setup.write(probe_checks(failed=1, passed=999))  # 99.9 % up: not below 99.9
    setup.add_rule(dataclasses.replace(UPTIME_RULE, for_s=0))
    setup.engine.tick()
    assert setup.episodes() == []
    assert setup.observe(UPTIME_RULE) == {Subject(DEALER, ""): pytest.approx(99.9)}


def test_uptime_without_probes_comes_from_agent_liveness(store: SQLAlchemyMetricStore) -> None:
    setup = Setup(store)
    # One cpu.percent sample every 10 s for the last 2 of the 5 minutes: 40 % covered.
    start_ms = to_unix_ms(NOW - timedelta(minutes=2))
    points = tuple(sample("cpu.percent", 10.0, start_ms + i * 10_000) for i in range(12))
    store.write_batches([batch(seq=1, samples=points)], NOW)
    assert setup.observe(UPTIME_RULE) == {Subject(DEALER, ""): pytest.approx(40.0)}
    # An endpoint's uptime needs its probe: the agent being alive says nothing of it.
    one_route = dataclasses.replace(UPTIME_RULE, label_matchers=(("route", "probe:home"),))
    assert setup.observe(one_route) == {}


def test_no_data_is_no_value_so_nothing_fires(store: SQLAlchemyMetricStore) -> None:
    setup = Setup(store)
    add_dealer(store, "quiet-cars")
    setup.write(endpoint_stats([("/x", 200, 10.0)]))
    for metric in HEALTH_FIGURES:
        rule = health_rule(metric, Comparator.LT, Thresholds(warning=1e9))
        assert Subject("quiet-cars", "") not in setup.observe(rule), metric
    one_dealer = dataclasses.replace(P95_RULE, dealer_id="quiet-cars")
    assert setup.observe(one_dealer) == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metric": "health.latency_ms"}, "metric: 'health.latency_ms' is not a health figure"),
        ({"aggregation": Aggregation.MAX}, "aggregation: health.response_time_p95_ms is one"),
    ],
)
def test_validation_names_what_is_wrong(change: dict[str, Any], message: str) -> None:
    rule = dataclasses.replace(
        P95_RULE, condition=dataclasses.replace(P95_RULE.condition, **change)
    )
    with pytest.raises(RuleError, match=message):
        validate_rule(rule)


def test_validation_refuses_a_label_health_cannot_match() -> None:
    with pytest.raises(RuleError, match=r"label_matchers: .* not 'mount'"):
        validate_rule(dataclasses.replace(P95_RULE, label_matchers=(("mount", "/"),)))
    for key in ("route", "endpoint", "method"):
        validate_rule(dataclasses.replace(P95_RULE, label_matchers=((key, "x"),)))
