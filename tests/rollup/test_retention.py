"""Retention: expired raw rows and rollups go, in bounded chunks; newer rows stay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from collector.rollup.retention import RetentionPolicy, RetentionRunner
from collector.rollup.rollups import RollupRunner
from collector.store import SQLAlchemyMetricStore

from .factories import MINUTE_MS, NOW, NOW_MS, add_dealer, batch, endpoint, rows, sample

DAY_MS = 86_400_000


def _count(store: SQLAlchemyMetricStore, table: str) -> int:
    return int(rows(store.engine, f"SELECT count(*) AS n FROM {table}")[0].n)


def test_retention_deletes_only_expired_rows_in_chunks(store: SQLAlchemyMetricStore) -> None:
    dealer = add_dealer(store, "acme")
    ages_days = (100, 40, 31, 29, 1)
    for seq, age in enumerate(ages_days, start=1):
        at = NOW_MS - age * DAY_MS
        points = tuple(sample("cpu.percent", float(i), at + i * 1000) for i in range(7))
        stats = (endpoint("/api/x", at + MINUTE_MS, [10.0, 20.0]),)
        store.write_batches([batch(dealer, "a1", seq, points, stats)], NOW)
    # Roll up while everything is still "recent", as a long-running collector would have.
    RollupRunner(store.engine).run(NOW - timedelta(days=101))
    assert _count(store, "metric_rollup_1m") == 5

    policy = RetentionPolicy(raw_days=30, rollup_1m_days=35, rollup_1h_days=60, chunk_rows=3)
    report = RetentionRunner(store.engine, policy).run(NOW)

    kept = sorted({r.time_ms // DAY_MS for r in rows(store.engine, "SELECT time_ms FROM samples")})
    assert kept == [(NOW_MS - 29 * DAY_MS) // DAY_MS, (NOW_MS - DAY_MS) // DAY_MS]
    assert report.deleted["samples"] == 3 * 7
    # 21 rows at 3 per chunk: the chunking is real (plus one empty chunk per group).
    assert report.chunks > 21 // 3
    assert report.deleted["api_performance"] == 3
    assert _count(store, "api_performance") == 2
    assert report.deleted["metric_rollup_1m"] == 2  # 100 and 40 days old (> 35)
    assert report.deleted["metric_rollup_1h"] == 1  # 100 days old (> 60)
    # Each bucket has the endpoint's row and the agent's "*" row (all its traffic).
    assert report.deleted["endpoint_rollup_1m"] == 2 * 2
    assert report.deleted["endpoint_rollup_1h"] == 1 * 2
    assert report.deleted["endpoint_rollup_1d"] == 1 * 2  # the day 100 days ago
    assert report.complete
    # A second run finds nothing more.
    again = RetentionRunner(store.engine, policy).run(NOW)
    assert sum(again.deleted.values()) == 0


def test_a_run_stops_after_max_chunks_and_says_so(sqlite_store: SQLAlchemyMetricStore) -> None:
    dealer = add_dealer(sqlite_store, "acme")
    old = NOW_MS - 40 * DAY_MS
    points = tuple(sample("cpu.percent", 1.0, old + i) for i in range(10))
    sqlite_store.write_batches([batch(dealer, "a1", 1, points)], NOW)
    policy = RetentionPolicy(chunk_rows=2, max_chunks=3)
    report = RetentionRunner(sqlite_store.engine, policy).run(NOW)
    assert (report.deleted["samples"], report.complete) == (6, False)
    assert _count(sqlite_store, "samples") == 4


@pytest.mark.parametrize(
    ("days", "message"),
    [((30, 20, 730), "raw \\(30 d\\) <= 1-minute \\(20 d\\)"), ((0, 90, 730), "raw_days")],
)
def test_inconsistent_policies_are_refused(days: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetentionPolicy(raw_days=days[0], rollup_1m_days=days[1], rollup_1h_days=days[2])
