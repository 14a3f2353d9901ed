"""The retention job: delete expired rows in bounded chunks, each its own transaction.

Ingest never waits long: every chunk deletes at most ``chunk_rows`` rows
found through an index, and commits. Expired means older than:

- ``raw_days`` (METRICS_RETENTION_DAYS): samples, per group of series through
  (series_id, time_ms); api_performance, per dealer through (dealer_id,
  timestamp);
- ``rollup_1m_days``: metric_rollup_1m per group of series, endpoint_rollup_1m
  per dealer (both keys lead with those columns, then bucket_ms);
- ``rollup_1h_days``: the same for the 1-hour tables and the 1-day
  endpoint rollups.

Chunks pick rows by their id (samples, api_performance) or by the row's
physical id (SQLite ``rowid``, PostgreSQL ``ctid``) for the rollup tables,
whose keys are composite.

On PostgreSQL the raw tables are partitioned by day (migration 0008,
:mod:`collector.store.partitions`): first every daily partition whose whole
day is older than the raw cutoff is detached and dropped, which costs the
same for a million rows as for one; the chunked deletes then only find the
rows of the day the cutoff falls in and those in the DEFAULT partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, Table, select, text

from collector.rollup.lock import maintenance_lock
from collector.store.engine import WRITE_OPTION, translated_errors
from collector.store.partitions import RAW_TABLES, PartitionManager, partition_manager
from collector.store.schema import (
    api_performance,
    dealers,
    endpoint_rollup_1d,
    endpoint_rollup_1h,
    endpoint_rollup_1m,
    metric_rollup_1h,
    metric_rollup_1m,
    samples,
    series,
)
from dealerpulse.clock import to_unix_ms

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    raw_days: int = 30
    rollup_1m_days: int = 90
    rollup_1h_days: int = 730
    chunk_rows: int = 5000
    series_per_chunk: int = 200
    # A run stops after this many chunks; the rest goes at the next run.
    max_chunks: int = 10_000

    def __post_init__(self) -> None:
        for name in ("raw_days", "rollup_1m_days", "rollup_1h_days", "chunk_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"retention {name} must be a whole number >= 1, got {value!r}")
        if not self.raw_days <= self.rollup_1m_days <= self.rollup_1h_days:
            raise ValueError(
                "retention must grow with the rollup size: raw "
                f"({self.raw_days} d) <= 1-minute ({self.rollup_1m_days} d) <= "
                f"1-hour ({self.rollup_1h_days} d)"
            )


@dataclass(frozen=True, slots=True)
class RetentionReport:
    skipped: bool = False
    deleted: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    complete: bool = True  # False: max_chunks reached, more is left
    seconds: float = 0.0
    # Whole daily partitions detached and dropped (PostgreSQL); their rows are
    # not counted in ``deleted``.
    dropped_partitions: tuple[str, ...] = ()

    @property
    def partitions_dropped(self) -> int:
        return len(self.dropped_partitions)


class RetentionRunner:
    """``drop_partitions=False`` deletes rows only, partitions or not (for comparisons)."""

    def __init__(
        self,
        engine: Engine,
        policy: RetentionPolicy | None = None,
        *,
        drop_partitions: bool = True,
    ) -> None:
        self._engine = engine
        self._policy = policy or RetentionPolicy()
        self._partitions: PartitionManager | None = (
            partition_manager(engine) if drop_partitions else None
        )

    def run(self, now: datetime) -> RetentionReport:
        started = time.monotonic()
        with translated_errors("deleting expired metrics"), maintenance_lock(self._engine) as held:
            if not held:
                logger.info("retention skipped: another collector holds the maintenance lock")
                return RetentionReport(skipped=True)
            dropped = self._drop_partitions(now - timedelta(days=self._policy.raw_days))
            deleted, chunks = self._run(now)
        report = RetentionReport(
            deleted=deleted,
            chunks=chunks,
            complete=chunks < self._policy.max_chunks,
            seconds=time.monotonic() - started,
            dropped_partitions=dropped,
        )
        if any(deleted.values()) or dropped:
            logger.info(
                "retention: dropped %s partitions, deleted %s in %s chunks",
                len(dropped),
                deleted,
                chunks,
            )
        return report

    def _drop_partitions(self, cutoff: datetime) -> tuple[str, ...]:
        """Drop the raw tables' daily partitions that end at or before ``cutoff``."""
        if self._partitions is None:
            return ()
        dropped: list[str] = []
        for table in RAW_TABLES:
            for partition in self._partitions.expired(table, cutoff):
                # Not dropped (locks busy): its rows go by the chunked delete below.
                if self._partitions.drop(partition):
                    dropped.append(partition.name)
        return tuple(dropped)

    def _run(self, now: datetime) -> tuple[dict[str, int], int]:
        policy = self._policy
        raw_cutoff = now - timedelta(days=policy.raw_days)
        minute_cutoff = to_unix_ms(now - timedelta(days=policy.rollup_1m_days))
        hour_cutoff = to_unix_ms(now - timedelta(days=policy.rollup_1h_days))
        raw_ms = to_unix_ms(raw_cutoff)
        series_groups = self._series_groups()
        dealer_ids = self._dealer_ids()
        plan: list[tuple[Table, Callable[[], Iterator[ColumnElement[bool]]]]] = [
            (samples, lambda: _per_series(samples, series_groups, samples.c.time_ms, raw_ms)),
            (
                api_performance,
                lambda: _per_dealer(
                    api_performance, dealer_ids, api_performance.c.timestamp, raw_cutoff
                ),
            ),
        ]
        for table, cutoff in ((metric_rollup_1m, minute_cutoff), (metric_rollup_1h, hour_cutoff)):
            plan.append((table, _bind_series(table, series_groups, cutoff)))
        for table, cutoff in (
            (endpoint_rollup_1m, minute_cutoff),
            (endpoint_rollup_1h, hour_cutoff),
            (endpoint_rollup_1d, hour_cutoff),
        ):
            plan.append((table, _bind_dealers(table, dealer_ids, cutoff)))
        deleted: dict[str, int] = {}
        chunks = 0
        for table, conditions in plan:
            deleted[table.name] = 0
            for condition in conditions():
                while chunks < policy.max_chunks:
                    count = self._delete_chunk(table, condition)
                    chunks += 1
                    deleted[table.name] += count
                    if count < policy.chunk_rows:
                        break
        return deleted, chunks

    def _series_groups(self) -> list[list[int]]:
        with self._engine.connect() as connection:
            ids = list(connection.scalars(select(series.c.id).order_by(series.c.id)))
        size = self._policy.series_per_chunk
        return [ids[i : i + size] for i in range(0, len(ids), size)]

    def _dealer_ids(self) -> list[str]:
        with self._engine.connect() as connection:
            return list(
                connection.scalars(select(dealers.c.dealer_id).order_by(dealers.c.dealer_id))
            )

    def _delete_chunk(self, table: Table, condition: ColumnElement[bool]) -> int:
        """Delete up to chunk_rows rows matching ``condition``, in one short transaction."""
        with self._engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            postgres = connection.dialect.name == "postgresql"
            if "id" in table.c:
                key = table.c.id
                victims = select(key).where(condition).limit(self._policy.chunk_rows)
                statement = table.delete().where(key.in_(victims.scalar_subquery()))
                with connection.begin():
                    return max(connection.execute(statement).rowcount, 0)
            physical = "ctid" if postgres else "rowid"
            inner = (
                select(text(physical))
                .select_from(table)
                .where(condition)
                .limit(self._policy.chunk_rows)
            )
            compiled = inner.compile(connection, compile_kwargs={"literal_binds": True})
            match = f"ctid = ANY(ARRAY({compiled}))" if postgres else f"rowid IN ({compiled})"
            with connection.begin():
                return max(
                    connection.exec_driver_sql(f"DELETE FROM {table.name} WHERE {match}").rowcount,
                    0,
                )


def _per_series(
    table: Table, groups: Sequence[Sequence[int]], column: ColumnElement[int], cutoff: int
) -> Iterator[ColumnElement[bool]]:
    for group in groups:
        yield (table.c.series_id.in_(group)) & (column < cutoff)


def _per_dealer(
    table: Table, dealer_ids: Sequence[str], column: ColumnElement[datetime], cutoff: datetime
) -> Iterator[ColumnElement[bool]]:
    for dealer_id in dealer_ids:
        yield (table.c.dealer_id == dealer_id) & (column < cutoff)


def _bind_series(
    table: Table, groups: Sequence[Sequence[int]], cutoff: int
) -> Callable[[], Iterator[ColumnElement[bool]]]:
    return lambda: _per_series(table, groups, table.c.bucket_ms, cutoff)


def _bind_dealers(
    table: Table, dealer_ids: Sequence[str], cutoff: int
) -> Callable[[], Iterator[ColumnElement[bool]]]:
    def conditions() -> Iterator[ColumnElement[bool]]:
        for dealer_id in dealer_ids:
            yield (table.c.dealer_id == dealer_id) & (table.c.bucket_ms < cutoff)

    return conditions
