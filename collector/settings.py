"""The collector's settings: declared once as Options, held as a validated value object.

The CLI resolves :data:`COLLECTOR_OPTIONS` (flag > env > file > default) and
passes the result to :func:`collector.server.run_collector`, either as the
resolved mapping or as :class:`CollectorSettings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from collector.alerting.policy import NOTIFICATION_OPTIONS
from collector.alerting.rules import ALERT_OPTIONS
from collector.export.settings import EXPORT_OPTIONS, Headers
from collector.pool_settings import POOL_OPTIONS, PoolSettings
from dealerpulse.config import (
    DB_OPTION,
    ConfigError,
    Option,
    boolean,
    byte_size,
    host_port,
    non_negative_float,
    non_negative_int,
    optional_text,
    path,
    positive_float,
    positive_int,
)
from reporter.reports.options import REPORT_OPTIONS

MIB = 1024 * 1024


def optional_path(value: Any) -> Path | None:
    return None if value is None or value == "" else path(value)


def optional_port(value: Any) -> int | None:
    if value is None or value == "":
        return None
    number = positive_int(value)
    if number > 65535:
        raise ValueError(f"must be a port number (1-65535), got {value!r}")
    return number


def optional_host_port(value: Any) -> str | None:
    """HOST:PORT, or None when empty (the feature is off)."""
    return None if value is None or str(value).strip() == "" else host_port(value)


def address_list(value: Any) -> tuple[str, ...]:
    """'a@x.com, b@x.com' or a TOML list -> ('a@x.com', 'b@x.com')."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    addresses = tuple(str(item).strip() for item in items if str(item).strip())
    for address in addresses:
        if "@" not in address:
            raise ValueError(f"{address!r} is not an email address")
    return addresses


SMTP_SECURITY_CHOICES = ("none", "starttls", "ssl")


def smtp_security(value: Any) -> str:
    lowered = str(value).strip().lower()
    if lowered not in SMTP_SECURITY_CHOICES:
        raise ValueError(f"must be one of {', '.join(SMTP_SECURITY_CHOICES)}, got {value!r}")
    return lowered


# Alert evaluation and notification channels (issue 4). Secrets are never shown.
ALERTING_OPTIONS: list[Option] = [
    Option("alerting", boolean, True, "evaluate alert rules and send notifications"),
    Option(
        "alert_interval_s",
        positive_float,
        15.0,
        "seconds between evaluations of every alert rule",
        env=("ALERT_INTERVAL_S", "DEALERPULSE_ALERT_INTERVAL_S"),
    ),
    Option(
        "dispatch_interval_s",
        positive_float,
        3.0,
        "seconds between sends from the notification outbox",
    ),
    Option(
        "dashboard_url",
        optional_text,
        None,
        "base URL of the dashboard, linked from notifications",
        env=("DASHBOARD_URL", "DEALERPULSE_DASHBOARD_URL"),
    ),
    *ALERT_OPTIONS,
    *NOTIFICATION_OPTIONS,
    Option(
        "slack_webhook_url",
        optional_text,
        None,
        "Slack incoming webhook URL (enables the 'slack' channel)",
        env=("SLACK_WEBHOOK_URL",),
        secret=True,
    ),
    Option(
        "slack_bot_token",
        optional_text,
        None,
        "Slack bot token for chat.postMessage (with slack_channel; enables the 'slack' channel)",
        env=("SLACK_BOT_TOKEN",),
        secret=True,
    ),
    Option(
        "slack_channel",
        optional_text,
        None,
        "Slack channel for the bot token",
        env=("SLACK_CHANNEL",),
    ),
    Option(
        "slack_api_url",
        optional_text,
        None,
        "base URL of the Slack Web API (default: Slack's own)",
        env=("SLACK_API_URL",),
    ),
    Option(
        "smtp_host",
        optional_text,
        None,
        "SMTP server (enables the 'email' channel)",
        env=("SMTP_HOST",),
    ),
    Option(
        "smtp_port",
        optional_port,
        None,
        "SMTP port (default: 465 with ssl, else 587)",
        env=("SMTP_PORT",),
    ),
    Option("smtp_user", optional_text, None, "SMTP login user", env=("SMTP_USER",)),
    Option(
        "smtp_password",
        optional_text,
        None,
        "SMTP login password",
        env=("SMTP_PASSWORD",),
        secret=True,
    ),
    Option("smtp_from", optional_text, None, "sender address of alert emails", env=("SMTP_FROM",)),
    Option(
        "smtp_to", address_list, (), "recipients of alert emails, comma-separated", env=("SMTP_TO",)
    ),
    Option(
        "smtp_security",
        smtp_security,
        "starttls",
        "none, starttls or ssl",
        env=("SMTP_SECURITY",),
    ),
]


