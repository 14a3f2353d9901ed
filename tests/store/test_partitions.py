"""Daily time partitions of the raw tables (migration 0008, collector/store/partitions.py).

Every test here but the SQLite one runs on a fresh PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text

from collector.rollup.retention import RetentionPolicy, RetentionRunner
from collector.server import CollectorServer
from collector.settings import CollectorSettings
from collector.store import SQLAlchemyMetricStore, open_store
from collector.store.migrate import MIGRATIONS_DIR, head_revision
from collector.store.partitions import (
    API_PERFORMANCE,
    SAMPLES,
    PartitionReport,
    PostgresPartitionManager,
    partition_manager,
    partition_name,
)
from dealerpulse.clock import FakeClock, to_unix_ms
from dealerpulse.model import EndpointStat, Sample

from .store_factories import DEALER, add_dealer, batch, sample

DAY = timedelta(days=1)
# Real time: migration 0008 creates the partitions of the real today and days ahead.
TODAY = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def _rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(text(sql), params))


def _children(engine: Engine, table: str) -> set[str]:
    found = _rows(
        engine,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(:t)",
        t=table,
    )
    return {row.relname for row in found}


def _endpoint(at: datetime) -> EndpointStat:
    end_ms = to_unix_ms(at)
    return EndpointStat(
        route="/api/leads",
        method="GET",
        start_ms=end_ms - 10_000,
        end_ms=end_ms,
        count=2,
        duration_sum_ms=30.0,
        duration_min_ms=10.0,
        duration_max_ms=20.0,
        status_counts=((200, 2),),
    )


def _write(store: SQLAlchemyMetricStore, seq: int, moments: list[datetime]) -> None:
    """A cpu sample and an endpoint statistic at each moment, in one batch."""
    points: tuple[Sample, ...] = tuple(
        sample("cpu.percent", float(i), to_unix_ms(at)) for i, at in enumerate(moments)
    )
    endpoints = tuple(_endpoint(at) for at in moments)
    store.write_batches([batch(seq=seq, samples=points, endpoints=endpoints)], TODAY)


def _migrate(engine: Engine, target: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, target)


def _everything(engine: Engine) -> tuple[list[Any], list[Any], list[Any]]:
    samples = _rows(engine, "SELECT id, series_id, time_ms, value FROM samples ORDER BY id")
    endpoints = _rows(
        engine,
        'SELECT id, "timestamp", dealer_id, endpoint, request_count, status_counts '
        "FROM api_performance ORDER BY id",
    )
    view = _rows(
        engine,
        'SELECT id, "timestamp", dealer_id, metric_name, metric_value, metadata '
        "FROM performance_metrics ORDER BY id",
    )
    return samples, endpoints, view


@pytest.fixture
def store_at_0007(pg_url: str) -> Iterator[SQLAlchemyMetricStore]:
    """A store whose database stops at the schema before partitioning."""
    store = SQLAlchemyMetricStore(pg_url, pool_size=3)
    try:
        _migrate(store.engine, "0007")
        yield store
    finally:
        store.close()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[SQLAlchemyMetricStore]:
    store = open_store(pg_url, pool_size=5)
    try:
        yield store
    finally:
        store.close()


@pytest.mark.postgres
def test_migration_keeps_every_row_and_the_view_and_ingest_goes_on(
    store_at_0007: SQLAlchemyMetricStore,
) -> None:
    store, engine = store_at_0007, store_at_0007.engine
    add_dealer(store)
    # Two recent days, and one so old that it gets no partition of its own.
    _write(store, 1, [TODAY - 2 * DAY, TODAY - DAY, TODAY, TODAY - 1000 * DAY])
    before = _everything(engine)

    store.migrate()

    assert store.schema_version() == head_revision()
    assert _everything(engine) == before
    today = TODAY.date()
    daily = {partition_name("samples", today + n * DAY) for n in range(-2, 4)}
    assert _children(engine, "samples") == daily | {"samples_default"}
    assert _rows(engine, "SELECT count(*) AS n FROM samples_default")[0].n == 1
    assert _rows(engine, "SELECT count(*) AS n FROM api_performance_default")[0].n == 1
    # Ingest through the real store: new ids follow the old ones.
    _write(store, 2, [TODAY + timedelta(minutes=1)])
    ids = [row.id for row in _rows(engine, "SELECT id FROM samples ORDER BY time_ms")]
    assert ids[-1] > max(row.id for row in before[0])
    assert store.count_samples("agent-1") == 5
    assert len(_rows(engine, "SELECT id FROM performance_metrics")) == 5
    assert len(_rows(engine, "SELECT id FROM api_performance")) == 5


@pytest.mark.postgres
def test_downgrade_gives_back_plain_tables_with_every_row(
    store_at_0007: SQLAlchemyMetricStore,
) -> None:
    store, engine = store_at_0007, store_at_0007.engine
    add_dealer(store)
    store.migrate()
    _write(store, 1, [TODAY - DAY, TODAY, TODAY - 1000 * DAY])
    before = _everything(engine)

    _migrate(engine, "0007", down=True)

    assert _everything(engine) == before
    kinds = _rows(
        engine,
        "SELECT relname, relkind FROM pg_class WHERE relname IN ('samples', 'api_performance')",
    )
    assert {(row.relname, row.relkind) for row in kinds} == {
        ("samples", "r"),
        ("api_performance", "r"),
    }
    # The plain tables take new rows, and upgrading again keeps them all.
    _write(store, 2, [TODAY + timedelta(minutes=1)])
    store.migrate()
    assert store.count_samples("agent-1") == 4
    assert len(_everything(engine)[1]) == 4


@pytest.mark.postgres
def test_partitions_are_created_ahead_once(pg_store: SQLAlchemyMetricStore) -> None:
    manager = PostgresPartitionManager(pg_store.engine, days_ahead=3)
    start = datetime(2031, 5, 30, 23, 59, tzinfo=UTC)

    first = manager.ensure(start)
    again = manager.ensure(start + timedelta(minutes=30))  # the next day, one more partition

    days = [date(2031, 5, 30) + n * DAY for n in range(5)]
    expected = [partition_name(t.name, d) for t in (SAMPLES, API_PERFORMANCE) for d in days[:4]]
    assert sorted(first.created) == sorted(expected)
    assert again.created == (
        partition_name("samples", days[4]),
        partition_name("api_performance", days[4]),
    )
    assert manager.ensure(start).created == ()
    assert {partition_name("samples", d) for d in days} <= _children(pg_store.engine, "samples")
    # A partition made by the manager behaves like one made by the migration:
    # the series/time index, and no key index (migration 0010).
    indexes = _rows(
        pg_store.engine, "SELECT indexname FROM pg_indexes WHERE tablename = 'samples_p20310601'"
    )
    assert {row.indexname for row in indexes} == {"ix_samples_series_time_p20310601"}
    endpoint_indexes = _rows(
        pg_store.engine,
        "SELECT indexname FROM pg_indexes WHERE tablename = 'api_performance_p20310601'",
    )
    assert "api_performance_p20310601_pkey" in {row.indexname for row in endpoint_indexes}
    add_dealer(pg_store)
    at = datetime(2031, 6, 1, 8, tzinfo=UTC)
    _write(pg_store, 1, [at])
    assert _rows(pg_store.engine, "SELECT count(*) AS n FROM samples_p20310601")[0].n == 1
    assert _rows(pg_store.engine, "SELECT count(*) AS n FROM api_performance_p20310601")[0].n == 1


@pytest.mark.postgres
def test_two_managers_at_once_create_each_partition_once(pg_store: SQLAlchemyMetricStore) -> None:
    engines = [create_engine(pg_store.engine.url, pool_size=2) for _ in range(2)]
    start = datetime(2032, 2, 27, 6, tzinfo=UTC)
    barrier = threading.Barrier(2, timeout=30)
    reports: list[PartitionReport] = []
    errors: list[BaseException] = []

    def run(engine: Engine) -> None:
        try:
            barrier.wait()
            reports.append(PostgresPartitionManager(engine, days_ahead=3).ensure(start))
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for engine in engines:
            engine.dispose()
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    created = [name for report in reports for name in report.created]
    assert len(created) == len(set(created)) == 8  # 4 days of 2 tables, each made once
    assert all(report.blocked == () for report in reports)


@pytest.mark.postgres
def test_retention_drops_whole_expired_days_and_keeps_what_row_deletes_keep(
    pg_store: SQLAlchemyMetricStore,
) -> None:
    engine = pg_store.engine
    now = datetime(2030, 1, 15, 12, tzinfo=UTC)
    cutoff = now - 30 * DAY  # 2029-12-16 12:00, in the middle of a day
    manager = PostgresPartitionManager(engine, days_ahead=0)
    ages_days = (40, 31, 30.25, 29.75, 29, 1)  # 30.25/29.75: either side of the cutoff
    moments = [now - timedelta(days=age) for age in ages_days]
    for moment in moments:
        manager.ensure(moment)
    add_dealer(pg_store)
    # 100 days old: no partition, so the row sits in DEFAULT.
    _write(pg_store, 1, [*moments, now - 100 * DAY])
    keep = {
        row.id
        for row in _rows(engine, "SELECT id FROM samples WHERE time_ms >= :c", c=to_unix_ms(cutoff))
    }
    keep_endpoints = {
        row.id
        for row in _rows(engine, 'SELECT id FROM api_performance WHERE "timestamp" >= :c', c=cutoff)
    }

    expired = {
        name
        for table in ("samples", "api_performance")
        for name in _children(engine, table)
        if not name.endswith("_default") and name[-8:] < f"{cutoff:%Y%m%d}"
    }

    report = RetentionRunner(engine, RetentionPolicy(raw_days=30)).run(now)

    assert {row.id for row in _rows(engine, "SELECT id FROM samples")} == keep
    assert {row.id for row in _rows(engine, "SELECT id FROM api_performance")} == keep_endpoints
    assert len(keep) == 3
    # Days 40 and 31 went whole in both tables (so did the days the migration
    # created, all before the cutoff); the cutoff's own day and DEFAULT row by row.
    assert set(report.dropped_partitions) == expired
    assert {
        partition_name(table, day)
        for table in ("samples", "api_performance")
        for day in (date(2029, 12, 6), date(2029, 12, 15))
    } <= expired
    assert report.partitions_dropped == len(expired)
    assert (report.deleted["samples"], report.deleted["api_performance"]) == (2, 2)
    assert partition_name("samples", date(2029, 12, 16)) in _children(engine, "samples")
    again = RetentionRunner(engine, RetentionPolicy(raw_days=30)).run(now)
    assert (again.partitions_dropped, again.deleted["samples"]) == (0, 0)


@pytest.mark.postgres
def test_late_data_lands_in_default_is_kept_and_reported(pg_store: SQLAlchemyMetricStore) -> None:
    engine = pg_store.engine
    add_dealer(pg_store)
    late = TODAY - 900 * DAY  # older than any partition
    _write(pg_store, 1, [late, TODAY])

    assert pg_store.count_samples("agent-1") == 2
    assert _rows(engine, "SELECT count(*) AS n FROM samples_default")[0].n == 1
    manager = PostgresPartitionManager(engine, days_ahead=0)
    report = manager.ensure(TODAY)
    assert report.default_rows == {"samples": 1, "api_performance": 1}
    # Its day cannot get a partition now (PostgreSQL refuses while DEFAULT holds
    # its rows): the manager says so and leaves the row where it is.
    blocked = manager.ensure(late)
    assert blocked.created == ()
    assert set(blocked.blocked) == {
        partition_name("samples", late.date()),
        partition_name("api_performance", late.date()),
    }
    assert pg_store.count_samples("agent-1") == 2
    seen = _rows(engine, "SELECT time_ms FROM samples WHERE time_ms = :t", t=to_unix_ms(late))
    assert len(seen) == 1


@pytest.mark.postgres
def test_the_collector_creates_partitions_when_it_starts(pg_store: SQLAlchemyMetricStore) -> None:
    start = datetime(2033, 3, 3, 10, tzinfo=UTC)
    settings = CollectorSettings(alerting=False)

    async def scenario() -> None:
        server = CollectorServer(pg_store, "127.0.0.1:0", settings, FakeClock(start))
        await server.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while server.maintenance_job_stats().partition_runs < 1:
                assert loop.time() < deadline, "no partition run within 30 s"
                await asyncio.sleep(0.01)
        finally:
            await server.stop(5.0)

    asyncio.run(scenario())
    wanted = {partition_name("samples", start.date() + n * DAY) for n in range(4)}
    assert wanted <= _children(pg_store.engine, "samples")


def test_sqlite_has_no_partitions(sqlite_url: str) -> None:
    store = open_store(sqlite_url, pool_size=2)
    try:
        assert partition_manager(store.engine) is None
        add_dealer(store, DEALER)
        _write(store, 1, [TODAY - 100 * DAY, TODAY])
        report = RetentionRunner(store.engine).run(TODAY)
        assert (report.partitions_dropped, report.deleted["samples"]) == (0, 1)
    finally:
        store.close()
