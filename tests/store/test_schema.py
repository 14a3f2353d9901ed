"""Migrations, the schema they build, and the seed's performance_metrics view."""

from __future__ import annotations

import json
import threading
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from collector.store import SQLAlchemyMetricStore, open_store
from collector.store.migrate import head_revision
from collector.store.partitions import is_partition_name
from collector.store.schema import metadata
from dealerpulse.clock import from_unix_ms

from .store_factories import DEALER, NOW, T0, add_dealer, batch, host_samples, sample


def test_migrations_are_idempotent_and_keep_data(store: SQLAlchemyMetricStore, db_url: str) -> None:
    add_dealer(store)
    store.write_batches([batch(seq=1, samples=host_samples(T0))], NOW)
    assert store.schema_version() == head_revision()

    store.migrate()
    reopened = open_store(db_url, pool_size=2)
    try:
        assert reopened.schema_version() == head_revision()
        assert reopened.count_samples("agent-1") == 4
    finally:
        reopened.close()


def test_collectors_starting_together_migrate_once(db_url: str) -> None:
    errors: list[BaseException] = []
    opened: list[SQLAlchemyMetricStore] = []
    lock = threading.Lock()

    def start() -> None:
        try:
            store = open_store(db_url, pool_size=2)
        except BaseException as error:  # collected and asserted below
            with lock:
                errors.append(error)
            return
        with lock:
            opened.append(store)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert {s.schema_version() for s in opened} == {head_revision()}
    finally:
        for store in opened:
            store.close()


def _not_a_partition(name: str | None, type_: str, parents: Any) -> bool:
    # PostgreSQL's daily partitions (migration 0008) are parts of a table, not tables.
    return not (type_ == "table" and name is not None and is_partition_name(name))


def test_migrated_database_matches_the_schema_module(store: SQLAlchemyMetricStore) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": _not_a_partition}
        )
        differences = compare_metadata(context, metadata)
    assert differences == []


def _view_rows(store: SQLAlchemyMetricStore, dealer_id: str) -> list[Any]:
    query = text(
        "SELECT id, timestamp, dealer_id, metric_type, metric_name, metric_value, metadata "
        "FROM performance_metrics WHERE dealer_id = :dealer ORDER BY timestamp, metric_name"
    )
    with store.engine.connect() as connection:
        return list(connection.execute(query, {"dealer": dealer_id}))


def test_performance_metrics_view_answers_the_seed_queries(store: SQLAlchemyMetricStore) -> None:
    add_dealer(store)
    add_dealer(store, "other-dealer")
    store.write_batches(
        [
            batch(seq=1, samples=(sample("disk.used_percent", 70.5, T0 + 123, mount="/"),)),
            batch("agent-9", 1, dealer_id="other-dealer", samples=host_samples(T0)),
        ],
        NOW,
    )

    (row,) = _view_rows(store, DEALER)

    assert (row.dealer_id, row.metric_type, row.metric_name, row.metric_value) == (
        DEALER,
        "disk",
        "disk.used_percent",
        70.5,
    )
    moment = row.timestamp
    if isinstance(moment, str):  # SQLite has no timestamp type: SQLAlchemy's text form
        moment = moment.replace(" ", "T") + "+00:00"
        assert from_unix_ms(T0 + 123).isoformat() == moment
    else:
        assert moment == from_unix_ms(T0 + 123)
    meta = row.metadata if isinstance(row.metadata, dict) else json.loads(row.metadata)
    assert meta == {"unit": "percent", "labels": {"mount": "/"}, "agent_id": "agent-1"}
    assert len({r.id for r in _view_rows(store, "other-dealer")}) == 4


def test_a_dealer_filter_on_the_view_uses_indexes(store: SQLAlchemyMetricStore) -> None:
    query = "SELECT * FROM performance_metrics WHERE dealer_id = 'acme-motors'"
    with store.engine.connect() as connection:
        if store.dialect == "sqlite":
            plan = " | ".join(
                str(row[-1]) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + query)
            )
            assert "USING INDEX ix_samples_series_time" in plan, plan
            assert "uq_series_identity" in plan or "sqlite_autoindex_series" in plan, plan
        else:
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = " | ".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + query))
            assert "Seq Scan" not in plan, plan
            assert "ix_samples_series_time" in plan, plan
