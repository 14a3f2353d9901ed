"""series_latest: room on every page for in-place (HOT) updates on PostgreSQL.

Every ingest transaction rewrites the newest point of each series it touches:
one UPDATE per series per batch, the hottest rows of the database. With full
pages each update's new row version lands on another page and needs a new
index entry; with half-empty pages PostgreSQL keeps it on the same page
without touching the index (a heap-only tuple), and vacuums the table more
eagerly so the freed room comes back. SQLite updates in place anyway.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TUNED = (
    "fillfactor = 50, autovacuum_vacuum_scale_factor = 0.01, "
    "autovacuum_vacuum_insert_scale_factor = 0.01"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE series_latest SET ({_TUNED})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE series_latest RESET "
        "(fillfactor, autovacuum_vacuum_scale_factor, autovacuum_vacuum_insert_scale_factor)"
    )
