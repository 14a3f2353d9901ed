"""Recomputing the rollups of one agent over a range of minutes.

Idempotent by construction: the 1-minute rows of the range are deleted and
computed again from the raw rows (samples, api_performance), then the hours
that contain the range are deleted and computed again from the 1-minute rows,
and (endpoint statistics only) the UTC days from the hours.
Running it twice, or after late data arrived, gives what one run over all the
data would give. Sample aggregates are computed in SQL (INSERT ... SELECT);
endpoint statistics in Python, because their latency sketches are merged.

A raw row counts in the minute that holds its time: ``samples.time_ms``, and
the interval end (``timestamp``) of an api_performance row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, select, text

from collector.health import PROBE_SOURCE
from collector.rollup.bins import Bins, bins_from_json, decode, encode, merge_all
from collector.store.schema import (
    api_performance,
    endpoint_rollup_1d,
    endpoint_rollup_1h,
    endpoint_rollup_1m,
)
from dealerpulse.clock import from_unix_ms, to_unix_ms

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
# Source, method and endpoint of the row per agent and bucket that holds all
# its traffic but probes: one sketch per bucket for dealer-wide percentiles.
ALL_TRAFFIC = "*"


@dataclass(frozen=True, slots=True)
class AgentRange:
    """Minutes [start_ms, end_ms) of one agent, minute-aligned."""

    agent_id: str
    dealer_id: str
    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.start_ms % MINUTE_MS or self.end_ms % MINUTE_MS or self.end_ms <= self.start_ms:
            raise ValueError(
                f"rollup range [{self.start_ms}, {self.end_ms}) must be whole minutes, non-empty"
            )

    @property
    def hours(self) -> tuple[int, int]:
        """The whole hours that contain the range."""
        return _widened(self.start_ms, self.end_ms, HOUR_MS)

    @property
    def days(self) -> tuple[int, int]:
        """The whole UTC days that contain the range."""
        return _widened(self.start_ms, self.end_ms, DAY_MS)


def _widened(start_ms: int, end_ms: int, size_ms: int) -> tuple[int, int]:
    return start_ms - start_ms % size_ms, -(-end_ms // size_ms) * size_ms


@dataclass(slots=True)
class RecomputeCounts:
    samples: int = 0
    endpoint_rows: int = 0
    minute_rows: int = 0
    hour_rows: int = 0
    day_rows: int = 0

    def add(self, other: RecomputeCounts) -> None:
        self.samples += other.samples
        self.endpoint_rows += other.endpoint_rows
        self.minute_rows += other.minute_rows
        self.hour_rows += other.hour_rows
        self.day_rows += other.day_rows


# ---- samples, in SQL

_AGENT_SERIES = "SELECT id FROM series WHERE agent_id = :agent"

# The newest value of a bucket: the sample at its newest time (the largest
# value if a resend put two there), found through (series_id, time_ms).
_SAMPLES_TO_MINUTES = f"""
INSERT INTO metric_rollup_1m
    (series_id, bucket_ms, value_count, value_sum, value_min, value_max, value_last)
SELECT g.series_id, g.bucket_ms, g.n, g.total, g.low, g.high,
    (SELECT max(p.value) FROM samples p WHERE p.series_id = g.series_id AND p.time_ms = g.last_ms)
FROM (
    SELECT series_id, time_ms - time_ms % {MINUTE_MS} AS bucket_ms, count(*) AS n,
        sum(value) AS total, min(value) AS low, max(value) AS high, max(time_ms) AS last_ms
    FROM samples
    WHERE series_id IN ({_AGENT_SERIES}) AND time_ms >= :start AND time_ms < :end
    GROUP BY series_id, time_ms - time_ms % {MINUTE_MS}
) g
"""

_MINUTES_TO_HOURS = f"""
INSERT INTO metric_rollup_1h
    (series_id, bucket_ms, value_count, value_sum, value_min, value_max, value_last)
SELECT g.series_id, g.bucket_ms, g.n, g.total, g.low, g.high,
    (SELECT m.value_last FROM metric_rollup_1m m
     WHERE m.series_id = g.series_id AND m.bucket_ms = g.last_bucket)
