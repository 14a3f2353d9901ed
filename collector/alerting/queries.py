"""What the alert engine observes: one aggregate per (dealer, agent, labels) per rule.

Metrics come from series + samples; the API health figures from api_performance:

- ``api.response_time_ms``: avg (request-weighted), max, min of the intervals;
- ``api.error_rate_percent``: server errors per request, in percent;
- ``api.requests_per_s``: requests over the window.

Label matchers ``endpoint`` and ``method`` select api_performance rows.

The ``health.*`` figures (:data:`collector.alerting.rules.HEALTH_FIGURES`) are
computed by :func:`collector.health.dealer_health`, the function the health
API uses, over ``[now - window, now)``: one value per dealer (agent_id ""),
or per endpoint when the rule matches ``route``/``endpoint``/``method``. A
dealer without the data a figure needs (no traffic, no probe, too few
liveness samples) has no value, so such a rule does not fire on missing data.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select

from collector.abc import LatestSample, StoredSample
from collector.alerting.errors import RuleError
from collector.alerting.rules import HEALTH_PREFIX, Aggregation, Rule, check_health_rule
from collector.health import PROBE_SOURCE, DealerHealth, dealer_health, health_range
from collector.store import reads
from collector.store.records import EndpointRecord
from collector.store.schema import agents, api_performance, dealers, samples, series
from collector.store.series import labels_from_json
from dealerpulse.clock import to_unix_ms
from dealerpulse.model import EndpointStat, Labels

HEALTH_METRICS = ("api.response_time_ms", "api.error_rate_percent", "api.requests_per_s")
_API_LABELS = {"endpoint": api_performance.c.endpoint, "method": api_performance.c.method}


@dataclass(frozen=True, slots=True, order=True)
class Subject:
    """What one alert state is about."""

    dealer_id: str
    agent_id: str
    labels: Labels = ()


def observe(connection: Connection, rule: Rule, now: datetime) -> dict[Subject, float]:
    """The rule's aggregate over its window ending at ``now``, per subject with data."""
    if rule.condition.metric in HEALTH_METRICS:
        return _api_health(connection, rule, now)
    if rule.condition.metric.startswith(HEALTH_PREFIX):
        return _health_figures(connection, rule, now)
    return _sample_aggregates(connection, rule, now)


def agent_silence(
    connection: Connection, dealer_id: str | None, now: datetime, heard_since: datetime
) -> dict[Subject, float]:
    """Seconds since each agent was last heard from.

    ``heard_since`` (the engine's start) counts as having heard from every
    agent: after a collector restart, agents get the grace of a full interval.
    """
    query = select(agents.c.dealer_id, agents.c.agent_id, agents.c.last_seen)
    if dealer_id is not None:
        query = query.where(agents.c.dealer_id == dealer_id)
    return {
        Subject(row.dealer_id, row.agent_id): (
            now - max(row.last_seen, heard_since)
        ).total_seconds()
        for row in connection.execute(query)
    }


def _sample_aggregates(connection: Connection, rule: Rule, now: datetime) -> dict[Subject, float]:
    condition = rule.condition
    series_query = select(
        series.c.id, series.c.dealer_id, series.c.agent_id, series.c.labels
    ).where(series.c.name == condition.metric)
    if rule.dealer_id is not None:
        series_query = series_query.where(series.c.dealer_id == rule.dealer_id)
    subjects: dict[int, Subject] = {}
    for row in connection.execute(series_query):
        labels = labels_from_json(row.labels)
        if rule.matches(labels):
            subjects[row.id] = Subject(row.dealer_id, row.agent_id, labels)
    if not subjects:
        return {}
    start_ms = to_unix_ms(now - timedelta(seconds=condition.window_s))
    in_window = (
        samples.c.series_id.in_(sorted(subjects)),
        samples.c.time_ms > start_ms,
        samples.c.time_ms <= to_unix_ms(now),
    )
    if condition.aggregation in (Aggregation.AVG, Aggregation.MAX, Aggregation.MIN):
        aggregate = _sql_aggregate(condition.aggregation, samples.c.value)
        query = (
            select(samples.c.series_id, aggregate).where(*in_window).group_by(samples.c.series_id)
        )
        return {subjects[sid]: float(value) for sid, value in connection.execute(query)}
    points: dict[int, list[tuple[int, float]]] = defaultdict(list)
    ordered = (
        select(samples.c.series_id, samples.c.time_ms, samples.c.value)
        .where(*in_window)
        .order_by(samples.c.series_id, samples.c.time_ms)
    )
    for sid, time_ms, value in connection.execute(ordered):
        points[sid].append((time_ms, value))
    reduce = _p95 if condition.aggregation is Aggregation.P95 else _rate_per_s
    observed = {subjects[sid]: reduce(series_points) for sid, series_points in points.items()}
    return {subject: value for subject, value in observed.items() if value is not None}


def _sql_aggregate(aggregation: Aggregation, column: ColumnElement[float]) -> ColumnElement[Any]:
    if aggregation is Aggregation.AVG:
        return func.avg(column)
    if aggregation is Aggregation.MAX:
        return func.max(column)
    return func.min(column)


def _p95(points: Sequence[tuple[int, float]]) -> float | None:
    values = sorted(value for _, value in points)
    # Nearest rank: the smallest value at or above 95 % of the points.
    return values[max(0, math.ceil(0.95 * len(values)) - 1)]


