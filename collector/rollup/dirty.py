"""Dirty marks: which (agent, minute) pairs received rows since their last rollup.

The batch writer calls :func:`mark_dirty` inside the ingest transaction, so a
committed row always has its mark. An upsert bumps ``generation``; the rollup
job deletes a mark only if its generation is still the one it read, so rows
committed while it worked are rolled up by its next run. A group of batches
usually covers one or two minutes per agent: a handful of rows per group.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from sqlalchemy import Connection

from dealerpulse.columns import SampleTable
from dealerpulse.model import MetricBatch

MINUTE_MS = 60_000
# Sample is a NamedTuple: itemgetter runs in C, a lambda would not.
_TIME_MS = operator.itemgetter(3)


def dirty_minutes(batches: Sequence[MetricBatch]) -> dict[tuple[str, int], str]:
    """(agent_id, minute start in ms) -> dealer_id of everything the batches hold.

    Samples count at their time, endpoint statistics at their interval's end
    (the ``timestamp`` of api_performance).
    """
    marks: dict[tuple[str, int], str] = {}
    for batch in batches:
        samples = batch.samples
        # A columnar batch has its times as a column already.
        times = set(samples.times if isinstance(samples, SampleTable) else map(_TIME_MS, samples))
        times.update(stat.end_ms for stat in batch.endpoints)
        for minute in {t - t % MINUTE_MS for t in times}:
            marks[(batch.agent_id, minute)] = batch.dealer_id
    return marks


# One statement for the whole group on PostgreSQL (SQLAlchemy would send an
# upsert per row); the raw cursor's executemany on SQLite. Rows arrive sorted.
_POSTGRESQL_UPSERT = """
INSERT INTO rollup_dirty (agent_id, bucket_ms, dealer_id, generation)
SELECT a, b, d, 1 FROM unnest(%s::text[], %s::bigint[], %s::text[]) AS u(a, b, d)
ON CONFLICT (agent_id, bucket_ms) DO UPDATE SET generation = rollup_dirty.generation + 1
"""
_SQLITE_UPSERT = """
INSERT INTO rollup_dirty (agent_id, bucket_ms, dealer_id, generation) VALUES (?, ?, ?, 1)
ON CONFLICT (agent_id, bucket_ms) DO UPDATE SET generation = rollup_dirty.generation + 1
"""


def mark_dirty(connection: Connection, batches: Sequence[MetricBatch]) -> None:
    """Record the batches' (agent, minute) marks; call inside the write transaction."""
    marks = dirty_minutes(batches)
    if not marks:
        return
    # Sorted: two writers touching the same marks lock them in one order.
    ordered = sorted(marks.items())
    if connection.dialect.name == "postgresql":
        agents = [agent_id for (agent_id, _), _ in ordered]
        minutes = [minute for (_, minute), _ in ordered]
        dealers = [dealer_id for _, dealer_id in ordered]
        connection.exec_driver_sql(_POSTGRESQL_UPSERT, (agents, minutes, dealers))
    else:
        rows = [(agent_id, minute, dealer_id) for (agent_id, minute), dealer_id in ordered]
        connection.exec_driver_sql(_SQLITE_UPSERT, rows)
