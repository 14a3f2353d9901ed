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
    CheckConstraint("role IN ('dealer', 'viewer', 'admin')", name="ck_dealer_tokens_role"),
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
    # Agent clock minus collector clock, from the newest batches (NULL: not known yet).
    Column("clock_offset_ms", BigInteger, nullable=True),
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
# On PostgreSQL id is not a key either (migration 0010): no query looks a sample
# up by id, and its index cost every insert; SQLite's id is the free rowid.
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
    # Added by the alerting migration (0002): a row is one alert episode.
    # Seed-style rows without a rule leave these NULL.
    Column("rule_id", RowId, ForeignKey("alert_rules.id"), nullable=True),
    Column("agent_id", String(128), nullable=True),
    Column("labels", JsonDocument, nullable=True),
    Column("labels_key", Text, nullable=True),
    Column("value", Double, nullable=True),
    Column("threshold", Double, nullable=True),
    Column("state", String(16), nullable=False, server_default=text("'firing'")),
    Column("started_at", UtcDateTime(), nullable=True),
    Column("last_change_at", UtcDateTime(), nullable=True),
    Column("acknowledged_by", String(200), nullable=True),
    Column("acknowledged_at", UtcDateTime(), nullable=True),
    Index("ix_system_alerts_dealer_resolved", "dealer_id", "resolved"),
    Index("ix_system_alerts_rule_id", "rule_id"),
)

# ---- alerting (migration 0002)

