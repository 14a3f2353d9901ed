"""The reporter's settings: declared once as Options, held as a validated value object.

``dealerpulse reporter`` resolves :data:`REPORTER_OPTIONS` (flag > env > file
> default) and passes the result to :func:`reporter.server.run_reporter`.

The database pool is configured like the collector's: ``db_pool_size``,
``db_pool_idle_timeout_s``, ``db_connect_timeout_s`` and ``slow_query_ms``
as flags, DB_POOL_SIZE, DB_POOL_IDLE_TIMEOUT_S, DB_CONNECT_TIMEOUT_S and
SLOW_QUERY_MS variables, or config file keys (see :mod:`collector.store.pool`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from collector.health import HEALTH_OPTIONS, HealthThresholds
from collector.pool_settings import POOL_OPTIONS, PoolSettings
from collector.settings import optional_path
from dealerpulse.config import (
    DB_OPTION,
    ConfigError,
    Option,
    host_port,
    non_negative_float,
    optional_text,
    positive_float,
    positive_int,
)
from reporter.cache import Freshness
from reporter.http.settings import HTTP_OPTIONS

DEFAULT_LISTEN = "127.0.0.1:50052"

CACHE_OPTIONS: tuple[Option, ...] = (
    Option(
        "redis_url",
        optional_text,
        None,
        "Redis URL of a result cache shared by several reporters (default: in-process cache)",
        env=("REDIS_URL", "DEALERPULSE_REDIS_URL"),
        secret=True,
    ),
    Option("cache_ttl_realtime_s", non_negative_float, 5.0, "cache TTL of real-time answers"),
    Option("cache_ttl_1h_s", non_negative_float, 15.0, "cache TTL of ranges up to 1 hour"),
    Option("cache_ttl_24h_s", non_negative_float, 60.0, "cache TTL of ranges up to 24 hours"),
    Option("cache_ttl_7d_s", non_negative_float, 300.0, "cache TTL of ranges up to 7 days"),
    Option("cache_ttl_30d_s", non_negative_float, 600.0, "cache TTL of longer ranges"),
    Option(
        "cache_min_fresh_s",
        non_negative_float,
        5.0,
        "how long a long-range answer is still served after new data arrived for its dealer",
    ),
    Option("cache_max_entries", positive_int, 1024, "answers the in-process cache holds at most"),
)

REPORTER_OPTIONS: list[Option] = [
    Option(
        "listen",
        host_port,
        DEFAULT_LISTEN,
        "address of the reporter's gRPC server",
        env=("DEALERPULSE_REPORTER_LISTEN",),
    ),
    DB_OPTION,
    *HTTP_OPTIONS,
    *CACHE_OPTIONS,
    Option(
        "realtime_window_s",
        positive_float,
        300.0,
        "the window of real-time health figures, in seconds",
    ),
    Option(
        "auth_cache_ttl_s",
        non_negative_float,
        10.0,
        "how long a checked token stays trusted (a revocation takes effect within this)",
    ),
    Option("shutdown_grace_s", positive_float, 5.0, "time to finish open calls on shutdown"),
    Option("tls_cert", optional_path, None, "PEM certificate chain of the server (enables TLS)"),
    Option("tls_key", optional_path, None, "PEM private key of the server"),
    *HEALTH_OPTIONS,
    *POOL_OPTIONS,
]


@dataclass(frozen=True, slots=True)
class CacheTtls:
    """TTL by what is asked: real time, and ranges by their length."""

    realtime_s: float = 5.0
    hour_s: float = 15.0
    day_s: float = 60.0
    week_s: float = 300.0
    month_s: float = 600.0
    min_fresh_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("realtime_s", "hour_s", "day_s", "week_s", "month_s", "min_fresh_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"cache TTL {name}: must be zero or positive, got {value!r}")

    def realtime(self) -> Freshness:
        # New data always invalidates a real-time answer.
        return Freshness(self.realtime_s, 0.0)

    def for_range(self, duration: timedelta) -> Freshness:
        if duration <= timedelta(hours=1):
            ttl = self.hour_s
        elif duration <= timedelta(hours=24):
            ttl = self.day_s
        elif duration <= timedelta(days=7):
            ttl = self.week_s
        else:
            ttl = self.month_s
        return Freshness(ttl, min(self.min_fresh_s, ttl))


@dataclass(frozen=True, slots=True)
class ReporterSettings:
    listen: str = DEFAULT_LISTEN
    db: str | None = None
    http: str | None = None
    # May hold a password: kept out of repr().
    redis_url: str | None = field(default=None, repr=False)
    ttls: CacheTtls = field(default_factory=CacheTtls)
    cache_max_entries: int = 1024
    realtime_window_s: float = 300.0
    auth_cache_ttl_s: float = 10.0
    shutdown_grace_s: float = 5.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    thresholds: HealthThresholds = field(default_factory=HealthThresholds)
    # Everything resolved, for the HTTP part's own settings (rate limits...).
    values: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # None: the store reads the DB_POOL_* environment variables itself.
    pool: PoolSettings | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key must be set together")
        if not math.isfinite(self.realtime_window_s) or self.realtime_window_s <= 0:
            raise ConfigError(
                f"realtime_window_s: must be a positive number, got {self.realtime_window_s!r}"
            )

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> ReporterSettings:
        """From :func:`dealerpulse.config.resolve` output over :data:`REPORTER_OPTIONS`."""
        ttls = CacheTtls(
            realtime_s=values["cache_ttl_realtime_s"],
            hour_s=values["cache_ttl_1h_s"],
            day_s=values["cache_ttl_24h_s"],
            week_s=values["cache_ttl_7d_s"],
            month_s=values["cache_ttl_30d_s"],
            min_fresh_s=values["cache_min_fresh_s"],
        )
        return cls(
            listen=values["listen"],
            db=values.get("db"),
            http=values.get("http"),
            redis_url=values.get("redis_url"),
            ttls=ttls,
            cache_max_entries=values["cache_max_entries"],
            realtime_window_s=values["realtime_window_s"],
            auth_cache_ttl_s=values["auth_cache_ttl_s"],
            shutdown_grace_s=values["shutdown_grace_s"],
            tls_cert=values.get("tls_cert"),
            tls_key=values.get("tls_key"),
            thresholds=HealthThresholds.from_values(values),
            pool=PoolSettings.from_resolved(values),
            values=dict(values),
        )
