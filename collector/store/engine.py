"""Engines for the two backends, and the translation of driver errors.

SQLite runs in WAL mode with ``synchronous=FULL`` by default: a commit is
on disk before the collector acks, across power loss too. Group commit makes
the one fsync per group cheap (see docs/notes/store.md for figures).
Write transactions start with ``BEGIN IMMEDIATE`` so that two writers queue
on the busy timeout instead of failing to upgrade a read lock.

SQLite's memory: each connection's page cache may reach ``sqlite_cache_mib``
(64 MiB, for the writer's hot set), and all connections of the process together
are held to ``sqlite_heap_limit_mib`` (128 MiB, SQLite's soft heap limit: past
it, caches recycle their own pages instead of growing; no query fails). See
collector.pool_settings for the budget's reasoning.

Every engine gives freed heap memory back to the system at most every
:data:`RELEASE_MEMORY_EVERY_S` after a connection returns to the pool
(:mod:`collector.store.memory`): under the soak, RSS held tens of MiB that
were free in glibc's arenas. It lowers RSS; it did not make it flat (README
"Reliability").
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import make_url

from collector.abc import StoreError
from collector.store.errors import StoreUnavailable, StoreWriteError
from collector.store.memory import install_memory_release
from collector.store.pool import (
    PoolSettings,
    connect_args,
    install_idle_timeout,
    install_slow_query_log,
)
from dealerpulse.config import redact_url

logger = logging.getLogger(__name__)

SqliteSync = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
# Execution option that makes a SQLite transaction take the write lock at BEGIN.
WRITE_OPTION = "dealerpulse_write"
# Execution option of the ingest writer's transactions: on SQLite they get the
# large page cache (``sqlite_cache_mib``), every other transaction a small one.
HOT_SET_OPTION = "dealerpulse_hot_set"
# Page cache of every other SQLite transaction (reads, rollups, alerting): one
# pass over its rows, for which SQLite's default (2 MiB) is about right.
SQLITE_OTHER_CACHE_MIB = 4
# A trim took 1-17 ms with RSS at 250-350 MiB (soak_profile, 200 agents).
RELEASE_MEMORY_EVERY_S = 10.0


def create_store_engine(
    url: str,
    *,
    pool_size: int = 20,
    busy_timeout_s: float = 10.0,
    sqlite_synchronous: SqliteSync = "FULL",
    sqlite_cache_mib: int = 64,
    pool: PoolSettings | None = None,
) -> Engine:
    """An engine for a sqlite:///PATH or postgresql[+psycopg]://... URL.

    ``pool``: size, idle and connect timeouts, slow-query threshold (see
    :mod:`collector.store.pool`); by default from the DB_POOL_SIZE,
    DB_POOL_IDLE_TIMEOUT_S, DB_CONNECT_TIMEOUT_S and SLOW_QUERY_MS variables,
    with ``pool_size`` when DB_POOL_SIZE is not set.
    """
    pool = pool or PoolSettings.from_env(size=pool_size)
    engine = _backend_engine(url, pool, busy_timeout_s, sqlite_synchronous, sqlite_cache_mib)
    install_idle_timeout(engine, pool.idle_timeout_s)
    install_slow_query_log(engine, pool.slow_query_ms)
    install_memory_release(engine, RELEASE_MEMORY_EVERY_S)
    return engine


def _backend_engine(
    url: str,
    pool: PoolSettings,
    busy_timeout_s: float,
    sqlite_synchronous: SqliteSync,
    sqlite_cache_mib: int,
) -> Engine:
    pool_size = pool.size
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ValueError(
                f"database URL {redact_url(url)!r}: in-memory SQLite is not supported "
                "(every connection would see its own database); use sqlite:///PATH"
            )
        engine = create_engine(
            parsed,
            pool_size=pool_size,
            pool_use_lifo=True,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_s},
        )
        _configure_sqlite(
            engine,
            busy_timeout_s,
            sqlite_synchronous,
            SqliteMemory(sqlite_cache_mib, pool.sqlite_heap_limit_mib),
        )
        return engine
    if backend == "postgresql":
        if parsed.drivername not in ("postgresql", "postgresql+psycopg"):
            raise ValueError(
                f"database URL {redact_url(url)!r}: PostgreSQL is supported through psycopg 3 "
                "only; use postgresql+psycopg://USER@HOST/DB"
            )
        parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_use_lifo=True,
            pool_pre_ping=True,
            connect_args=connect_args("postgresql", pool),
        )
    raise ValueError(
        f"database URL {redact_url(url)!r}: unsupported backend {backend!r} "
        "(use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB)"
    )


@dataclass(frozen=True, slots=True)
class SqliteMemory:
    """SQLite's memory: one connection's page cache, and the whole process's budget.

    ``cache_mib`` per connection (the writer's hot set, see on_connect);
    ``heap_limit_mib`` SQLite's soft heap limit, for every connection of the
    process together (``sqlite_heap_limit_mib``, see collector.pool_settings);
    0 leaves the limit as it is.
    """

    cache_mib: int
    heap_limit_mib: int

    def __post_init__(self) -> None:
        cache_mib = self.cache_mib
        if isinstance(cache_mib, bool) or not isinstance(cache_mib, int) or cache_mib <= 0:
            raise ValueError(f"sqlite_cache_mib must be a positive whole number, not {cache_mib!r}")

    def cache_kib(self, hot_set: bool) -> int:
        """The page cache of a transaction: the writer's hot set, or one pass over rows.

        Why two sizes: a rollup run read up to 64 MiB of pages into its
        connection's cache once a minute, and those caches are emptied again
        whenever another connection commits (WAL mode). Under the soak that
        made the collector's RSS jump by 60-80 MiB every minute.
        """
        return (self.cache_mib if hot_set else min(self.cache_mib, SQLITE_OTHER_CACHE_MIB)) * 1024

    def pragmas(self) -> list[str]:
        # Negative cache_size: KiB. The writer's hot set is one leaf page of
        # ix_samples_series_time per active series (see docs/notes/store.md).
        statements = [f"PRAGMA cache_size=-{self.cache_kib(hot_set=False)}"]
        if self.heap_limit_mib > 0:
            # Process-wide: every connection sets the same value.
            statements.append(f"PRAGMA soft_heap_limit={self.heap_limit_mib * 1024 * 1024}")
        return statements


def _configure_sqlite(
    engine: Engine, busy_timeout_s: float, synchronous: SqliteSync, memory: SqliteMemory
) -> None:
    if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(
            f"sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}"
        )

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        # Autocommit at the driver level: the "begin" hook below issues BEGIN
        # itself (the sqlite3 module's implicit transactions get this wrong).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            for pragma in memory.pragmas():
                cursor.execute(pragma)
        finally:
            cursor.close()
        record.info["cache_kib"] = memory.cache_kib(hot_set=False)

    def on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        _size_cache(connection, memory.cache_kib(options.get(HOT_SET_OPTION, False)))
        immediate = options.get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)


def _size_cache(connection: Connection, kib: int) -> None:
    """Set the SQLite connection's page cache to ``kib`` unless it has that size.

    A smaller size frees the pages beyond it at once. The size in force is
    remembered with the driver connection (the pool keeps its ``info``).
    """
    info = connection.connection.info
    if info.get("cache_kib") != kib:
        connection.exec_driver_sql(f"PRAGMA cache_size=-{kib}")
        info["cache_kib"] = kib


@contextmanager
def translated_errors(action: str) -> Iterator[None]:
    """Turn SQLAlchemy and driver errors into StoreError subclasses naming the action."""
    try:
        yield
    except StoreError:
        raise
    except Exception as error:
        translated = translate(error, action)
        if translated is None:
            raise
        raise translated from error


def translate(error: BaseException, action: str) -> StoreError | None:
    """The StoreError for a database error, or None for anything else (a bug: re-raise)."""
    if isinstance(error, OverflowError):  # sqlite3 refuses ints beyond 64 bits this way
        return StoreWriteError(f"{action} failed: a number exceeds 64 bits: {error}")
    cause: BaseException = error
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        cause = error.orig
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return StoreUnavailable(f"{action}: lost the database connection: {cause}")
    if isinstance(error, exc.TimeoutError | exc.DisconnectionError):
        return StoreUnavailable(f"{action}: no database connection available: {error}")
    if _is_unavailable(cause):
        return StoreUnavailable(f"{action}: database unavailable: {cause}")
    if isinstance(error, exc.SQLAlchemyError | sqlite3.Error) or _is_psycopg_error(cause):
        return StoreWriteError(f"{action} failed: {cause}")
    return None


def _is_unavailable(cause: BaseException) -> bool:
    if isinstance(cause, sqlite3.OperationalError):
        # "no such table" is a schema problem, not an outage.
        return "no such" not in str(cause)
    if _is_psycopg_error(cause):
        import psycopg

        return isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError)
    return False


def _is_psycopg_error(cause: BaseException) -> bool:
    # psycopg is only imported when a PostgreSQL URL is used.
    return type(cause).__module__.startswith("psycopg")