ALERT_AGGREGATIONS = ("avg", "max", "min", "p95", "rate")
ALERT_COMPARATORS = (">", ">=", "<", "<=")
ALERT_PHASES = ("ok", "pending", "firing")
NOTIFICATION_KINDS = ("firing", "resolved", "severity_change", "escalation", "repeat", "flapping")
OUTBOX_STATUSES = ("pending", "sent", "failed")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    # "threshold" or "agent_silence"; the seed's alertType goes to system_alerts.type.
    Column("kind", String(32), nullable=False),
    Column("alert_type", String(64), nullable=False),
    Column("metric", String(200), nullable=False),
    Column("aggregation", String(8), nullable=False),
    Column("window_s", Integer, nullable=False),
    Column("comparator", String(2), nullable=False),
    Column("warning_threshold", Double, nullable=True),
    Column("critical_threshold", Double, nullable=True),
    Column("warning_recovery", Double, nullable=True),
    Column("critical_recovery", Double, nullable=True),
    Column("for_s", Integer, nullable=False, server_default=text("0")),
    # NULL: every dealer.
    Column("dealer_id", String(64), ForeignKey("dealers.dealer_id"), nullable=True),
    # {"endpoint": "/api/leads"}: a series must carry every pair to match.
    Column("label_matchers", JsonDocument, nullable=False),
    # ["slack", "email"]: names of configured notifiers.
    Column("channels", JsonDocument, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("builtin", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    CheckConstraint(_one_of("aggregation", ALERT_AGGREGATIONS), name="ck_alert_rules_aggregation"),
    CheckConstraint(_one_of("comparator", ALERT_COMPARATORS), name="ck_alert_rules_comparator"),
    CheckConstraint("window_s > 0 AND for_s >= 0", name="ck_alert_rules_durations"),
)

# The evaluation state of one (rule, dealer, agent, labels), kept between ticks.
alert_states = Table(
    "alert_states",
    metadata,
    Column("rule_id", RowId, ForeignKey("alert_rules.id"), primary_key=True),
    Column("dealer_id", String(64), primary_key=True),
    Column("agent_id", String(128), primary_key=True),
    Column("labels_key", Text, primary_key=True),
    Column("labels", JsonDocument, nullable=False),
    Column("phase", String(16), nullable=False),
    Column("severity", String(16), nullable=True),
    Column("pending_since", UtcDateTime(), nullable=True),
    Column("episode_id", RowId, ForeignKey("system_alerts.id"), nullable=True),
    # Whether the open episode's firing was notified (not while flapping).
    Column("notified", Boolean, nullable=False, server_default=text("false")),
    # Unix ms of the recent firing/resolved transitions, newest last.
    Column("flap_history", JsonDocument, nullable=False),
    Column("flapping", Boolean, nullable=False, server_default=text("false")),
    Column("last_value", Double, nullable=True),
    Column("evaluated_at", UtcDateTime(), nullable=False),
    CheckConstraint(_one_of("phase", ALERT_PHASES), name="ck_alert_states_phase"),
)

notification_outbox = Table(
    "notification_outbox",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("episode_id", RowId, ForeignKey("system_alerts.id"), nullable=False),
    Column("channel", String(100), nullable=False),
    Column("kind", String(32), nullable=False),
    # Stable across retries and restarts: Message-ID, Slack metadata.
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("payload", JsonDocument, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # Also the claim lease: a claimed row is pushed into the future.
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime(), nullable=True),
    # What the channel called the message (Slack ts): resolved replies in its thread.
    Column("receipt", Text, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("status", String(16), nullable=False, server_default=text("'pending'")),
    CheckConstraint(_one_of("kind", NOTIFICATION_KINDS), name="ck_notification_outbox_kind"),
    CheckConstraint(_one_of("status", OUTBOX_STATUSES), name="ck_notification_outbox_status"),
    Index("ix_notification_outbox_due", "status", "next_attempt_at"),
    Index("ix_notification_outbox_episode", "episode_id", "channel"),
)

silences = Table(
    "silences",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    # NULL matches any dealer / any rule.
    Column("dealer_id", String(64), ForeignKey("dealers.dealer_id"), nullable=True),
    Column("rule_id", RowId, ForeignKey("alert_rules.id"), nullable=True),
    Column("label_matchers", JsonDocument, nullable=False),
    Column("starts_at", UtcDateTime(), nullable=False),
    Column("ends_at", UtcDateTime(), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    CheckConstraint("ends_at > starts_at", name="ck_silences_period"),
    Index("ix_silences_ends_at", "ends_at"),
)

# ---- alert tick claims (migration 0007); see collector/alerting/ticks.py

# One row per evaluated tick slot (Unix ms of the slot start): the primary key
# is the claim, so across collectors each slot is evaluated once. The row
# commits with the evaluation, so finished_at is set on every visible row.
alert_ticks = Table(
    "alert_ticks",
    metadata,
    Column("slot_ms", Millis, primary_key=True, autoincrement=False),
    Column("claimed_by", String(128), nullable=False),
    Column("claimed_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime(), nullable=True),
    # Rules evaluated in the slot.
    Column("rules", Integer, nullable=True),
)

# ---- rollups (migration 0003); see collector/rollup/

# (agent, minute) pairs that received rows since the rollup job last summarised
# them. The writer upserts them in the ingest transaction, bumping generation;
# the job deletes a mark only while its generation is the one it read.
rollup_dirty = Table(
    "rollup_dirty",
    metadata,
    Column("agent_id", String(128), primary_key=True),
    Column("bucket_ms", Millis, primary_key=True, autoincrement=False),
    Column("dealer_id", String(64), nullable=False),
    Column("generation", BigInteger, nullable=False, server_default=text("1")),
)


def _metric_rollup(name: str) -> Table:
    # Every metric summarised as a gauge; bucket_ms is the bucket's start.
    return Table(
        name,
        metadata,
        Column("series_id", RowId, primary_key=True, autoincrement=False),
        Column("bucket_ms", Millis, primary_key=True, autoincrement=False),
        Column("value_count", BigInteger, nullable=False),
        Column("value_sum", Double, nullable=False),
        Column("value_min", Double, nullable=False),
        Column("value_max", Double, nullable=False),
        # The value of the newest sample in the bucket.
        Column("value_last", Double, nullable=False),
    )


def _endpoint_rollup(name: str) -> Table:
    # The key starts with (dealer_id, bucket_ms): "dealer X, buckets in [a, b)".
    # Besides a row per endpoint, each agent and bucket has one row with source,
    # method and endpoint "*": all its traffic (probes apart) together, so a
    # dealer-wide percentile per bucket merges one sketch, not one per endpoint.
    return Table(
        name,
        metadata,
        Column("dealer_id", String(64), primary_key=True),
        Column("bucket_ms", Millis, primary_key=True, autoincrement=False),
        Column("agent_id", String(128), primary_key=True),
        Column("source", String(32), primary_key=True),
        Column("method", String(16), primary_key=True),
        Column("endpoint", String(500), primary_key=True),
        Column("request_count", BigInteger, nullable=False),
        Column("error_count", BigInteger, nullable=False),
        Column("client_error_count", BigInteger, nullable=False),
        Column("duration_sum_ms", Double, nullable=False),
        # Over the rows with requests (0 when there were none).
        Column("duration_min_ms", Double, nullable=False),
        Column("duration_max_ms", Double, nullable=False),
        # collector.rollup.bins binary format (numpy-decodable), NULL without sketches.
        Column("latency_sketch", LargeBinary, nullable=True),
        Column("last_error", Text, nullable=False),
        Column("last_error_ms", Millis, nullable=True),
    )


metric_rollup_1m = _metric_rollup("metric_rollup_1m")
metric_rollup_1h = _metric_rollup("metric_rollup_1h")
endpoint_rollup_1m = _endpoint_rollup("endpoint_rollup_1m")
endpoint_rollup_1h = _endpoint_rollup("endpoint_rollup_1h")
# UTC days: range-wide percentiles of a month merge ~30 sketches per endpoint.
endpoint_rollup_1d = _endpoint_rollup("endpoint_rollup_1d")

# ---- reports (migration 0004)

REPORT_PERIODS = ("daily", "weekly", "adhoc")
REPORT_STATUSES = ("generating", "ready", "failed")
REPORT_DELIVERIES = ("none", "pending", "sending", "sent", "failed")

reports = Table(
    "reports",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    # NULL: a report over every dealer.
    Column("dealer_id", String(64), ForeignKey("dealers.dealer_id"), nullable=True),
    Column("period", String(16), nullable=False),
    Column("period_start", UtcDateTime(), nullable=False),
    Column("period_end", UtcDateTime(), nullable=False),
    # "daily/acme-motors/2026-03-08T05:00:00+00:00" for a scheduled report, NULL ad hoc:
    # exactly one report per dealer and period, whatever the number of collectors.
    Column("claim_key", String(200), nullable=True),
    Column("timezone", String(64), nullable=False),
    Column("title", String(300), nullable=False),
    Column("status", String(16), nullable=False),
    # Who holds the row (generating or delivering) since claimed_at: a lease.
    Column("owner", String(64), nullable=False),
    Column("claimed_at", UtcDateTime(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime(), nullable=True),
    Column("body_html", Text, nullable=True),
    Column("body_json", Text, nullable=True),
    Column("body_text", Text, nullable=True),
    Column("delivery", String(16), nullable=False, server_default=text("'none'")),
    # ["email"]: channels that accepted the report, not sent again on a retry.
    Column("delivered_channels", JsonDocument, nullable=False),
    Column("delivery_attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    UniqueConstraint("claim_key", name="uq_reports_claim_key"),
    CheckConstraint(_one_of("period", REPORT_PERIODS), name="ck_reports_period"),
    CheckConstraint(_one_of("status", REPORT_STATUSES), name="ck_reports_status"),
    CheckConstraint(_one_of("delivery", REPORT_DELIVERIES), name="ck_reports_delivery"),
    CheckConstraint("period_end > period_start", name="ck_reports_range"),
    Index("ix_reports_dealer_created", "dealer_id", "created_at"),
    Index("ix_reports_delivery", "delivery"),
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