# What one dealer or one client may hold of the collector (issue 7).
LIMIT_OPTIONS: list[Option] = [
    Option(
        "ingest_dealer_rate_limit",
        non_negative_float,
        0.0,
        "samples per second one dealer may send, over all its agents (0: no limit); "
        "over it, batches are answered RESOURCE_EXHAUSTED with a retry delay",
        env=("INGEST_DEALER_RATE_LIMIT", "DEALERPULSE_INGEST_DEALER_RATE_LIMIT"),
    ),
    Option(
        "max_series_per_agent",
        positive_int,
        10_000,
        "series one agent may create; samples of further new series are not stored",
        env=("MAX_SERIES_PER_AGENT", "DEALERPULSE_MAX_SERIES_PER_AGENT"),
    ),
    Option(
        "stream_idle_timeout_s",
        non_negative_float,
        # Above the agent's longest interval (3600 s), so a slow agent is not cut
        # off between two of its own batches.
        3900.0,
        "end an ingest stream that sent no batch for this long (0: never)",
    ),
    Option(
        "max_connection_age_s",
        non_negative_float,
        3600.0,
        "close a client connection after this long (agents reconnect; 0: never)",
    ),
    Option(
        "max_connection_age_grace_s",
        non_negative_float,
        30.0,
        "time calls get to finish when a connection reaches its maximum age",
    ),
    Option(
        "keepalive_time_s",
        positive_float,
        60.0,
        "seconds between the server's keepalive pings on a connection",
    ),
    Option(
        "keepalive_timeout_s",
        positive_float,
        20.0,
        "close a connection whose keepalive ping is not answered within this",
    ),
    Option(
        "handshake_timeout_s",
        positive_float,
        20.0,
        "close a connection that has not completed its TLS/HTTP2 handshake within this",
    ),
]


# Rollups and retention (issue 5): see collector/rollup/.
ROLLUP_OPTIONS: list[Option] = [
    Option(
        "rollup_interval_s",
        positive_float,
        60.0,
        "seconds between rollup runs (1-minute and 1-hour summaries of new data)",
    ),
    Option(
        "retention_interval_s",
        positive_float,
        3600.0,
        "seconds between retention runs (deletes of expired raw rows and rollups)",
    ),
    Option(
        "rollup_1m_retention_days",
        positive_int,
        90,
        "days of 1-minute rollups kept (at least retention_days)",
        env=("ROLLUP_1M_RETENTION_DAYS", "DEALERPULSE_ROLLUP_1M_RETENTION_DAYS"),
    ),
    Option(
        "rollup_1h_retention_days",
        positive_int,
        730,
        "days of 1-hour rollups kept (at least rollup_1m_retention_days)",
        env=("ROLLUP_1H_RETENTION_DAYS", "DEALERPULSE_ROLLUP_1H_RETENTION_DAYS"),
    ),
    Option(
        "partition_days_ahead",
        positive_int,
        3,
        "PostgreSQL: daily partitions of the raw tables created ahead of today",
    ),
    Option(
        "partition_interval_s",
        positive_float,
        3600.0,
        "PostgreSQL: seconds between runs of the job that creates the daily partitions",
    ),
]