def _rate_per_s(points: Sequence[tuple[int, float]]) -> float | None:
    """Per-second increase of a counter; a decrease is a reset and counts from zero."""
    if len(points) < 2:
        return None
    increase = 0.0
    for (_, before), (_, after) in pairwise(points):
        increase += after - before if after >= before else after
    elapsed_s = (points[-1][0] - points[0][0]) / 1000
    return increase / elapsed_s if elapsed_s > 0 else None


def _api_health(connection: Connection, rule: Rule, now: datetime) -> dict[Subject, float]:
    condition = rule.condition
    metric, aggregation = condition.metric, condition.aggregation
    supported = {
        "api.response_time_ms": (Aggregation.AVG, Aggregation.MAX, Aggregation.MIN),
        "api.error_rate_percent": (Aggregation.AVG,),
        "api.requests_per_s": (Aggregation.AVG, Aggregation.RATE),
    }[metric]
    if aggregation not in supported:
        names = ", ".join(a.value for a in supported)
        raise RuleError(f"aggregation: {metric} supports {names}, not {aggregation.value}")
    table = api_performance.c
    requests = func.sum(table.request_count)
    figure = {
        ("api.response_time_ms", Aggregation.AVG): func.sum(table.duration_sum_ms) / requests,
        ("api.response_time_ms", Aggregation.MAX): func.max(table.duration_max_ms),
        ("api.response_time_ms", Aggregation.MIN): func.min(table.duration_min_ms),
        ("api.error_rate_percent", Aggregation.AVG): 100.0 * func.sum(table.error_count) / requests,
    }.get((metric, aggregation), requests * 1.0 / condition.window_s)
    query = (
        select(table.dealer_id, table.agent_id, figure)
        .where(
            table.timestamp > now - timedelta(seconds=condition.window_s),
            table.timestamp <= now,
            table.request_count > 0,
        )
        .group_by(table.dealer_id, table.agent_id)
    )
    if rule.dealer_id is not None:
        query = query.where(table.dealer_id == rule.dealer_id)
    for key, value in rule.label_matchers:
        if key not in _API_LABELS:
            raise RuleError(f"label_matchers: {metric} can match endpoint and method, not {key!r}")
        query = query.where(_API_LABELS[key] == value)
    labels = rule.label_matchers
    return {
        Subject(dealer, agent, labels): float(value)
        for dealer, agent, value in connection.execute(query)
        if value is not None
    }


def _traffic_seen(health: DealerHealth) -> bool:
    return any(endpoint.source != PROBE_SOURCE for endpoint in health.endpoints)


# None: the dealer lacks the data for the figure. Throughput is 0 for an idle
# API, but unknown when no endpoint statistics came at all.
_FIGURES: dict[str, Callable[[DealerHealth], float | None]] = {
    "health.response_time_avg_ms": lambda health: health.avg_ms,
    "health.response_time_p50_ms": lambda health: health.p50_ms,
    "health.response_time_p95_ms": lambda health: health.p95_ms,
    "health.response_time_p99_ms": lambda health: health.p99_ms,
    "health.error_rate_percent": lambda health: health.error_rate_percent,
    "health.throughput_rpm": lambda health: (
        health.throughput_per_min if _traffic_seen(health) else None
    ),
    "health.uptime_percent": lambda health: health.uptime_percent,
}


def _health_figures(connection: Connection, rule: Rule, now: datetime) -> dict[Subject, float]:
    check_health_rule(rule)
    figure = _FIGURES[rule.condition.metric]
    start, end = health_range(now, rule.condition.window_s)
    reader = _HealthReader(connection, rule.label_matchers)
    dealer_ids = select(dealers.c.dealer_id).order_by(dealers.c.dealer_id)
    if rule.dealer_id is not None:
        dealer_ids = dealer_ids.where(dealers.c.dealer_id == rule.dealer_id)
    observed: dict[Subject, float] = {}
    for dealer_id in connection.scalars(dealer_ids):
        value = figure(dealer_health(reader, dealer_id, start, end))
        if value is not None:
            observed[Subject(dealer_id, "", rule.label_matchers)] = float(value)
    return observed


class _HealthReader:
    """collector.health.HealthStore over the tick's connection, seeing the rule's endpoints."""

    def __init__(self, connection: Connection, matchers: Labels) -> None:
        self._connection = connection
        self._matchers = matchers

    def query_endpoint_stats(
        self, dealer_id: str, start: datetime, end: datetime, agent_id: str | None = None
    ) -> list[EndpointRecord]:
        records = reads.endpoint_stats(self._connection, dealer_id, start, end, agent_id)
        return [record for record in records if self._selects(record.stat)]

    def query_samples(
        self, dealer_id: str, name: str, start: datetime, end: datetime, agent_id: str | None = None
    ) -> list[StoredSample]:
        # An endpoint's uptime comes from its probe alone: that the agent was
        # alive says nothing about one endpoint.
        if self._matchers:
            return []
        return reads.query_samples(self._connection, dealer_id, name, start, end, agent_id)

    def latest_samples(
        self, dealer_id: str | None = None, names: Sequence[str] | None = None
    ) -> list[LatestSample]:
        # Only the resource status uses these, and no health.* figure is one.
        return []

    def _selects(self, stat: EndpointStat) -> bool:
        fields = {"route": stat.route, "endpoint": stat.route, "method": stat.method}
        return all(fields.get(key) == value for key, value in self._matchers)
