"""PostgreSQL: samples and api_performance partitioned by range of time, one partition a UTC day.

Retention can then drop a whole expired day (DETACH + DROP) instead of
deleting its rows one chunk at a time. SQLite has no partitions: a no-op there.

Each table is rebuilt: the old one is renamed, a partitioned table is
created in its place (the primary key gains the partition key, as
PostgreSQL requires), partitions are created for every day that holds data
(at most :data:`BACKFILL_DAYS` back) and for today and :data:`DAYS_AHEAD`
days ahead, a DEFAULT partition takes everything else, the rows are copied
with their ids, and the id sequences go on where they were. The
performance_metrics view, which reads samples, is recreated.
collector/store/partitions.py creates later days the same way and relies on
the partition names used here (``<table>_pYYYYMMDD``, ``<table>_default``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

DAYS_AHEAD = 3
# Older data goes to the DEFAULT partition: a partition per day of years of
# stray timestamps would slow every query's planning for nothing.
BACKFILL_DAYS = 400
_EPOCH = date(1970, 1, 1)
_DAY_MS = 86_400_000


# A NamedTuple, not a dataclass: Alembic loads this file outside sys.modules,
# where dataclasses cannot resolve postponed annotations.
class _Rebuild(NamedTuple):
    table: str
    key: str  # the partition key column
    millis: bool  # key in Unix ms (else timestamptz)
    index_name: str
    index_columns: str
    identity: bool  # id is an identity column (else a serial with its own sequence)
    foreign_keys: tuple[str, ...] = ()


_SAMPLES = _Rebuild(
    table="samples",
    key="time_ms",
    millis=True,
    index_name="ix_samples_series_time",
    index_columns="series_id, time_ms",
    identity=True,
)
_API_PERFORMANCE = _Rebuild(
    table="api_performance",
    key='"timestamp"',
    millis=False,
    index_name="ix_api_performance_dealer_time",
    index_columns='dealer_id, "timestamp"',
    identity=False,
    foreign_keys=(
        "CONSTRAINT api_performance_dealer_id_fkey FOREIGN KEY (dealer_id) "
        "REFERENCES dealers (dealer_id)",
        "CONSTRAINT api_performance_agent_id_fkey FOREIGN KEY (agent_id) "
        "REFERENCES agents (agent_id)",
    ),
)

# Frozen copy of v0001's view: this file must not change when that one does.
_VIEW_POSTGRESQL = """
CREATE VIEW performance_metrics AS
SELECT p.id AS id,
       to_timestamp(p.time_ms / 1000.0) AS "timestamp",
       s.dealer_id AS dealer_id,
       s.agent_id AS agent_id,
       s.metric_type AS metric_type,
       s.name AS metric_name,
       p.value AS metric_value,
       jsonb_build_object('unit', s.unit, 'labels', s.labels, 'agent_id', s.agent_id)
           AS metadata
