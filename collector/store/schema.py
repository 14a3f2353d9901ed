"""Table definitions the store queries with (SQLAlchemy Core).

The migrations in ``migrations/versions`` create these tables; they are
written out separately on purpose (a migration must never change when this
module does), and a test checks that the migrated database matches
:data:`metadata`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in, timezone-aware UTC datetimes out.

    PostgreSQL keeps a ``timestamptz``; SQLite keeps SQLAlchemy's text form of
    the UTC time (it has no time zone support).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: the store needs UTC-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # a computed SQLite column (the view) has no declared type
            value = datetime.fromisoformat(value)
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


JsonDocument = JSON().with_variant(JSONB(), "postgresql")
# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid (free, append order).
RowId = BigInteger().with_variant(Integer(), "sqlite")
# Timestamps of the hot tables are Unix milliseconds, like dealerpulse.model.
Millis = BigInteger

metadata = MetaData()

dealers = Table(
    "dealers",
    metadata,
    Column("dealer_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

dealer_tokens = Table(
    "dealer_tokens",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    # NULL for admin tokens, which belong to no dealer.
    Column("dealer_id", String(64), ForeignKey("dealers.dealer_id"), nullable=True),
    Column("token_hash", String(128), nullable=False, unique=True),
    Column("role", String(16), nullable=False, server_default=text("'dealer'")),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
    CheckConstraint("role IN ('dealer', 'admin')", name="ck_dealer_tokens_role"),
    Index("ix_dealer_tokens_dealer_id", "dealer_id"),
)

agents = Table(
    "agents",
    metadata,
    Column("agent_id", String(128), primary_key=True),
    Column("dealer_id", String(64), ForeignKey("dealers.dealer_id"), nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("version", String(64), nullable=False),
    Column("boot_id", String(64), nullable=False),
    Column("first_seen", UtcDateTime(), nullable=False),
    Column("last_seen", UtcDateTime(), nullable=False),
    Column("last_seq", BigInteger, nullable=False, server_default=text("0")),
    Column("generated_samples", BigInteger, nullable=False, server_default=text("0")),
    Column("dropped_samples", JsonDocument, nullable=False),
    Column("spool_bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("spool_batches", BigInteger, nullable=False, server_default=text("0")),
    Index("ix_agents_dealer_id", "dealer_id"),
)

series = Table(
    "series",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), ForeignKey("dealers.dealer_id"), nullable=False),
    Column("agent_id", String(128), ForeignKey("agents.agent_id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("metric_type", String(200), nullable=False),
    Column("unit", String(64), nullable=False),
    Column("labels", JsonDocument, nullable=False),
    # Canonical JSON of the sorted label pairs: what uniqueness is decided on.
    Column("labels_key", Text, nullable=False),
    # dealer_id, name first: "one metric of a dealer" is a prefix lookup.
    UniqueConstraint("dealer_id", "name", "agent_id", "labels_key", name="uq_series_identity"),
    Index("ix_series_agent_id", "agent_id"),
)

# The newest point of every series, upserted once per series per write group,
# so that the status view never scans samples.
series_latest = Table(
    "series_latest",
    metadata,
    Column("series_id", RowId, ForeignKey("series.id"), primary_key=True, autoincrement=False),
    Column("time_ms", Millis, nullable=False),
    Column("value", Double, nullable=False),
    Column("received_ms", Millis, nullable=False),
)

# Narrow rows in append order. No foreign key on purpose: the writer resolves
# series ids in the same transaction, and a per-row check would halve COPY speed.
samples = Table(
    "samples",
    metadata,
    Column("id", RowId, Identity(cache=1000), primary_key=True),
    Column("series_id", RowId, nullable=False),
    Column("time_ms", Millis, nullable=False),
    Column("value", Double, nullable=False),
    Index("ix_samples_series_time", "series_id", "time_ms"),
)

ingest_batches = Table(
    "ingest_batches",
    metadata,
    Column("agent_id", String(128), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("digest", LargeBinary, nullable=False),
    Column("dealer_id", String(64), nullable=False),
    Column("samples", Integer, nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
)

ingest_gaps = Table(
    "ingest_gaps",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("agent_id", String(128), ForeignKey("agents.agent_id"), nullable=False),
    Column("dealer_id", String(64), nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("from_time", UtcDateTime(), nullable=False),
    Column("to_time", UtcDateTime(), nullable=False),
    Column("batches", BigInteger, nullable=False),
    Column("samples", BigInteger, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    # An agent may repeat a gap in several batches; it is one loss.
    UniqueConstraint("agent_id", "first_seq", "last_seq", "reason", name="uq_ingest_gaps_range"),
    Index("ix_ingest_gaps_dealer_id", "dealer_id"),
)

api_performance = Table(
    "api_performance",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    # The end of the aggregation interval.
    Column("timestamp", UtcDateTime(), nullable=False),
    Column("interval_start", UtcDateTime(), nullable=False),
    Column("dealer_id", String(64), ForeignKey("dealers.dealer_id"), nullable=False),
    Column("agent_id", String(128), ForeignKey("agents.agent_id"), nullable=False),
    Column("endpoint", String(500), nullable=False),
    Column("method", String(16), nullable=False),
    Column("request_count", BigInteger, nullable=False),
    Column("error_count", BigInteger, nullable=False),
    Column("client_error_count", BigInteger, nullable=False),
    Column("duration_sum_ms", Double, nullable=False),
    Column("duration_min_ms", Double, nullable=False),
    Column("duration_max_ms", Double, nullable=False),
    # duration_sum_ms / request_count (0 without requests).
    Column("avg_response_time", Double, nullable=False),
    # Percent of requests without a server error, 0-100 (100 without requests).
    Column("success_rate", Double, nullable=False),
    # {"200": 95, "500": 5}
    Column("status_counts", JsonDocument, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("last_error_at", UtcDateTime(), nullable=True),
    Column("source", String(32), nullable=False),
    # collector.store.sketch format, NULL when the agent sent no sketch.
    Column("latency_sketch", JsonDocument, nullable=True),
    Index("ix_api_performance_dealer_time", "dealer_id", "timestamp"),
)

system_alerts = Table(
    "system_alerts",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), ForeignKey("dealers.dealer_id"), nullable=True),
    Column("type", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("resolved", Boolean, nullable=False, server_default=text("false")),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_system_alerts_dealer_resolved", "dealer_id", "resolved"),
)

# The seed's wide table, now a view over series + samples (see the migration).
view_metadata = MetaData()
performance_metrics = Table(
    "performance_metrics",
    view_metadata,
    Column("id", RowId),
    Column("timestamp", UtcDateTime()),
    Column("dealer_id", String(64)),
    Column("agent_id", String(128)),
    Column("metric_type", String(200)),
    Column("metric_name", String(200)),
    Column("metric_value", Double),
    Column("metadata", JsonDocument),
)
