"""The reporter's analytics, read from the rollup tables (never from raw rows).

:func:`read_analytics` answers "dealer X (or every dealer) over a range, per
step" with two queries: one on the endpoint rollups, one on the metric
rollups joined to their series. Steps that are whole hours read the 1-hour
rollups, other steps (whole minutes) the 1-minute rollups.

Semantics, matching :mod:`collector.health` where both answer:

- Buckets are aligned on the step (UTC epoch multiples); the range is widened
  to whole steps at its start, so the first point may hold up to one step
  of data before ``range.start``. Data newer than the last rollup run (at
  most ``rollup_interval_s``, 60 s by default) is not seen yet.
- Traffic figures leave out synthetic checks (source ``probe``); uptime comes
  from the probes when there are any, else from agent liveness: how much of
  the range the unlabelled ``cpu.percent`` samples cover, any agent counting.
- Percentiles come from the merged latency sketches (within the sketches'
  relative accuracy, 1 %, of the exact values).
- ``None`` means no data; a step without endpoint rows has no throughput
  point rather than a 0.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, Engine, select

from collector.store.schema import dealers
from reporter.model import AnalyticsData, TimeRange, step_for
from reporter.queries.hosts import (
    HOST_METRICS,
    RESOURCE_METRICS,
    liveness_uptime,
    read_metrics,
    resources_of,
)
from reporter.queries.traffic import read_endpoints
from reporter.queries.window import MAX_POINTS, gc_paused, series_of, window_of

__all__ = ["HOST_METRICS", "MAX_POINTS", "RESOURCE_METRICS", "read_analytics", "window_of"]


def read_analytics(
    engine: Engine, dealer_id: str | None, time_range: TimeRange, step: timedelta | None = None
) -> AnalyticsData:
    """Analytics of one dealer (``None``: every dealer together) over ``time_range``."""
    with gc_paused():
        return _read_analytics(engine, dealer_id, time_range, step or step_for(time_range.duration))


def _read_analytics(
    engine: Engine, dealer_id: str | None, time_range: TimeRange, step: timedelta
) -> AnalyticsData:
    window = window_of(time_range, step)
    with engine.connect() as connection:
        dealer_ids = [dealer_id] if dealer_id is not None else _all_dealers(connection)
        traffic = read_endpoints(connection, dealer_ids, window)
        metrics = read_metrics(connection, dealer_id, window)
    uptime = traffic.probe_uptime()
    if uptime is None:
        uptime = liveness_uptime(metrics, window)
    resources, host = resources_of(metrics, window, per_agent=dealer_id is not None)
    return AnalyticsData(
        dealer_id=dealer_id,
        range=time_range,
        step=step,
        summary=traffic.summary(uptime),
        endpoints=traffic.endpoints(step),
        response_time=series_of(
            "response_time.avg_ms", "ms", step, window, traffic.step_values("avg")
        ),
        response_time_p95=series_of("response_time.p95_ms", "ms", step, window, traffic.step_p95),
        error_rate=series_of(
            "error_rate.percent", "percent", step, window, traffic.step_values("error_rate")
        ),
        throughput=series_of(
            "throughput.per_min",
            "requests_per_minute",
            step,
            window,
            traffic.step_values("per_min"),
        ),
        resources=resources,
        host=host,
    )


def _all_dealers(connection: Connection) -> list[str]:
    return list(connection.scalars(select(dealers.c.dealer_id).order_by(dealers.c.dealer_id)))
