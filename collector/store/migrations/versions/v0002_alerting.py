"""Alerting: rules, evaluation state, episodes in system_alerts, the outbox, silences.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copies of the types in collector/store/schema.py: this file must not
# change when the schema module does.
JSON_DOC = sa.JSON().with_variant(JSONB(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)

_AGGREGATIONS = "aggregation IN ('avg', 'max', 'min', 'p95', 'rate')"
_COMPARATORS = "comparator IN ('>', '>=', '<', '<=')"
_PHASES = "phase IN ('ok', 'pending', 'firing')"
_KINDS = "kind IN ('firing', 'resolved', 'severity_change', 'escalation', 'repeat', 'flapping')"
_STATUSES = "status IN ('pending', 'sent', 'failed')"


def upgrade() -> None:
    _alert_rules()
    _episodes()
    _alert_states()
    _outbox()
    _silences()


def _alert_rules() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("alert_type", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("aggregation", sa.String(8), nullable=False),
        sa.Column("window_s", sa.Integer, nullable=False),
        sa.Column("comparator", sa.String(2), nullable=False),
        sa.Column("warning_threshold", sa.Double, nullable=True),
        sa.Column("critical_threshold", sa.Double, nullable=True),
        sa.Column("warning_recovery", sa.Double, nullable=True),
        sa.Column("critical_recovery", sa.Double, nullable=True),
        sa.Column("for_s", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("dealer_id", sa.String(64), sa.ForeignKey("dealers.dealer_id"), nullable=True),
        sa.Column("label_matchers", JSON_DOC, nullable=False),
        sa.Column("channels", JSON_DOC, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("builtin", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint(_AGGREGATIONS, name="ck_alert_rules_aggregation"),
        sa.CheckConstraint(_COMPARATORS, name="ck_alert_rules_comparator"),
        sa.CheckConstraint("window_s > 0 AND for_s >= 0", name="ck_alert_rules_durations"),
    )


def _episodes() -> None:
    # batch mode: SQLite cannot add a foreign key to an existing table in place.
    with op.batch_alter_table("system_alerts") as batch:
        batch.add_column(sa.Column("rule_id", ROW_ID, nullable=True))
        batch.add_column(sa.Column("agent_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("labels", JSON_DOC, nullable=True))
        batch.add_column(sa.Column("labels_key", sa.Text, nullable=True))
        batch.add_column(sa.Column("value", sa.Double, nullable=True))
        batch.add_column(sa.Column("threshold", sa.Double, nullable=True))
        batch.add_column(
            sa.Column("state", sa.String(16), nullable=False, server_default=sa.text("'firing'"))
        )
        batch.add_column(sa.Column("started_at", TIME, nullable=True))
        batch.add_column(sa.Column("last_change_at", TIME, nullable=True))
        batch.add_column(sa.Column("acknowledged_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("acknowledged_at", TIME, nullable=True))
        batch.create_foreign_key("fk_system_alerts_rule_id", "alert_rules", ["rule_id"], ["id"])
        batch.create_index("ix_system_alerts_rule_id", ["rule_id"])
    # Seed rows resolved before this migration are closed episodes.
    op.execute("UPDATE system_alerts SET state = 'resolved' WHERE resolved")


def _alert_states() -> None:
    op.create_table(
        "alert_states",
        sa.Column("rule_id", ROW_ID, sa.ForeignKey("alert_rules.id"), primary_key=True),
        sa.Column("dealer_id", sa.String(64), primary_key=True),
        sa.Column("agent_id", sa.String(128), primary_key=True),
        sa.Column("labels_key", sa.Text, primary_key=True),
        sa.Column("labels", JSON_DOC, nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=True),
        sa.Column("pending_since", TIME, nullable=True),
        sa.Column("episode_id", ROW_ID, sa.ForeignKey("system_alerts.id"), nullable=True),
        sa.Column("notified", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("flap_history", JSON_DOC, nullable=False),
        sa.Column("flapping", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("last_value", sa.Double, nullable=True),
        sa.Column("evaluated_at", TIME, nullable=False),
        sa.CheckConstraint(_PHASES, name="ck_alert_states_phase"),
    )


def _outbox() -> None:
    op.create_table(
        "notification_outbox",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("episode_id", ROW_ID, sa.ForeignKey("system_alerts.id"), nullable=False),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("payload", JSON_DOC, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", TIME, nullable=False),
        sa.Column("sent_at", TIME, nullable=True),
        sa.Column("receipt", sa.Text, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'pending'")),
        sa.CheckConstraint(_KINDS, name="ck_notification_outbox_kind"),
        sa.CheckConstraint(_STATUSES, name="ck_notification_outbox_status"),
    )
    op.create_index(
        "ix_notification_outbox_due", "notification_outbox", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_notification_outbox_episode", "notification_outbox", ["episode_id", "channel"]
    )


def _silences() -> None:
    op.create_table(
        "silences",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("dealer_id", sa.String(64), sa.ForeignKey("dealers.dealer_id"), nullable=True),
        sa.Column("rule_id", ROW_ID, sa.ForeignKey("alert_rules.id"), nullable=True),
        sa.Column("label_matchers", JSON_DOC, nullable=False),
        sa.Column("starts_at", TIME, nullable=False),
        sa.Column("ends_at", TIME, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.CheckConstraint("ends_at > starts_at", name="ck_silences_period"),
    )
    op.create_index("ix_silences_ends_at", "silences", ["ends_at"])


def downgrade() -> None:
    op.drop_table("silences")
    op.drop_table("notification_outbox")
    op.drop_table("alert_states")
    with op.batch_alter_table("system_alerts") as batch:
        batch.drop_index("ix_system_alerts_rule_id")
        batch.drop_constraint("fk_system_alerts_rule_id", type_="foreignkey")
        for column in (
            "acknowledged_at",
            "acknowledged_by",
            "last_change_at",
            "started_at",
            "state",
            "threshold",
            "value",
            "labels_key",
            "labels",
            "agent_id",
            "rule_id",
        ):
            batch.drop_column(column)
    op.drop_table("alert_rules")
