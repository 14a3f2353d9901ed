"""Settings of the HTTP gateway: declared once as Options, held as a validated value object.

The reporter's settings include :data:`HTTP_OPTIONS`; the seed's variables
``RATE_LIMIT_REQUESTS`` and ``RATE_LIMIT_WINDOW_S`` are honoured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from dealerpulse.config import ConfigError, Option, positive_float, positive_int


def optional_listen(value: Any) -> str | None:
    """'127.0.0.1:8080' (port 0 picks a free one); empty: no HTTP server."""
    if value is None or str(value).strip() == "":
        return None
    raw = str(value).strip()
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be HOST:PORT, got {raw!r}")
    return raw


HTTP_OPTIONS: tuple[Option, ...] = (
    Option(
        "http",
        optional_listen,
        None,
        "address of the HTTP API and dashboard, e.g. 127.0.0.1:8080 (empty: no HTTP server)",
        env=("DEALERPULSE_HTTP",),
    ),
    Option(
        "rate_limit_requests",
        positive_int,
        100,
        "API requests one client (token, else IP address) may make per rate limit window",
        env=("RATE_LIMIT_REQUESTS", "DEALERPULSE_RATE_LIMIT_REQUESTS"),
    ),
    Option(
        "rate_limit_window_s",
        positive_float,
        900.0,
        "length of the rate limit window in seconds (fixed windows)",
        env=("RATE_LIMIT_WINDOW_S", "DEALERPULSE_RATE_LIMIT_WINDOW_S"),
    ),
    Option(
        "dashboard_refresh_s",
        positive_float,
        30.0,
        "seconds between the dashboard's automatic refreshes (the page's ?refresh= overrides)",
    ),
    Option(
        "rate_limit_max_clients",
        positive_int,
        10_000,
        "clients the rate limiter remembers at most (bounds its memory)",
    ),
)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    http: str | None = None
    rate_limit_requests: int = 100
    rate_limit_window_s: float = 900.0
    rate_limit_max_clients: int = 10_000
    dashboard_refresh_s: float = 30.0
    # The line the dashboard draws on response-time charts (ALERT_THRESHOLD_RESPONSE_TIME).
    alert_threshold_response_time: float = 200.0
    # How long a checked token stays trusted (a revocation takes effect within this).
    auth_cache_ttl_s: float = 10.0
    # Seconds uvicorn waits for open requests when the reporter stops.
    shutdown_grace_s: float = 5.0

    def __post_init__(self) -> None:
        if self.rate_limit_requests <= 0:
            raise ConfigError("rate_limit_requests: must be a positive whole number")
        if self.rate_limit_window_s <= 0:
            raise ConfigError("rate_limit_window_s: must be a positive number of seconds")
        if self.rate_limit_max_clients <= 0:
            raise ConfigError("rate_limit_max_clients: must be a positive whole number")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> HttpSettings:
        """From :func:`dealerpulse.config.resolve` output; keys of other options are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known and v is not None})
