"""The real-time read: a dealer's health and newest samples in one connection, lean.

:func:`collector.health.dealer_health` reads through the store: every column
of each api_performance row, an EndpointStat per row, both JSON documents
decoded (the status counts health never uses), and one pooled connection per
query. GetRealtime reads ~300 such rows a call (5 minutes of 10 endpoints at
10 s), and that read was 60 % of its CPU (bench/realtime.py). Here the same
rows come back with only the columns health needs, straight into
:data:`collector.health.HealthRow` tuples, and every query of the call shares
one connection (and so one snapshot).

Fewer round trips too (each costs ~0.3 ms of CPU in SQLAlchemy and the
driver, a tenth of a call that reads no rows): the dealer's existence and its
agents' first contact come in one query, and the liveness samples in one join
instead of series first and their points after. The cyclic garbage collector
is paused during the read, as for analytics (a few collections a call otherwise).

The answer is the one :func:`~collector.health.dealer_health` gives:
tests/reporter_rpc/test_realtime_read.py compares them on both backends.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from collector.abc import LatestSample, StoredSample
from collector.health import (
    LATEST_METRICS,
    LIVENESS_METRIC,
    DealerHealth,
    HealthRow,
    HealthThresholds,
    health_of_rows,
    monitoring_began,
)
from collector.store import reads
from collector.store.schema import agents, api_performance, dealers, samples, series
from collector.store.series import labels_from_json
from collector.store.sketch import sketch_from_json
from dealerpulse.clock import from_unix_ms, to_unix_ms
from dealerpulse.model import Labels, LatencySketch
from reporter.queries.fetch import fetch_all
from reporter.queries.window import gc_paused

logger = logging.getLogger(__name__)

_API = api_performance.c
# In the order of collector.health.HealthRow's fields (last_error_at, the sketch converted).
_HEALTH_COLUMNS = (
    _API.endpoint,
    _API.method,
    _API.source,
    _API.request_count,
    _API.error_count,
    _API.client_error_count,
    _API.duration_sum_ms,
    _API.duration_min_ms,
    _API.duration_max_ms,
    _API.last_error,
    _API.last_error_at,
    _API.latency_sketch,
)


@dataclass(frozen=True, slots=True)
class RealtimeRead:
    health: DealerHealth
    # The dealer's newest samples of the names asked for (every agent).
    latest: list[LatestSample]


def read_realtime(
    engine: Engine,
    dealer_id: str,
    start: datetime,
    end: datetime,
    thresholds: HealthThresholds | None,
    latest_names: Sequence[str],
) -> RealtimeRead | None:
    """Health over [start, end) and the newest ``latest_names`` samples; None: no such dealer."""
    # As for analytics: the ~300 rows' sketches allocate enough containers to run
    # the cyclic collector a few times a call, over every object of the process.
    with gc_paused():
        with engine.connect() as connection:
            first_seen = agents_first_seen(connection, dealer_id)
            if first_seen is None:
                return None
            rows = health_rows(connection, dealer_id, start, end)
            liveness = host_liveness(connection, dealer_id, start, end)
            names = [*LATEST_METRICS, *latest_names]
            latest = reads.latest_samples(connection, dealer_id, names)
        # The connection goes back to the pool before the sketches are merged.
        health = health_of_rows(
            dealer_id,
            start,
            end,
            rows,
            liveness,
            [s for s in latest if s.name in LATEST_METRICS],
            thresholds,
            monitored_since=monitoring_began(first_seen, liveness),
        )
    wanted = set(latest_names)
    return RealtimeRead(health, [s for s in latest if s.name in wanted])


def health_rows(
    connection: Connection, dealer_id: str, start: datetime, end: datetime
) -> list[HealthRow]:
    """The dealer's api_performance rows whose interval ends in [start, end), oldest
    first (as the store's query_endpoint_stats orders them: health keeps the newest
    last error and the first sketch accuracy it meets)."""
    query = (
        select(*_HEALTH_COLUMNS)
        .where(_API.dealer_id == dealer_id, _API.timestamp >= start, _API.timestamp < end)
        .order_by(_API.timestamp, _API.id)
    )
    return [_health_row(row) for row in fetch_all(connection, query)]


def _health_row(row: Any) -> HealthRow:
    # A row's last error time matters only when it had errors (collector.health).
    errors, last_error_at, sketch = row[4], row[10], row[11]
    return HealthRow(
        row[0],  # endpoint
        row[1],  # method
        row[2],  # source
        row[3],  # request_count
        errors,
        row[5],  # client_error_count
        row[6],  # duration_sum_ms
        row[7],  # duration_min_ms
        row[8],  # duration_max_ms
        row[9],  # last_error
        to_unix_ms(last_error_at) if errors and last_error_at is not None else 0,
        None if sketch is None else _latency_of(sketch),
    )


def _latency_of(document: Any) -> LatencySketch | None:
    """The stored sketch as a model, its bins unchecked: SketchSum.add checks them
    (once: sketch_from_json and SketchSum.add each walked every bin, ~40 % of the
    read's CPU) and refuses a bad one as health refuses any malformed sketch, with a
    warning while the row's counts still count. A document that is not even shaped
    like a sketch is refused here the same way, named by sketch_from_json."""
    if type(document) is dict:
        accuracy = document.get("ra")
        offset = document.get("offset")
        zero = document.get("zero")
        bins = document.get("bins")
        if (
            type(accuracy) is float
            and 0.0 < accuracy < 1.0
            and type(offset) is int
            and type(zero) is int
            and zero >= 0
            and type(bins) is list
        ):
            return LatencySketch(accuracy, offset, tuple(bins), zero)
    try:
        return sketch_from_json(document)
    except ValueError as exc:
        logger.warning("cannot read a stored latency sketch: %s", exc)
        return None


def agents_first_seen(connection: Connection, dealer_id: str) -> list[datetime] | None:
    """When each of the dealer's agents first reported; None when there is no such dealer."""
    query = (
        select(agents.c.first_seen)
        .select_from(dealers)
        .outerjoin(agents, agents.c.dealer_id == dealers.c.dealer_id)
        .where(dealers.c.dealer_id == dealer_id)
    )
    found = list(connection.scalars(query))
    if not found:
        return None
    # A dealer without agents comes back as one row of NULL (the outer join).
    return [seen for seen in found if seen is not None]


def host_liveness(
    connection: Connection, dealer_id: str, start: datetime, end: datetime
) -> list[StoredSample]:
    """The dealer's whole-host liveness samples in [start, end): what
    ``one_agent_liveness(query_samples(..., LIVENESS_METRIC, ...))`` gives, in the
    same order (time, series, id), from one join instead of two queries."""
    query = (
        select(
            samples.c.series_id, samples.c.time_ms, samples.c.value, series.c.labels, series.c.unit
        )
        .join(series, series.c.id == samples.c.series_id)
        .where(
            series.c.dealer_id == dealer_id,
            series.c.name == LIVENESS_METRIC,
            samples.c.time_ms >= to_unix_ms(start),
            samples.c.time_ms < to_unix_ms(end),
        )
        .order_by(samples.c.time_ms, samples.c.series_id, samples.c.id)
    )
    # A series' labels repeat on every row of it: each series' are converted once.
    labels_of: dict[int, Labels] = {}
    liveness = []
    for series_id, time_ms, value, labels_json, unit in connection.execute(query):
        labels = labels_of.get(series_id)
        if labels is None:
            labels = labels_of[series_id] = labels_from_json(labels_json)
        if not labels:  # per-core CPU carries a label: not the host's liveness
            liveness.append(
                StoredSample(
                    name=LIVENESS_METRIC,
                    labels=labels,
                    unit=unit,
                    value=value,
                    time=from_unix_ms(time_ms),
                )
            )
    return liveness