FROM samples p JOIN series s ON s.id = p.series_id
"""


def _execute(sql: str, **params: object) -> sa.CursorResult[Any]:
    """Statements with bound parameters (SQL text with no literal colons)."""
    return op.get_bind().execute(sa.text(sql), params)


def _ddl(sql: str) -> None:
    """Statements without parameters, sent as they are (time literals hold colons)."""
    op.get_bind().exec_driver_sql(sql)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    today = datetime.now(UTC).date()
    _ddl("DROP VIEW performance_metrics")
    for rebuild in (_SAMPLES, _API_PERFORMANCE):
        _to_partitioned(rebuild, today)
    _ddl(_VIEW_POSTGRESQL)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _ddl("DROP VIEW performance_metrics")
    for rebuild in (_SAMPLES, _API_PERFORMANCE):
        _to_plain(rebuild)
    _ddl(_VIEW_POSTGRESQL)


def _to_partitioned(rebuild: _Rebuild, today: date) -> None:
    old = _set_aside(rebuild, "unpartitioned")
    extras = [f"CONSTRAINT {rebuild.table}_pkey PRIMARY KEY (id, {rebuild.key})"]
    _ddl(
        f"CREATE TABLE {rebuild.table} ("
        f"LIKE {old} INCLUDING DEFAULTS INCLUDING IDENTITY, "
        f"{', '.join(extras + list(rebuild.foreign_keys))}"
        f") PARTITION BY RANGE ({rebuild.key})"
    )
    first, last = today - timedelta(days=BACKFILL_DAYS), today + timedelta(days=DAYS_AHEAD)
    days = set(_days_with_data(rebuild, old, first, last))
    days.update(today + timedelta(days=n) for n in range(DAYS_AHEAD + 1))
    for day in sorted(days):
        _ddl(
            f"CREATE TABLE {rebuild.table}_p{day:%Y%m%d} PARTITION OF {rebuild.table} "
            f"FOR VALUES FROM ({_bound(rebuild, day)}) "
            f"TO ({_bound(rebuild, day + timedelta(days=1))})"
        )
    _ddl(f"CREATE TABLE {rebuild.table}_default PARTITION OF {rebuild.table} DEFAULT")
    _move_rows(rebuild, old)
    _ddl(f"CREATE INDEX {rebuild.index_name} ON {rebuild.table} ({rebuild.index_columns})")
    _name_partition_indexes(rebuild)


def _to_plain(rebuild: _Rebuild) -> None:
    old = _set_aside(rebuild, "partitioned")
    extras = [f"CONSTRAINT {rebuild.table}_pkey PRIMARY KEY (id)"]
    _ddl(
        f"CREATE TABLE {rebuild.table} ("
        f"LIKE {old} INCLUDING DEFAULTS INCLUDING IDENTITY, "
        f"{', '.join(extras + list(rebuild.foreign_keys))})"
    )
    _move_rows(rebuild, old)
    _ddl(f"CREATE INDEX {rebuild.index_name} ON {rebuild.table} ({rebuild.index_columns})")


def _set_aside(rebuild: _Rebuild, suffix: str) -> str:
    """Rename the table and free the names its replacement needs; return the new name.

    Index and primary key names are unique per schema, so they go now (the
    copy needs neither). An identity sequence is renamed so that the new
    table's own one gets the usual name; a serial's sequence is kept and
    handed over in :func:`_move_rows`.
    """
    table, old = rebuild.table, f"{rebuild.table}_{suffix}"
    _ddl(f"ALTER TABLE {table} RENAME TO {old}")
    _ddl(f"ALTER TABLE {old} DROP CONSTRAINT {table}_pkey")
    _ddl(f"DROP INDEX {rebuild.index_name}")
    if rebuild.identity:
        sequence = _execute("SELECT pg_get_serial_sequence(:t, 'id')", t=old).scalar_one()
        _ddl(f"ALTER SEQUENCE {sequence} RENAME TO {old}_id_seq")
    return old


def _move_rows(rebuild: _Rebuild, old: str) -> None:
    table = rebuild.table
    if rebuild.identity:
        _ddl(f"INSERT INTO {table} OVERRIDING SYSTEM VALUE SELECT * FROM {old}")
        # Ids are never reused: go on after both the old sequence and the rows.
        _execute(
            f"SELECT setval(pg_get_serial_sequence(:t, 'id'), greatest("
            f"(SELECT last_value FROM {old}_id_seq), (SELECT coalesce(max(id), 1) FROM {old})))",
            t=table,
        )
    else:
        _ddl(f"INSERT INTO {table} SELECT * FROM {old}")
        # The copied default still calls the old sequence: the new table owns it now.
        sequence = _execute("SELECT pg_get_serial_sequence(:t, 'id')", t=old).scalar_one()
        _ddl(f"ALTER SEQUENCE {sequence} OWNED BY {table}.id")
    # Dropping a partitioned table drops its partitions.
    _ddl(f"DROP TABLE {old}")


def _days_with_data(rebuild: _Rebuild, old: str, first: date, last: date) -> Iterable[date]:
    if rebuild.millis:
        query = (
            f"SELECT DISTINCT {rebuild.key} / {_DAY_MS} AS day FROM {old} "
            f"WHERE {rebuild.key} >= :lo AND {rebuild.key} < :hi"
        )
        result = _execute(query, lo=_millis(first), hi=_millis(last + timedelta(days=1)))
        return [_EPOCH + timedelta(days=int(day)) for day in result.scalars()]
    query = (
        f"SELECT DISTINCT CAST({rebuild.key} AT TIME ZONE 'UTC' AS date) AS day FROM {old} "
        f"WHERE {rebuild.key} >= :lo AND {rebuild.key} < :hi"
    )
    result = _execute(query, lo=_midnight(first), hi=_midnight(last + timedelta(days=1)))
    return list(result.scalars())


def _name_partition_indexes(rebuild: _Rebuild) -> None:
    """``<index>_pYYYYMMDD`` instead of PostgreSQL's generated names, as partitions.py does."""
    children = _execute(
        "SELECT child.relname AS index_name, part.relname AS partition_name "
        "FROM pg_inherits link "
        "JOIN pg_class child ON child.oid = link.inhrelid "
        "JOIN pg_index entry ON entry.indexrelid = child.oid "
        "JOIN pg_class part ON part.oid = entry.indrelid "
        "WHERE link.inhparent = CAST(:parent AS regclass)",
        parent=rebuild.index_name,
    ).all()
    for child in children:
        suffix = str(child.partition_name).removeprefix(f"{rebuild.table}_")
        _ddl(f"ALTER INDEX {child.index_name} RENAME TO {rebuild.index_name}_{suffix}")


def _bound(rebuild: _Rebuild, day: date) -> str:
    return str(_millis(day)) if rebuild.millis else f"'{day.isoformat()} 00:00:00+00'"


def _millis(day: date) -> int:
    return (day - _EPOCH).days * _DAY_MS


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
