"""Read-only viewer tokens: the token role may be 'viewer' besides 'dealer' and 'admin'.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_NAME = "ck_dealer_tokens_role"


def upgrade() -> None:
    # Batch mode: SQLite cannot alter a constraint, so the table is copied.
    with op.batch_alter_table("dealer_tokens") as batch:
        batch.drop_constraint(_NAME, type_="check")
        batch.create_check_constraint(_NAME, "role IN ('dealer', 'viewer', 'admin')")


def downgrade() -> None:
    op.execute("DELETE FROM dealer_tokens WHERE role = 'viewer'")
    with op.batch_alter_table("dealer_tokens") as batch:
        batch.drop_constraint(_NAME, type_="check")
        batch.create_check_constraint(_NAME, "role IN ('dealer', 'admin')")
