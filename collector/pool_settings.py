"""Database pool options and their value object, free of SQLAlchemy.

Kept apart from :mod:`collector.store.pool` (which installs them on an
engine) so that the option lists of every command can be built where only
the agent's dependencies are installed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dealerpulse.config import (
    Option,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    resolve,
)

# SQLite's page caches are per connection (``sqlite_cache_mib``, 64 MiB: the
# writer's hot set), and the pool holds up to 20 connections: 1.25 GiB if every
# cache filled, which readers of a quiet database can do. The soft heap limit
# bounds their sum instead: the writer can still use its 64 MiB, and once SQLite's
# heap (caches, prepared statements, schemas) passes the limit, every cache
# recycles its own pages rather than taking new ones. It never fails a query.
# Under the soak the heap held 5-13 MiB (caches are emptied whenever another
# connection commits in WAL mode), so the limit only bounds the worst case.
DEFAULT_SQLITE_HEAP_LIMIT_MIB = 128


POOL_OPTIONS: tuple[Option, ...] = (
    Option(
        "db_pool_size",
        positive_int,
        20,
        "database connections kept open in the pool",
        env=("DB_POOL_SIZE",),
    ),
    Option(
        "db_pool_idle_timeout_s",
        non_negative_float,
        30.0,
        "a pooled connection idle this long is closed before reuse (0: never)",
        env=("DB_POOL_IDLE_TIMEOUT_S",),
    ),
    Option(
        "db_connect_timeout_s",
        positive_float,
        2.0,
        "seconds to open a PostgreSQL connection before giving up",
        env=("DB_CONNECT_TIMEOUT_S",),
    ),
    Option(
        "slow_query_ms",
        non_negative_float,
        200.0,
        "log statements that take longer than this many ms (0: off)",
        env=("SLOW_QUERY_MS",),
    ),
    Option(
        "sqlite_heap_limit_mib",
        non_negative_int,
        DEFAULT_SQLITE_HEAP_LIMIT_MIB,
        "SQLite's memory budget for the whole process, all connections (MiB, 0: none): "
        "past it, page caches reuse their pages instead of growing",
        env=("SQLITE_HEAP_LIMIT_MIB",),
    ),
)


@dataclass(frozen=True, slots=True)
class PoolSettings:
    size: int = 20
    idle_timeout_s: float = 30.0
    connect_timeout_s: float = 2.0
    slow_query_ms: float = 200.0
    # SQLite only; a process-wide setting (the last store opened sets it).
    sqlite_heap_limit_mib: int = DEFAULT_SQLITE_HEAP_LIMIT_MIB

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"db_pool_size must be positive, got {self.size}")
        if self.sqlite_heap_limit_mib < 0:
            raise ValueError(
                f"sqlite_heap_limit_mib must be 0 or more, got {self.sqlite_heap_limit_mib}"
            )
        for name in ("idle_timeout_s", "connect_timeout_s", "slow_query_ms"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> PoolSettings:
        """From :func:`dealerpulse.config.resolve` output over :data:`POOL_OPTIONS`."""
        return cls(
            size=values["db_pool_size"],
            idle_timeout_s=values["db_pool_idle_timeout_s"],
            connect_timeout_s=values["db_connect_timeout_s"],
            slow_query_ms=values["slow_query_ms"],
            sqlite_heap_limit_mib=values["sqlite_heap_limit_mib"],
        )

    @classmethod
    def from_resolved(cls, values: Mapping[str, Any]) -> PoolSettings | None:
        """From a command's resolved settings (flag > env > file > default); None when
        they hold no pool options (then the store reads the environment itself)."""
        keys = [option.key for option in POOL_OPTIONS]
        present = [values.get(key) is not None for key in keys]
        if not any(present):
            return None
        defaults = {option.key: option.default for option in POOL_OPTIONS}
        return cls.from_values(
            {key: values[key] if values.get(key) is not None else defaults[key] for key in keys}
        )

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, size: int | None = None
    ) -> PoolSettings:
        """The environment's settings (a ConfigError names a bad variable); ``size``
        is the caller's pool size, used when DB_POOL_SIZE is not set."""
        environ = os.environ if env is None else env
        values = resolve(POOL_OPTIONS, {}, environ)
        if size is not None and not environ.get("DB_POOL_SIZE"):
            values["db_pool_size"] = size
        return cls.from_values(values)
