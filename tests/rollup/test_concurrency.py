"""Several collectors on one PostgreSQL: one maintenance run at a time, same result."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from collector.rollup.lock import maintenance_lock
from collector.rollup.retention import RetentionRunner
from collector.rollup.rollups import RollupReport, RollupRunner
from collector.store import SQLAlchemyMetricStore, open_store
from collector.store.engine import create_store_engine

from .factories import (
    MINUTE_MS,
    NOW,
    T0,
    add_dealer,
    batch,
    endpoint,
    raw_aggregates,
    rollup_aggregates,
    rows,
    sample,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[SQLAlchemyMetricStore]:
    opened = open_store(pg_url, pool_size=5)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def other_engine(pg_url: str, pg_store: SQLAlchemyMetricStore) -> Iterator[Engine]:
    """A second collector's connection pool on the same database."""
    engine = create_store_engine(pg_url, pool_size=2)
    try:
        yield engine
    finally:
        engine.dispose()


def _fill(store: SQLAlchemyMetricStore) -> None:
    dealer = add_dealer(store, "acme")
    for agent in ("a1", "a2", "a3"):
        for seq in range(1, 31):
            at = T0 + seq * 20_000
            points = (
                sample("cpu.percent", seq * 1.5, at),
                sample("memory.percent", 50.0 - seq, at),
            )
            stats = (endpoint("/api/x", at, [float(seq), 2.0 * seq]),)
            store.write_batches([batch(dealer, agent, seq, points, stats)], NOW)


def test_a_held_lock_makes_the_other_collector_skip(
    pg_store: SQLAlchemyMetricStore, other_engine: Engine
) -> None:
    _fill(pg_store)
    with maintenance_lock(pg_store.engine) as held:
        assert held
        assert RollupRunner(other_engine).run(NOW).skipped
        assert RetentionRunner(other_engine).run(NOW).skipped
    assert not RollupRunner(other_engine).run(NOW).skipped  # released


def test_two_collectors_rolling_up_at_once_give_the_result_of_one(
    pg_store: SQLAlchemyMetricStore, other_engine: Engine
) -> None:
    _fill(pg_store)
    reports: list[RollupReport] = []
    barrier = threading.Barrier(2)

    def run(engine: Engine) -> None:
        barrier.wait(timeout=30)
        reports.append(RollupRunner(engine).run(NOW))

    threads = [threading.Thread(target=run, args=(e,)) for e in (pg_store.engine, other_engine)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads) and len(reports) == 2
    # Whoever ran second found the lock free or busy; either way the marks are all done once.
    assert sum(r.marks for r in reports) == 3 * len(
        {(T0 + s * 20_000) // MINUTE_MS for s in range(1, 31)}
    )
    for agent in ("a1", "a2", "a3"):
        for table, size in (("metric_rollup_1m", MINUTE_MS), ("metric_rollup_1h", 3_600_000)):
            expected = raw_aggregates(pg_store.engine, agent, size)
            got = rollup_aggregates(pg_store.engine, table, agent)
            assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in expected.items()}
    requests = rows(
        pg_store.engine,
        "SELECT sum(request_count) AS n FROM endpoint_rollup_1h WHERE source <> '*'",
    )
    assert requests[0].n == 3 * 30 * 2
    assert rows(pg_store.engine, "SELECT * FROM rollup_dirty") == []