FROM (
    SELECT series_id, bucket_ms - bucket_ms % {HOUR_MS} AS bucket_ms, sum(value_count) AS n,
        sum(value_sum) AS total, min(value_min) AS low, max(value_max) AS high,
        max(bucket_ms) AS last_bucket
    FROM metric_rollup_1m
    WHERE series_id IN ({_AGENT_SERIES}) AND bucket_ms >= :start AND bucket_ms < :end
    GROUP BY series_id, bucket_ms - bucket_ms % {HOUR_MS}
) g
"""


def _delete_metric_rows(
    connection: Connection, table: str, agent: str, start: int, end: int
) -> None:
    connection.execute(
        text(
            f"DELETE FROM {table} WHERE series_id IN ({_AGENT_SERIES}) "
            "AND bucket_ms >= :start AND bucket_ms < :end"
        ),
        {"agent": agent, "start": start, "end": end},
    )


def recompute_metrics(connection: Connection, work: AgentRange) -> RecomputeCounts:
    params = {"agent": work.agent_id, "start": work.start_ms, "end": work.end_ms}
    _delete_metric_rows(connection, "metric_rollup_1m", work.agent_id, work.start_ms, work.end_ms)
    minutes = connection.execute(text(_SAMPLES_TO_MINUTES), params).rowcount
    hour_start, hour_end = work.hours
    _delete_metric_rows(connection, "metric_rollup_1h", work.agent_id, hour_start, hour_end)
    hours = connection.execute(
        text(_MINUTES_TO_HOURS), {"agent": work.agent_id, "start": hour_start, "end": hour_end}
    ).rowcount
    # The samples behind the new minutes: what "rows rolled up" measures.
    counted = connection.execute(
        text(
            "SELECT coalesce(sum(value_count), 0) FROM metric_rollup_1m "
            f"WHERE series_id IN ({_AGENT_SERIES}) AND bucket_ms >= :start AND bucket_ms < :end"
        ),
        params,
    ).scalar_one()
    return RecomputeCounts(samples=int(counted), minute_rows=minutes, hour_rows=hours)


# ---- endpoint statistics, in Python (sketches)

EndpointKey = tuple[str, str, str, int]
"""(source, method, endpoint, bucket_ms)."""


@dataclass(slots=True)
class EndpointTotals:
    """Sums of endpoint statistics; min/max only over parts that had requests."""

    requests: int = 0
    errors: int = 0
    client_errors: int = 0
    duration_sum_ms: float = 0.0
    duration_min_ms: float | None = None
    duration_max_ms: float | None = None
    last_error: str = ""
    last_error_ms: int | None = None
    sketches: list[Bins] = field(default_factory=list)

    def add(
        self,
        requests: int,
        errors: int,
        client_errors: int,
        duration: tuple[float, float, float],
        last_error: tuple[str, int | None],
        sketch: Bins | None,
    ) -> None:
        total_ms, lowest_ms, highest_ms = duration
        self.requests += requests
        self.errors += errors
        self.client_errors += client_errors
        self.duration_sum_ms += total_ms
        if requests:
            self.duration_min_ms = _smaller(self.duration_min_ms, lowest_ms)
            self.duration_max_ms = _larger(self.duration_max_ms, highest_ms)
        message, at_ms = last_error
        if (
            errors
            and at_ms is not None
            and (self.last_error_ms is None or at_ms >= self.last_error_ms)
        ):
            self.last_error, self.last_error_ms = message, at_ms
        if sketch is not None:
            self.sketches.append(sketch)

    def row(self, dealer_id: str, agent_id: str, key: EndpointKey) -> dict[str, Any]:
        source, method, endpoint, bucket_ms = key
        merged = merge_all(self.sketches)
        return {
            "dealer_id": dealer_id,
            "bucket_ms": bucket_ms,
            "agent_id": agent_id,
            "source": source,
            "method": method,
            "endpoint": endpoint,
            "request_count": self.requests,
            "error_count": self.errors,
            "client_error_count": self.client_errors,
            "duration_sum_ms": self.duration_sum_ms,
            "duration_min_ms": self.duration_min_ms or 0.0,
            "duration_max_ms": self.duration_max_ms or 0.0,
            "latency_sketch": encode(merged) if merged is not None else None,
            "last_error": self.last_error,
            "last_error_ms": self.last_error_ms,
        }


def _smaller(current: float | None, value: float) -> float:
    return value if current is None else min(current, value)


def _larger(current: float | None, value: float) -> float:
    return value if current is None else max(current, value)


def _raw_endpoint_totals(
    connection: Connection, work: AgentRange
) -> tuple[dict[EndpointKey, EndpointTotals], int]:
    """The agent's api_performance rows of the range summed per minute, and how many."""
    a = api_performance.c
    query = select(
        a.timestamp,
        a.source,
        a.method,
        a.endpoint,
        a.request_count,
        a.error_count,
        a.client_error_count,
        a.duration_sum_ms,
        a.duration_min_ms,
        a.duration_max_ms,
        a.last_error,
        a.last_error_at,
        a.latency_sketch,
    ).where(
        a.dealer_id == work.dealer_id,
        a.timestamp >= from_unix_ms(work.start_ms),
        a.timestamp < from_unix_ms(work.end_ms),
        a.agent_id == work.agent_id,
    )
    totals: dict[EndpointKey, EndpointTotals] = {}
    count = 0
    for row in connection.execute(query):
        count += 1
        at_ms = to_unix_ms(row.timestamp)
        minute = at_ms - at_ms % MINUTE_MS
        keys = [(row.source, row.method, row.endpoint, minute)]
        if row.source != PROBE_SOURCE:
            keys.append((ALL_TRAFFIC, ALL_TRAFFIC, ALL_TRAFFIC, minute))
        sketch = bins_from_json(row.latency_sketch) if row.latency_sketch is not None else None
        for key in keys:
            totals.setdefault(key, EndpointTotals()).add(
                row.request_count,
                row.error_count,
                row.client_error_count,
                (row.duration_sum_ms, row.duration_min_ms, row.duration_max_ms),
                (row.last_error, to_unix_ms(row.last_error_at) if row.last_error_at else None),
                sketch,
            )
    return totals, count


