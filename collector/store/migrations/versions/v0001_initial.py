"""Initial schema: dealers, agents, series + narrow samples, the seed's tables.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the types in collector/store/schema.py: this file must not
# change when the schema module does.
JSON_DOC = sa.JSON().with_variant(JSONB(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    _accounts()
    _metrics()
    _bookkeeping()
    _seed_tables()
    _performance_metrics_view()


def _accounts() -> None:
    op.create_table(
        "dealers",
        sa.Column("dealer_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_table(
        "dealer_tokens",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("dealer_id", sa.String(64), sa.ForeignKey("dealers.dealer_id"), nullable=True),
        sa.Column("token_hash", sa.String(128), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False, server_default=sa.text("'dealer'")),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("revoked_at", TIME, nullable=True),
        sa.CheckConstraint("role IN ('dealer', 'admin')", name="ck_dealer_tokens_role"),
    )
    op.create_index("ix_dealer_tokens_dealer_id", "dealer_tokens", ["dealer_id"])
    op.create_table(
        "agents",
        sa.Column("agent_id", sa.String(128), primary_key=True),
        sa.Column("dealer_id", sa.String(64), sa.ForeignKey("dealers.dealer_id"), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("boot_id", sa.String(64), nullable=False),
        sa.Column("first_seen", TIME, nullable=False),
        sa.Column("last_seen", TIME, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("generated_samples", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("dropped_samples", JSON_DOC, nullable=False),
        sa.Column("spool_bytes", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("spool_batches", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    )
    op.create_index("ix_agents_dealer_id", "agents", ["dealer_id"])


def _metrics() -> None:
    op.create_table(
        "series",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("dealer_id", sa.String(64), sa.ForeignKey("dealers.dealer_id"), nullable=False),
        sa.Column("agent_id", sa.String(128), sa.ForeignKey("agents.agent_id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("metric_type", sa.String(200), nullable=False),
        sa.Column("unit", sa.String(64), nullable=False),
        sa.Column("labels", JSON_DOC, nullable=False),
        sa.Column("labels_key", sa.Text, nullable=False),
        sa.UniqueConstraint(
            "dealer_id", "name", "agent_id", "labels_key", name="uq_series_identity"
        ),
    )
    op.create_index("ix_series_agent_id", "series", ["agent_id"])
    op.create_table(
        "series_latest",
        sa.Column(
            "series_id", ROW_ID, sa.ForeignKey("series.id"), primary_key=True, autoincrement=False
        ),
        sa.Column("time_ms", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Double, nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "samples",
        sa.Column("id", ROW_ID, sa.Identity(cache=1000), primary_key=True),
        sa.Column("series_id", ROW_ID, nullable=False),
        sa.Column("time_ms", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Double, nullable=False),
    )
    op.create_index("ix_samples_series_time", "samples", ["series_id", "time_ms"])


def _bookkeeping() -> None:
    op.create_table(
        "ingest_batches",
        sa.Column("agent_id", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("digest", sa.LargeBinary, nullable=False),
        sa.Column("dealer_id", sa.String(64), nullable=False),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("received_at", TIME, nullable=False),
    )
    op.create_table(
        "ingest_gaps",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(128), sa.ForeignKey("agents.agent_id"), nullable=False),
        sa.Column("dealer_id", sa.String(64), nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("from_time", TIME, nullable=False),
        sa.Column("to_time", TIME, nullable=False),
        sa.Column("batches", sa.BigInteger, nullable=False),
        sa.Column("samples", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("received_at", TIME, nullable=False),
        sa.UniqueConstraint(
            "agent_id", "first_seq", "last_seq", "reason", name="uq_ingest_gaps_range"
        ),
    )
    op.create_index("ix_ingest_gaps_dealer_id", "ingest_gaps", ["dealer_id"])


def _seed_tables() -> None:
    op.create_table(
        "api_performance",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("timestamp", TIME, nullable=False),
        sa.Column("interval_start", TIME, nullable=False),
        sa.Column("dealer_id", sa.String(64), sa.ForeignKey("dealers.dealer_id"), nullable=False),
        sa.Column("agent_id", sa.String(128), sa.ForeignKey("agents.agent_id"), nullable=False),
        sa.Column("endpoint", sa.String(500), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("request_count", sa.BigInteger, nullable=False),
        sa.Column("error_count", sa.BigInteger, nullable=False),
        sa.Column("client_error_count", sa.BigInteger, nullable=False),
        sa.Column("duration_sum_ms", sa.Double, nullable=False),
        sa.Column("duration_min_ms", sa.Double, nullable=False),
        sa.Column("duration_max_ms", sa.Double, nullable=False),
        sa.Column("avg_response_time", sa.Double, nullable=False),
        sa.Column("success_rate", sa.Double, nullable=False),
        sa.Column("status_counts", JSON_DOC, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("last_error_at", TIME, nullable=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("latency_sketch", JSON_DOC, nullable=True),
    )
    op.create_index("ix_api_performance_dealer_time", "api_performance", ["dealer_id", "timestamp"])
    op.create_table(
        "system_alerts",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("dealer_id", sa.String(64), sa.ForeignKey("dealers.dealer_id"), nullable=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("resolved", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("resolved_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_index("ix_system_alerts_dealer_resolved", "system_alerts", ["dealer_id", "resolved"])


# The seed's performance_metrics rows, computed from series + samples. A plain
# join (no window functions) so that a dealer_id filter reaches the indexes.
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

# SQLite has no timestamp type: the text is SQLAlchemy's own DateTime format
# in UTC, so it sorts, compares and reads back like the other time columns.
_VIEW_SQLITE = """
CREATE VIEW performance_metrics AS
SELECT p.id AS id,
       strftime('%Y-%m-%d %H:%M:%S', p.time_ms / 1000, 'unixepoch')
           || printf('.%06d', (p.time_ms % 1000) * 1000) AS "timestamp",
       s.dealer_id AS dealer_id,
       s.agent_id AS agent_id,
       s.metric_type AS metric_type,
       s.name AS metric_name,
       p.value AS metric_value,
       json_object('unit', s.unit, 'labels', json(s.labels), 'agent_id', s.agent_id)
           AS metadata
FROM samples p JOIN series s ON s.id = p.series_id
"""


def _performance_metrics_view() -> None:
    dialect = op.get_bind().dialect.name
    op.execute(_VIEW_POSTGRESQL if dialect == "postgresql" else _VIEW_SQLITE)


def downgrade() -> None:
    op.execute("DROP VIEW performance_metrics")
    for table in (
        "system_alerts",
        "api_performance",
        "ingest_gaps",
        "ingest_batches",
        "samples",
        "series_latest",
        "series",
        "agents",
        "dealer_tokens",
        "dealers",
    ):
        op.drop_table(table)
