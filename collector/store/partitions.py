"""Daily partitions of the raw PostgreSQL tables: created ahead, listed, dropped whole.

Migration 0008 makes ``samples`` (by ``time_ms``) and ``api_performance`` (by
``timestamp``) partitioned by range, one partition per UTC day named
``<table>_pYYYYMMDD``, plus ``<table>_default`` for rows of any day without a
partition (late or far-future data), so an insert never fails.

:class:`PostgresPartitionManager` keeps today and ``days_ahead`` days ahead
created (a scheduled job, hourly and at start) and lets retention drop
expired days. Creating a day is ``CREATE TABLE ... (LIKE parent)`` and then
``ATTACH PARTITION``: attaching needs only a SHARE UPDATE EXCLUSIVE lock on
the parent, so ingest and queries go on, where ``CREATE TABLE ... PARTITION
OF`` would take an ACCESS EXCLUSIVE one. Several collectors may do this at
once: a transaction-level advisory lock serialises them, and each re-checks
under it. Every DDL statement waits at most ``lock_timeout_ms`` for its
locks; a day that could not be created is retried at the next run (there
are ``days_ahead`` days of slack).

Nothing is ever moved out of the DEFAULT partition: a day whose rows are
already in it cannot be attached (PostgreSQL refuses), so that day stays in
DEFAULT, and the manager reports and logs how many rows DEFAULT holds.
SQLite has no partitions: :func:`partition_manager` returns None there.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Engine, exc, text

from collector.store.engine import translated_errors

logger = logging.getLogger(__name__)

DAYS_AHEAD = 3
DAY_MS = 86_400_000
LOCK_TIMEOUT_MS = 2000
# Counting the DEFAULT partition stops here: it only has to show that rows are there.
DEFAULT_ROWS_CAP = 1_000_000
# Any constant works; this one spells "dppartns" in ASCII.
PARTITION_LOCK_KEY = 0x6470706172746E73
# PostgreSQL error codes (SQLSTATE) the manager expects.
_CHECK_VIOLATION = "23514"  # DEFAULT already holds rows of the day
_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout
_DEADLOCK = "40P01"
_DUPLICATE_TABLE = "42P07"
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class PartitionedTable:
    name: str
    key_sql: str  # the partition key column, quoted where it must be
    millis: bool  # key in Unix ms; else a timestamptz


SAMPLES = PartitionedTable("samples", "time_ms", millis=True)
API_PERFORMANCE = PartitionedTable("api_performance", '"timestamp"', millis=False)
RAW_TABLES = (SAMPLES, API_PERFORMANCE)

_PARTITION_NAME = re.compile(
    rf"^(?P<table>{'|'.join(t.name for t in RAW_TABLES)})_(?:p(?P<day>\d{{8}})|default)$"
)


@dataclass(frozen=True, slots=True)
class DailyPartition:
    table: str
    name: str
    day: date

    @property
    def end(self) -> datetime:
        """The first moment after the partition's day (exclusive upper bound)."""
        return _midnight(self.day + timedelta(days=1))


@dataclass(frozen=True, slots=True)
class PartitionReport:
    created: tuple[str, ...] = ()
    # Days left for the next run: DEFAULT holds some of their rows, or a lock was busy.
    blocked: tuple[str, ...] = ()
    # Rows in each DEFAULT partition (counted up to DEFAULT_ROWS_CAP).
    default_rows: dict[str, int] = field(default_factory=dict)


class PartitionManager(ABC):
    """Time partitions of the raw tables (the role; PostgreSQL is the one implementation)."""

    @abstractmethod
    def ensure(self, now: datetime) -> PartitionReport:
        """Create the partitions of today and the days ahead that are missing (idempotent)."""

    @abstractmethod
    def expired(self, table: PartitionedTable, cutoff: datetime) -> list[DailyPartition]:
        """The daily partitions of ``table`` whose whole day is before ``cutoff``, oldest first."""

    @abstractmethod
    def drop(self, partition: DailyPartition) -> bool:
        """Detach and drop one partition. False: a lock was busy, try again later."""


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def is_partition_name(name: str) -> bool:
    """Whether ``name`` is a partition of a raw table (daily or DEFAULT), not a table of its own."""
    return _PARTITION_NAME.match(name) is not None


