"""Alert tick claims: one row per evaluated tick slot, so each slot is evaluated once.

Several collectors on one database each run the alert evaluation job; the
first to insert a slot's row (in the evaluation's transaction) evaluates it,
the others see the row and skip.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen copy of the type in collector/store/schema.py: this file must not
# change when the schema module does.
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_ticks",
        sa.Column("slot_ms", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("claimed_by", sa.String(128), nullable=False),
        sa.Column("claimed_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("rules", sa.Integer, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("alert_ticks")
