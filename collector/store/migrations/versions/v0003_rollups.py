"""Rollups: metrics and endpoint statistics per minute and per hour, and the dirty marks.

``rollup_dirty`` holds one row per (agent, minute) that received rows since the
rollup job last summarised it; the batch writer upserts it in the ingest
transaction and bumps ``generation``, the job deletes it only if the
generation is still the one it read. The rollup tables are recomputed from
raw rows (replace, never add), so running the job twice changes nothing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies of the types in collector/store/schema.py: this file must not
# change when the schema module does.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MILLIS = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "rollup_dirty",
        sa.Column("agent_id", sa.String(128), primary_key=True),
        sa.Column("bucket_ms", MILLIS, primary_key=True, autoincrement=False),
        sa.Column("dealer_id", sa.String(64), nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False, server_default=sa.text("1")),
    )
    for resolution in ("1m", "1h"):
        _metric_rollup(f"metric_rollup_{resolution}")
    # 1d: UTC days of endpoint statistics, for range-wide percentiles.
    for resolution in ("1m", "1h", "1d"):
        _endpoint_rollup(f"endpoint_rollup_{resolution}")


def _metric_rollup(name: str) -> None:
    op.create_table(
        name,
        sa.Column("series_id", ROW_ID, primary_key=True, autoincrement=False),
        sa.Column("bucket_ms", MILLIS, primary_key=True, autoincrement=False),
        sa.Column("value_count", sa.BigInteger, nullable=False),
        sa.Column("value_sum", sa.Double, nullable=False),
        sa.Column("value_min", sa.Double, nullable=False),
        sa.Column("value_max", sa.Double, nullable=False),
        sa.Column("value_last", sa.Double, nullable=False),
    )


def _endpoint_rollup(name: str) -> None:
    # The key starts with (dealer_id, bucket_ms): "dealer X, buckets in [a, b)".
    # Each agent and bucket also has a row with source/method/endpoint "*":
    # its traffic (probes apart) together.
    op.create_table(
        name,
        sa.Column("dealer_id", sa.String(64), primary_key=True),
        sa.Column("bucket_ms", MILLIS, primary_key=True, autoincrement=False),
        sa.Column("agent_id", sa.String(128), primary_key=True),
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("method", sa.String(16), primary_key=True),
        sa.Column("endpoint", sa.String(500), primary_key=True),
        sa.Column("request_count", sa.BigInteger, nullable=False),
        sa.Column("error_count", sa.BigInteger, nullable=False),
        sa.Column("client_error_count", sa.BigInteger, nullable=False),
        sa.Column("duration_sum_ms", sa.Double, nullable=False),
        sa.Column("duration_min_ms", sa.Double, nullable=False),
        sa.Column("duration_max_ms", sa.Double, nullable=False),
        sa.Column("latency_sketch", sa.LargeBinary, nullable=True),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("last_error_ms", MILLIS, nullable=True),
    )


def downgrade() -> None:
    for resolution in ("1d", "1h", "1m"):
        op.drop_table(f"endpoint_rollup_{resolution}")
    for resolution in ("1h", "1m"):
        op.drop_table(f"metric_rollup_{resolution}")
    op.drop_table("rollup_dirty")