def partition_manager(engine: Engine, days_ahead: int = DAYS_AHEAD) -> PartitionManager | None:
    """The manager for the engine's backend; None where tables are not partitioned (SQLite)."""
    if engine.dialect.name != "postgresql":
        return None
    return PostgresPartitionManager(engine, days_ahead)


class PostgresPartitionManager(PartitionManager):
    def __init__(
        self,
        engine: Engine,
        days_ahead: int = DAYS_AHEAD,
        tables: tuple[PartitionedTable, ...] = RAW_TABLES,
        lock_timeout_ms: int = LOCK_TIMEOUT_MS,
    ) -> None:
        if days_ahead < 0:
            raise ValueError(f"days_ahead must be >= 0, got {days_ahead}")
        self._engine = engine
        self._days_ahead = days_ahead
        self._tables = tables
        self._lock_timeout_ms = int(lock_timeout_ms)

    def ensure(self, now: datetime) -> PartitionReport:
        today = now.astimezone(UTC).date()
        created: list[str] = []
        blocked: list[str] = []
        with translated_errors("creating time partitions"):
            for table in self._tables:
                for offset in range(self._days_ahead + 1):
                    day = today + timedelta(days=offset)
                    outcome = self._ensure_day(table, day)
                    if outcome == "created":
                        created.append(partition_name(table.name, day))
                    elif outcome == "blocked":
                        blocked.append(partition_name(table.name, day))
            default_rows = {t.name: self._default_rows(t) for t in self._tables}
        if created:
            logger.info("created time partitions %s", ", ".join(created))
        for table_name, count in default_rows.items():
            if count:
                logger.warning(
                    "%s_default holds %s rows outside the daily partitions (late or "
                    "future data); retention deletes them row by row",
                    table_name,
                    f">= {count}" if count >= DEFAULT_ROWS_CAP else count,
                )
        return PartitionReport(tuple(created), tuple(blocked), default_rows)

    def expired(self, table: PartitionedTable, cutoff: datetime) -> list[DailyPartition]:
        with translated_errors("listing time partitions"), self._engine.connect() as connection:
            names = connection.scalars(
                text(
                    "SELECT child.relname FROM pg_inherits link "
                    "JOIN pg_class child ON child.oid = link.inhrelid "
                    "WHERE link.inhparent = to_regclass(:parent)"
                ),
                {"parent": table.name},
            ).all()
        daily = [p for p in map(_parse, names) if p is not None and p.table == table.name]
        return sorted((p for p in daily if p.end <= cutoff), key=lambda p: p.day)

    def drop(self, partition: DailyPartition) -> bool:
        with translated_errors(f"dropping partition {partition.name}"):
            try:
                with self._engine.begin() as connection:
                    self._lock(connection)
                    if not _exists(connection, partition.name):
                        return False
                    connection.exec_driver_sql(
                        f"ALTER TABLE {partition.table} DETACH PARTITION {partition.name}"
                    )
                    connection.exec_driver_sql(f"DROP TABLE {partition.name}")
            except exc.DBAPIError as error:
                if _sqlstate(error) not in (_LOCK_NOT_AVAILABLE, _DEADLOCK):
                    raise
                logger.warning("partition %s not dropped, locks busy: %s", partition.name, error)
                return False
        logger.info("dropped expired partition %s", partition.name)
        return True

    def _ensure_day(self, table: PartitionedTable, day: date) -> str:
        """'created', 'present' or 'blocked'."""
        name = partition_name(table.name, day)
        with self._engine.connect() as connection:
            if _exists(connection, name):  # the usual case: no lock taken
                return "present"
        try:
            with self._engine.begin() as connection:
                self._lock(connection)
                if _exists(connection, name):  # another collector was first
                    return "present"
                self._create(connection, table, name, day)
        except exc.DBAPIError as error:
            state = _sqlstate(error)
            if state == _CHECK_VIOLATION:
                logger.warning(
                    "partition %s not created: %s_default already holds rows of that day, "
                    "which stay there",
                    name,
                    table.name,
                )
                return "blocked"
            if state in (_LOCK_NOT_AVAILABLE, _DEADLOCK):
                logger.warning("partition %s not created, locks busy; next run: %s", name, error)
                return "blocked"
            if state == _DUPLICATE_TABLE:  # made by another collector all the same
                return "present"
            raise
        return "created"

    def _lock(self, connection: Connection) -> None:
        # SET LOCAL takes no bind parameters; the value is an int.
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {self._lock_timeout_ms}")
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK_KEY})

    @staticmethod
    def _create(connection: Connection, table: PartitionedTable, name: str, day: date) -> None:
        connection.exec_driver_sql(
            f"CREATE TABLE {name} (LIKE {table.name} "
            "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"
        )
        # The indexes made by LIKE match the parent's, so ATTACH adopts them.
        connection.exec_driver_sql(
            f"ALTER TABLE {table.name} ATTACH PARTITION {name} FOR VALUES "
            f"FROM ({_bound(table, day)}) TO ({_bound(table, day + timedelta(days=1))})"
        )
        _name_indexes(connection, table.name, name)

    def _default_rows(self, table: PartitionedTable) -> int:
        default = f"{table.name}_default"
        with self._engine.connect() as connection:
            if not _exists(connection, default):
                return 0
            return int(
                connection.scalar(
                    text(f"SELECT count(*) FROM (SELECT 1 FROM {default} LIMIT :cap) AS capped"),
                    {"cap": DEFAULT_ROWS_CAP},
                )
                or 0
            )


