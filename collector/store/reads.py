"""Read queries of the store. Each takes an open connection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, func, select

from collector.abc import AgentRecord, GapRecord, LatestSample, StoredSample
from collector.store.records import EndpointRecord, agent_record, endpoint_record, gap_record
from collector.store.schema import (
    agents,
    api_performance,
    ingest_batches,
    ingest_gaps,
    samples,
    series,
    series_latest,
)
from collector.store.series import labels_from_json
from dealerpulse.clock import from_unix_ms, to_unix_ms
from dealerpulse.model import Labels


def list_agents(connection: Connection, dealer_id: str | None) -> list[AgentRecord]:
    query = select(agents).order_by(agents.c.dealer_id, agents.c.agent_id)
    if dealer_id is not None:
        query = query.where(agents.c.dealer_id == dealer_id)
    return [agent_record(row) for row in connection.execute(query)]


def latest_samples(
    connection: Connection, dealer_id: str | None, names: Sequence[str] | None
) -> list[LatestSample]:
    query = (
        select(
            series.c.dealer_id,
            series.c.agent_id,
            series.c.name,
            series.c.labels,
            series.c.unit,
            series_latest.c.value,
            series_latest.c.time_ms,
            series_latest.c.received_ms,
        )
        .join(series_latest, series_latest.c.series_id == series.c.id)
        .order_by(series.c.dealer_id, series.c.agent_id, series.c.name, series.c.labels_key)
    )
    if dealer_id is not None:
        query = query.where(series.c.dealer_id == dealer_id)
    if names is not None:
        query = query.where(series.c.name.in_(list(names)))
    return [
        LatestSample(
            dealer_id=row.dealer_id,
            agent_id=row.agent_id,
            name=row.name,
            labels=labels_from_json(row.labels),
            unit=row.unit,
            value=row.value,
            time=from_unix_ms(row.time_ms),
            received_at=from_unix_ms(row.received_ms),
        )
        for row in connection.execute(query)
    ]


def query_samples(
    connection: Connection,
    dealer_id: str,
    name: str,
    start: datetime,
    end: datetime,
    agent_id: str | None,
) -> list[StoredSample]:
    # Series first (a handful), then their points through (series_id, time_ms).
    series_query = select(series.c.id, series.c.labels, series.c.unit).where(
        series.c.dealer_id == dealer_id, series.c.name == name
    )
    if agent_id is not None:
        series_query = series_query.where(series.c.agent_id == agent_id)
    described: dict[int, tuple[Labels, str]] = {
        row.id: (labels_from_json(row.labels), row.unit) for row in connection.execute(series_query)
    }
    if not described:
        return []
    points = (
        select(samples.c.series_id, samples.c.time_ms, samples.c.value)
        .where(
            samples.c.series_id.in_(sorted(described)),
            samples.c.time_ms >= to_unix_ms(start),
            samples.c.time_ms < to_unix_ms(end),
        )
        .order_by(samples.c.time_ms, samples.c.series_id, samples.c.id)
    )
    result: list[StoredSample] = []
    for row in connection.execute(points):
        labels, unit = described[row.series_id]
        result.append(
            StoredSample(
                name=name, labels=labels, unit=unit, value=row.value, time=from_unix_ms(row.time_ms)
            )
        )
    return result


def count_samples(connection: Connection, agent_id: str) -> int:
    own_series = select(series.c.id).where(series.c.agent_id == agent_id)
    query = select(func.count()).select_from(samples).where(samples.c.series_id.in_(own_series))
    return int(connection.scalar(query) or 0)


def committed_batches(connection: Connection, agent_id: str) -> dict[int, int]:
    query = select(ingest_batches.c.seq, ingest_batches.c.samples).where(
        ingest_batches.c.agent_id == agent_id
    )
    return {row.seq: row.samples for row in connection.execute(query)}


def list_gaps(connection: Connection, dealer_id: str | None) -> list[GapRecord]:
    query = select(ingest_gaps).order_by(
        ingest_gaps.c.dealer_id, ingest_gaps.c.agent_id, ingest_gaps.c.first_seq
    )
    if dealer_id is not None:
        query = query.where(ingest_gaps.c.dealer_id == dealer_id)
    return [gap_record(row) for row in connection.execute(query)]


def endpoint_stats(
    connection: Connection,
    dealer_id: str,
    start: datetime,
    end: datetime,
    agent_id: str | None,
) -> list[EndpointRecord]:
    query = (
        select(api_performance)
        .where(
            api_performance.c.dealer_id == dealer_id,
            api_performance.c.timestamp >= start,
            api_performance.c.timestamp < end,
        )
        .order_by(api_performance.c.timestamp, api_performance.c.id)
    )
    if agent_id is not None:
        query = query.where(api_performance.c.agent_id == agent_id)
    return [endpoint_record(row) for row in connection.execute(query)]
