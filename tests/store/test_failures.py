"""A failed write commits nothing, and database trouble surfaces as a StoreError."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import func, select

from collector.abc import UnknownDealer
from collector.store import SQLAlchemyMetricStore, StoreUnavailable, StoreWriteError, open_store
from collector.store.schema import samples, series, series_latest
from dealerpulse.clock import from_unix_ms
from dealerpulse.model import Gap, WriteOutcome

from .store_factories import DEALER, NOW, T0, add_dealer, batch, host_samples, sample


def _rows(store: SQLAlchemyMetricStore) -> dict[str, int]:
    with store.engine.connect() as connection:
        return {
            table.name: int(connection.scalar(select(func.count()).select_from(table)) or 0)
            for table in (samples, series, series_latest)
        }


def test_a_batch_for_an_unknown_dealer_fails_the_whole_group(
    store: SQLAlchemyMetricStore,
) -> None:
    add_dealer(store)
    group = [
        batch("agent-1", 1, samples=host_samples(T0)),
        batch("agent-x", 1, dealer_id="nobody", samples=host_samples(T0)),
        batch("agent-2", 1, samples=host_samples(T0)),
    ]

    with pytest.raises(UnknownDealer, match="nobody"):
        store.write_batches(group, NOW)

    assert _rows(store) == {"samples": 0, "series": 0, "series_latest": 0}
    assert store.committed_batches("agent-1") == {}
    assert store.list_agents() == []


def test_a_failure_late_in_the_transaction_rolls_back_and_forgets_new_series(
    store: SQLAlchemyMetricStore,
) -> None:
    add_dealer(store)
    # The gap's seq does not fit a 64-bit column: the failure comes after the
    # samples, series and latest points were already written in the transaction.
    bad_gap = Gap(2**63, 2**63, T0, T0, 1, 1, "spool_full")
    group = [batch(seq=1, samples=host_samples(T0)), batch(seq=2, gaps=(bad_gap,))]

    with pytest.raises(StoreWriteError):
        store.write_batches(group, NOW)
    assert _rows(store) == {"samples": 0, "series": 0, "series_latest": 0}
    assert store.committed_batches("agent-1") == {}

    # The same series again: ids cached during the failed transaction would
    # point at rolled-back rows and the points would be unreadable.
    results = store.write_batches([batch(seq=1, samples=host_samples(T0))], NOW)
    assert [r.outcome for r in results] == [WriteOutcome.STORED]
    points = store.query_samples(DEALER, "cpu.percent", from_unix_ms(T0), NOW)
    assert [p.value for p in points] == [10.0]


_REFUSE_SEQ_13 = {
    "sqlite": [
        "CREATE TRIGGER refuse_13 BEFORE INSERT ON ingest_batches WHEN NEW.seq = 13 "
        "BEGIN SELECT RAISE(ABORT, 'seq 13 refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_13() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF NEW.seq = 13 THEN RAISE EXCEPTION 'seq 13 refused'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER refuse_13 BEFORE INSERT ON ingest_batches "
        "FOR EACH ROW EXECUTE FUNCTION refuse_13()",
    ],
}


def test_the_database_refusing_the_last_statements_commits_nothing(
    store: SQLAlchemyMetricStore,
) -> None:
    # On PostgreSQL the group's last writes and its COMMIT travel together
    # (pipeline mode): an error there must still roll back the samples written
    # before, and leave the pooled connections usable.
    add_dealer(store)
    with store.engine.begin() as connection:
        for statement in _REFUSE_SEQ_13[store.dialect]:
            connection.exec_driver_sql(statement)
    group = [batch("agent-1", 12, samples=host_samples(T0)), batch("agent-2", 13)]

    with pytest.raises(StoreWriteError, match="seq 13 refused"):
        store.write_batches(group, NOW)
    assert _rows(store) == {"samples": 0, "series": 0, "series_latest": 0}
    assert store.committed_batches("agent-1") == {}
    assert store.list_agents() == []

    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            "DROP TRIGGER refuse_13"
            + (" ON ingest_batches" if store.dialect == "postgresql" else "")
        )
    for _ in range(3):  # every pooled connection the writer may take
        results = store.write_batches(group, NOW)
    assert [r.outcome for r in results] == [WriteOutcome.DUPLICATE] * 2
    assert store.committed_batches("agent-1") == {12: len(host_samples(T0))}
    assert [p.value for p in store.query_samples(DEALER, "cpu.percent", from_unix_ms(T0), NOW)] == [
        10.0
    ]


@pytest.fixture
def impatient_sqlite_store(sqlite_url: str) -> Iterator[SQLAlchemyMetricStore]:
    opened = open_store(sqlite_url, busy_timeout_s=0.2, pool_size=2)
    try:
        yield opened
    finally:
        opened.close()


def test_a_locked_sqlite_database_is_unavailable_then_recovers(
    impatient_sqlite_store: SQLAlchemyMetricStore, sqlite_url: str
) -> None:
    store = impatient_sqlite_store
    add_dealer(store)
    other_writer = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        other_writer.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="locked"):
            store.write_batches([batch(seq=1, samples=(sample(),))], NOW)
        other_writer.execute("ROLLBACK")
    finally:
        other_writer.close()

    assert store.write_batches([batch(seq=1, samples=(sample(),))], NOW)[0].samples_stored == 1


def test_an_unreachable_postgresql_is_unavailable() -> None:
    # Port 1 on the loopback interface: nothing listens, the connection is refused.
    store = SQLAlchemyMetricStore("postgresql+psycopg://postgres@127.0.0.1:1/none", pool_size=1)
    try:
        with pytest.raises(StoreUnavailable):
            store.list_dealers()
        with pytest.raises(StoreUnavailable):
            store.write_batches([batch(seq=1)], NOW)
    finally:
        store.close()


@pytest.mark.postgres
def test_the_store_reconnects_after_postgresql_drops_its_connections(pg_url: str) -> None:
    store = open_store(pg_url, pool_size=2)
    try:
        add_dealer(store)
        store.write_batches([batch(seq=1, samples=(sample(),))], NOW)
        database = pg_url.rsplit("/", 1)[1]
        admin = pg_url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0]
        with psycopg.connect(f"{admin}/postgres", autocommit=True) as connection:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )

        results = store.write_batches([batch(seq=2, samples=(sample(time_ms=T0 + 1),))], NOW)

        assert results[0].outcome is WriteOutcome.STORED
        assert store.count_samples("agent-1") == 2
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("mysql://user:secret@127.0.0.1/db", "unsupported backend"),
        ("postgresql+asyncpg://user:secret@127.0.0.1/db", "psycopg"),
    ],
)
def test_unsupported_urls_are_refused_without_showing_passwords(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as caught:
        SQLAlchemyMetricStore(url)
    assert "secret" not in str(caught.value)