def _coarser_totals(
    connection: Connection, table: Table, work: AgentRange, span: tuple[int, int], size_ms: int
) -> dict[EndpointKey, EndpointTotals]:
    """The agent's rows of ``table`` in ``span`` summed per bucket of ``size_ms``."""
    m = table.c
    query = select(table).where(
        m.dealer_id == work.dealer_id,
        m.bucket_ms >= span[0],
        m.bucket_ms < span[1],
        m.agent_id == work.agent_id,
    )
    totals: dict[EndpointKey, EndpointTotals] = {}
    for row in connection.execute(query):
        key = (row.source, row.method, row.endpoint, row.bucket_ms - row.bucket_ms % size_ms)
        totals.setdefault(key, EndpointTotals()).add(
            row.request_count,
            row.error_count,
            row.client_error_count,
            (row.duration_sum_ms, row.duration_min_ms, row.duration_max_ms),
            (row.last_error, row.last_error_ms),
            decode(bytes(row.latency_sketch)) if row.latency_sketch is not None else None,
        )
    return totals


def _replace_endpoint_rows(
    connection: Connection,
    table: Table,
    work: AgentRange,
    span: tuple[int, int],
    totals: dict[EndpointKey, EndpointTotals],
) -> int:
    c = table.c
    connection.execute(
        delete(table).where(
            and_(
                c.dealer_id == work.dealer_id,
                c.bucket_ms >= span[0],
                c.bucket_ms < span[1],
                c.agent_id == work.agent_id,
            )
        )
    )
    rows = [t.row(work.dealer_id, work.agent_id, key) for key, t in sorted(totals.items())]
    if rows:
        connection.execute(table.insert(), rows)
    return len(rows)


def recompute_endpoints(connection: Connection, work: AgentRange) -> RecomputeCounts:
    raw, read = _raw_endpoint_totals(connection, work)
    minutes = _replace_endpoint_rows(
        connection, endpoint_rollup_1m, work, (work.start_ms, work.end_ms), raw
    )
    hours, days = work.hours, work.days
    hourly = _coarser_totals(connection, endpoint_rollup_1m, work, hours, HOUR_MS)
    hour_rows = _replace_endpoint_rows(connection, endpoint_rollup_1h, work, hours, hourly)
    daily = _coarser_totals(connection, endpoint_rollup_1h, work, days, DAY_MS)
    day_rows = _replace_endpoint_rows(connection, endpoint_rollup_1d, work, days, daily)
    return RecomputeCounts(
        endpoint_rows=read,
        minute_rows=minutes,
        hour_rows=hour_rows,
        day_rows=day_rows,
    )


def recompute(connection: Connection, work: AgentRange) -> RecomputeCounts:
    """Replace the agent's rollups of ``work`` (and of the hours around it)."""
    counts = recompute_metrics(connection, work)
    counts.add(recompute_endpoints(connection, work))
    return counts


def ranges_of(
    marks: Iterable[tuple[str, str, int]], max_span_ms: int = HOUR_MS, max_gap_ms: int = 0
) -> list[AgentRange]:
    """Group (agent_id, dealer_id, minute) marks into ranges of at most ``max_span_ms``.

    Minutes closer than ``max_gap_ms`` join one range: recomputing a clean
    minute is harmless, and one statement for a run beats one per minute.
    """
    by_agent: dict[tuple[str, str], list[int]] = {}
    for agent_id, dealer_id, minute in marks:
        by_agent.setdefault((agent_id, dealer_id), []).append(minute)
    ranges: list[AgentRange] = []
    for (agent_id, dealer_id), minutes in sorted(by_agent.items()):
        ordered: Sequence[int] = sorted(set(minutes))
        start = end = ordered[0]
        for minute in ordered[1:]:
            gap = minute - end - MINUTE_MS
            if gap > max_gap_ms or minute + MINUTE_MS - start > max_span_ms:
                ranges.append(AgentRange(agent_id, dealer_id, start, end + MINUTE_MS))
                start = minute
            end = minute
        ranges.append(AgentRange(agent_id, dealer_id, start, end + MINUTE_MS))
    return ranges