COLLECTOR_OPTIONS: list[Option] = [
    Option(
        "listen",
        host_port,
        "127.0.0.1:50051",
        "address of the ingest gRPC server",
        env=("DEALERPULSE_COLLECTOR_LISTEN",),
    ),
    DB_OPTION,
    *POOL_OPTIONS,
    Option(
        "workers",
        positive_int,
        1,
        "collector processes sharing the listen port (SO_REUSEPORT); each decodes and "
        "validates on its own core, the database dedups across them",
    ),
    Option(
        "retention_days",
        positive_int,
        30,
        "days of metrics kept; older samples are refused at ingest",
        env=("METRICS_RETENTION_DAYS", "DEALERPULSE_RETENTION_DAYS"),
    ),
    Option(
        "metrics_listen",
        optional_host_port,
        None,
        "address of the collector's own Prometheus /metrics (writer queue, jobs); empty: off",
        env=("DEALERPULSE_METRICS_LISTEN",),
    ),
    *ROLLUP_OPTIONS,
    Option(
        "max_batch_samples", positive_int, 10_000, "most samples one batch may hold (more: refused)"
    ),
    Option("max_batch_bytes", byte_size, 4 * MIB, "largest encoded batch accepted"),
    Option(
        "max_receive_bytes",
        byte_size,
        16 * MIB,
        "largest gRPC message read at all; above max_batch_bytes so that an oversized batch "
        "is refused on its own instead of breaking the stream",
    ),
    Option(
        "max_future_s",
        positive_float,
        600.0,
        "how far in the future a sample's time may be (agent clock skew)",
    ),
    Option(
        "max_queue_samples",
        positive_int,
        200_000,
        "samples waiting for the database before agents are told to retry later",
    ),
    # 40,000: two shards of 50 agents each, each with a 500-sample batch in
    # flight, fit in one group apiece; at 20,000 each shard alternated a full
    # group and a group of the rest, paying the fixed cost of a transaction
    # twice per round (bench.influx: +5 % on PostgreSQL and on SQLite).
    Option("max_group_samples", positive_int, 40_000, "most samples committed in one transaction"),
    Option(
        "group_delay_s",
        non_negative_float,
        0.005,
        "how long a lightly loaded writer waits to group more batches into one transaction",
    ),
    Option(
        "writer_shards",
        non_negative_int,
        0,
        "writer threads, each committing the batches of its own agents; "
        "0: 2 on PostgreSQL (its server works while the collector prepares), 1 on SQLite",
    ),
    Option(
        "max_in_flight_per_stream",
        positive_int,
        64,
        "batches of one stream received but not yet acknowledged",
    ),
    Option(
        "auth_cache_ttl_s",
        non_negative_float,
        10.0,
        "how long a checked token stays trusted (a revocation takes effect within this)",
    ),
    Option("shutdown_grace_s", positive_float, 10.0, "time to drain and ack on shutdown"),
    Option("tls_cert", optional_path, None, "PEM certificate chain of the server (enables TLS)"),
    Option("tls_key", optional_path, None, "PEM private key of the server"),
    Option(
        "tls_client_ca",
        optional_path,
        None,
        "PEM CA bundle; when set, agents must present a client certificate it signed (mTLS)",
    ),
    *LIMIT_OPTIONS,
    *ALERTING_OPTIONS,
    *EXPORT_OPTIONS,
    *REPORT_OPTIONS,
]


