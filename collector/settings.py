"""The collector's settings: declared once as Options, held as a validated value object.

The CLI resolves :data:`COLLECTOR_OPTIONS` (flag > env > file > default) and
passes the result to :func:`collector.server.run_collector`, either as the
resolved mapping or as :class:`CollectorSettings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dealerpulse.config import (
    DB_OPTION,
    ConfigError,
    Option,
    byte_size,
    host_port,
    non_negative_float,
    path,
    positive_float,
    positive_int,
)

MIB = 1024 * 1024


def optional_path(value: Any) -> Path | None:
    return None if value is None or value == "" else path(value)


COLLECTOR_OPTIONS: list[Option] = [
    Option(
        "listen",
        host_port,
        "127.0.0.1:50051",
        "address of the ingest gRPC server",
        env=("DEALERPULSE_COLLECTOR_LISTEN",),
    ),
    DB_OPTION,
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
    Option("max_group_samples", positive_int, 20_000, "most samples committed in one transaction"),
    Option(
        "group_delay_s",
        non_negative_float,
        0.005,
        "how long a lightly loaded writer waits to group more batches into one transaction",
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
]


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    listen: str = "127.0.0.1:50051"
    db: str | None = None
    workers: int = 1
    # Set in worker processes: they join the port their parent bound.
    reuse_port: bool = False
    retention_days: int = 30
    max_batch_samples: int = 10_000
    max_batch_bytes: int = 4 * MIB
    max_receive_bytes: int = 16 * MIB
    max_future_s: float = 600.0
    max_queue_samples: int = 200_000
    max_group_samples: int = 20_000
    group_delay_s: float = 0.005
    max_in_flight_per_stream: int = 64
    auth_cache_ttl_s: float = 10.0
    shutdown_grace_s: float = 10.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None

    def __post_init__(self) -> None:
        if self.max_receive_bytes <= self.max_batch_bytes:
            raise ConfigError(
                f"max_receive_bytes ({self.max_receive_bytes}) must exceed max_batch_bytes "
                f"({self.max_batch_bytes}) so oversized batches are refused one by one"
            )
        if self.workers > 1 and self.listen.endswith(":0"):
            raise ConfigError("workers: more than one worker needs a fixed listen port, not :0")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key must be set together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("tls_client_ca needs tls_cert and tls_key (mTLS is TLS first)")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> CollectorSettings:
        """From :func:`dealerpulse.config.resolve` output; keys of other options are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known and v is not None})
