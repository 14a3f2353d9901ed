"""Periodic and ad hoc reports: one row per report, its three renderings, its delivery.

A scheduled report's ``claim_key`` (period, dealer, period start) is unique:
the collector that inserts it first generates it; others and restarts see
the row and leave it. Ad hoc reports have no claim key (NULLs never clash).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copies of the types in collector/store/schema.py: this file must not
# change when the schema module does.
JSON_DOC = sa.JSON().with_variant(JSONB(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)

_PERIODS = "period IN ('daily', 'weekly', 'adhoc')"
_STATUSES = "status IN ('generating', 'ready', 'failed')"
_DELIVERY = "delivery IN ('none', 'pending', 'sending', 'sent', 'failed')"


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("dealer_id", sa.String(64), sa.ForeignKey("dealers.dealer_id"), nullable=True),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("period_start", TIME, nullable=False),
        sa.Column("period_end", TIME, nullable=False),
        sa.Column("claim_key", sa.String(200), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("claimed_at", TIME, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("body_html", sa.Text, nullable=True),
        sa.Column("body_json", sa.Text, nullable=True),
        sa.Column("body_text", sa.Text, nullable=True),
        sa.Column("delivery", sa.String(16), nullable=False, server_default=sa.text("'none'")),
        sa.Column("delivered_channels", JSON_DOC, nullable=False),
        sa.Column("delivery_attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.UniqueConstraint("claim_key", name="uq_reports_claim_key"),
        sa.CheckConstraint(_PERIODS, name="ck_reports_period"),
        sa.CheckConstraint(_STATUSES, name="ck_reports_status"),
        sa.CheckConstraint(_DELIVERY, name="ck_reports_delivery"),
        sa.CheckConstraint("period_end > period_start", name="ck_reports_range"),
    )
    op.create_index("ix_reports_dealer_created", "reports", ["dealer_id", "created_at"])
    op.create_index("ix_reports_delivery", "reports", ["delivery"])


def downgrade() -> None:
    op.drop_index("ix_reports_delivery", "reports")
    op.drop_index("ix_reports_dealer_created", "reports")
    op.drop_table("reports")