_POOL_KEYS = tuple(option.key for option in POOL_OPTIONS)


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    listen: str = "127.0.0.1:50051"
    db: str | None = None
    workers: int = 1
    # Set in worker processes: they join the port their parent bound.
    reuse_port: bool = False
    retention_days: int = 30
    # The collector's own Prometheus /metrics; None: not served.
    metrics_listen: str | None = None
    rollup_interval_s: float = 60.0
    retention_interval_s: float = 3600.0
    rollup_1m_retention_days: int = 90
    rollup_1h_retention_days: int = 730
    partition_days_ahead: int = 3
    partition_interval_s: float = 3600.0
    max_batch_samples: int = 10_000
    max_batch_bytes: int = 4 * MIB
    max_receive_bytes: int = 16 * MIB
    max_future_s: float = 600.0
    max_queue_samples: int = 200_000
    max_group_samples: int = 40_000
    group_delay_s: float = 0.005
    writer_shards: int = 0
    max_in_flight_per_stream: int = 64
    auth_cache_ttl_s: float = 10.0
    shutdown_grace_s: float = 10.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    ingest_dealer_rate_limit: float = 0.0
    max_series_per_agent: int = 10_000
    stream_idle_timeout_s: float = 3900.0
    max_connection_age_s: float = 3600.0
    max_connection_age_grace_s: float = 30.0
    keepalive_time_s: float = 60.0
    keepalive_timeout_s: float = 20.0
    handshake_timeout_s: float = 20.0
    alerting: bool = True
    # False in --workers processes: only the first process runs scheduled jobs.
    run_jobs: bool = True
    alert_interval_s: float = 15.0
    dispatch_interval_s: float = 3.0
    dashboard_url: str | None = None
    alert_threshold_response_time: float = 200.0
    alert_threshold_error_rate: float = 0.1
    alert_threshold_cpu: float = 80.0
    alert_threshold_memory: float = 85.0
    alert_threshold_disk: float = 90.0
    alert_agent_silence_s: float = 180.0
    alert_repeat_interval_s: float = 4 * 3600.0
    alert_escalate_after_s: float = 1800.0
    alert_escalation_channels: tuple[str, ...] = ()
    alert_group_wait_s: float = 30.0
    # Secrets stay out of repr(): settings objects end up in log lines and tracebacks.
    slack_webhook_url: str | None = field(default=None, repr=False)
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_channel: str | None = None
    slack_api_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    smtp_to: tuple[str, ...] = ()
    smtp_security: str = "starttls"
    # Forwarding to an OTLP/gRPC endpoint (collector/export/settings.py).
    otlp_export_endpoint: str | None = None
    otlp_export_headers: Headers = field(default=(), repr=False)
    otlp_export_insecure: bool | None = None
    otlp_export_ca_file: Path | None = None
    otlp_export_queue_batches: int = 1000
    otlp_export_timeout_s: float = 10.0
    datadog_api_key: str | None = field(default=None, repr=False)
    new_relic_license_key: str | None = field(default=None, repr=False)
    # Periodic reports (reporter/reports/options.py).
    reports_enabled: bool = True
    report_timezone: str = "UTC"
    report_daily_at: str = "06:00"  # "off": none
    report_weekly_on: str = "mon"  # "off": none
    report_recipients: tuple[str, ...] = ()
    report_slack: bool = True
    reporter_public_url: str | None = None
    report_check_interval_s: float = 600.0
    # The database pool (collector/store/pool.py); None: not resolved, the
    # store reads the DB_POOL_* and SLOW_QUERY_MS variables itself.
    db_pool_size: int | None = None
    db_pool_idle_timeout_s: float | None = None
    db_connect_timeout_s: float | None = None
    slow_query_ms: float | None = None
    sqlite_heap_limit_mib: int | None = None

    def __post_init__(self) -> None:
        if self.max_receive_bytes <= self.max_batch_bytes:
            raise ConfigError(
                f"max_receive_bytes ({self.max_receive_bytes}) must exceed max_batch_bytes "
                f"({self.max_batch_bytes}) so oversized batches are refused one by one"
            )
        if self.workers > 1 and self.listen.endswith(":0"):
            raise ConfigError("workers: more than one worker needs a fixed listen port, not :0")
        days = (self.retention_days, self.rollup_1m_retention_days, self.rollup_1h_retention_days)
        if not days[0] <= days[1] <= days[2]:
            raise ConfigError(
                "rollup_1m_retention_days and rollup_1h_retention_days: need retention_days "
                f"({self.retention_days}) <= rollup_1m_retention_days "
                f"({self.rollup_1m_retention_days}) <= rollup_1h_retention_days "
                f"({self.rollup_1h_retention_days})"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key must be set together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("tls_client_ca needs tls_cert and tls_key (mTLS is TLS first)")
        self._check_channels()

    def _check_channels(self) -> None:
        if self.slack_webhook_url and self.slack_bot_token:
            raise ConfigError("slack_webhook_url and slack_bot_token: set one, not both")
        if self.slack_bot_token and not self.slack_channel:
            raise ConfigError("slack_channel: required with slack_bot_token")
        if self.smtp_host and not (self.smtp_from and self.smtp_to):
            raise ConfigError("smtp_from and smtp_to: required with smtp_host")
        if self.smtp_security not in SMTP_SECURITY_CHOICES:
            raise ConfigError(f"smtp_security: must be one of {', '.join(SMTP_SECURITY_CHOICES)}")

    def pool_settings(self) -> PoolSettings | None:
        """The resolved pool options for the store, None when none were resolved."""
        return PoolSettings.from_resolved({key: getattr(self, key) for key in _POOL_KEYS})

    def alert_threshold_values(self) -> dict[str, float]:
        """The resolved values of :data:`collector.alerting.rules.ALERT_OPTIONS`."""
        return {option.key: float(getattr(self, option.key)) for option in ALERT_OPTIONS}

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> CollectorSettings:
        """From :func:`dealerpulse.config.resolve` output; keys of other options are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known and v is not None})