def _name_indexes(connection: Connection, table: str, partition: str) -> None:
    """``<parent index>_pYYYYMMDD``, as migration 0008 names them, for plans that read well.

    Primary keys keep PostgreSQL's ``<partition>_pkey``.
    """
    children = connection.execute(
        text(
            "SELECT child.relname AS index_name, parent.relname AS parent_name "
            "FROM pg_index entry "
            "JOIN pg_class child ON child.oid = entry.indexrelid "
            "JOIN pg_inherits link ON link.inhrelid = child.oid "
            "JOIN pg_class parent ON parent.oid = link.inhparent "
            "WHERE entry.indrelid = to_regclass(:partition) AND NOT entry.indisprimary"
        ),
        {"partition": partition},
    ).all()
    suffix = partition.removeprefix(f"{table}_")
    for index_name, parent_name in children:
        wanted = f"{parent_name}_{suffix}"[:63]
        if index_name != wanted:
            connection.exec_driver_sql(f'ALTER INDEX "{index_name}" RENAME TO "{wanted}"')


def _exists(connection: Connection, name: str) -> bool:
    """Whether the table exists, as this statement's snapshot sees pg_class.

    Not ``to_regclass``: it looks in the backend's catalog cache, which can
    miss a table another collector created after we started waiting for the
    advisory lock (an advisory lock does not refresh the cache).
    """
    found = connection.scalar(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_class "
            "WHERE relname = :name AND relnamespace = CAST(current_schema() AS regnamespace))"
        ),
        {"name": name},
    )
    return found is True


def _parse(name: str) -> DailyPartition | None:
    match = _PARTITION_NAME.match(name)
    if match is None or match["day"] is None:
        return None
    try:
        digits = match["day"]
        day = date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None
    return DailyPartition(match["table"], name, day)


def _bound(table: PartitionedTable, day: date) -> str:
    if table.millis:
        return str((day - _EPOCH).days * DAY_MS)
    return f"'{day.isoformat()} 00:00:00+00'"


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _sqlstate(error: exc.DBAPIError) -> str | None:
    state = getattr(error.orig, "sqlstate", None)
    return state if isinstance(state, str) else None
