"""Rollups equal aggregates computed straight from the raw rows, also with late data,
resent batches and writes racing the job; marks are consumed; expired marks are dropped."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.rollup.bins import decode
from collector.rollup.rollups import RollupRunner
from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import from_unix_ms
from dealerpulse.model import WriteOutcome
from dealerpulse.sketch import DDSketch

from .factories import (
    HOUR_MS,
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

_agents = itertools.count()

points = st.lists(
    st.tuples(
        st.sampled_from(["cpu.percent", "memory.percent"]),
        st.integers(0, 3 * HOUR_MS // 1000 - 1).map(lambda s: T0 - HOUR_MS + s * 1000),
        st.floats(-1e6, 1e6, allow_nan=False),
    ),
    min_size=1,
    max_size=30,
)


def _assert_rollups_match_raw(store: SQLAlchemyMetricStore, agent_id: str) -> None:
    for table, size in (("metric_rollup_1m", MINUTE_MS), ("metric_rollup_1h", HOUR_MS)):
        expected = raw_aggregates(store.engine, agent_id, size)
        got = rollup_aggregates(store.engine, table, agent_id)
        assert got.keys() == expected.keys(), table
        for key, (count, total, low, high, last) in expected.items():
            assert got[key][0] == count
            assert got[key][1] == pytest.approx(total, rel=1e-9, abs=1e-6)
            assert got[key][2:] == (low, high, last)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=points, late=points, resend=st.booleans())
def test_sample_rollups_equal_raw_aggregates(
    store: SQLAlchemyMetricStore,
    first: list[tuple[str, int, float]],
    late: list[tuple[str, int, float]],
    resend: bool,
) -> None:
    dealer = add_dealer(store, f"dealer-{next(_agents)}")
    agent = f"agent-{dealer}"
    runner = RollupRunner(store.engine)
    one = batch(dealer, agent, 1, tuple(sample(n, v, t) for n, t, v in first))
    store.write_batches([one], NOW)
    runner.run(NOW)
    # Late data (an agent draining its spool) lands in buckets rolled up before.
    store.write_batches([batch(dealer, agent, 2, tuple(sample(n, v, t) for n, t, v in late))], NOW)
    if resend:
        (result,) = store.write_batches([one], NOW)
        assert result.outcome is WriteOutcome.DUPLICATE
    report = runner.run(NOW)

    _assert_rollups_match_raw(store, agent)
    assert report.left_marks == 0
    assert rows(store.engine, "SELECT * FROM rollup_dirty WHERE agent_id = :a", a=agent) == []


def test_endpoint_rollups_sum_counts_and_merge_sketches(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    dealer = add_dealer(sqlite_store, "acme")
    minute = T0 + 5 * MINUTE_MS
    parts = [
        endpoint("/api/leads", minute + 10_000, [10.0, 20.0, 30.0], errors=1, last_error="boom"),
        endpoint("/api/leads", minute + 20_000, [40.0, 400.0]),
        endpoint("/api/leads", minute + MINUTE_MS + 10_000, [5.0]),
        endpoint("/health", minute + 10_000, [1.0], source="probe"),
    ]
    sqlite_store.write_batches([batch(dealer, "a1", 1, endpoints=tuple(parts[:2]))], NOW)
    sqlite_store.write_batches([batch(dealer, "a1", 2, endpoints=tuple(parts[2:]))], NOW)
    RollupRunner(sqlite_store.engine).run(NOW)

    minute_rows = rows(
        sqlite_store.engine,
        "SELECT * FROM endpoint_rollup_1m WHERE endpoint = '/api/leads' ORDER BY bucket_ms",
    )
    assert [(r.bucket_ms, r.request_count, r.error_count) for r in minute_rows] == [
        (minute, 5, 1),
        (minute + MINUTE_MS, 1, 0),
    ]
    first = minute_rows[0]
    assert (first.duration_sum_ms, first.duration_min_ms, first.duration_max_ms) == (
        500.0,
        10.0,
        400.0,
    )
    assert (first.last_error, first.last_error_ms) == ("boom", minute + 10_000 - 1)
    (hour,) = rows(
        sqlite_store.engine, "SELECT * FROM endpoint_rollup_1h WHERE endpoint = '/api/leads'"
    )
    assert (hour.bucket_ms, hour.request_count, hour.duration_sum_ms) == (T0, 6, 505.0)
    merged = decode(bytes(hour.latency_sketch))
    exact = DDSketch.of([10.0, 20.0, 30.0, 40.0, 400.0, 5.0]).to_model()
    assert merged.offset == exact.offset
    assert [int(c) for c in merged.counts] == list(exact.bin_counts)
    (probe,) = rows(
        sqlite_store.engine, "SELECT * FROM endpoint_rollup_1h WHERE endpoint = '/health'"
    )
    assert probe.source == "probe"


def test_a_second_run_changes_nothing(sqlite_store: SQLAlchemyMetricStore) -> None:
    dealer = add_dealer(sqlite_store, "acme")
    sqlite_store.write_batches(
        [
            batch(
                dealer,
                "a1",
                1,
                (sample("cpu.percent", 5.0, T0), sample("cpu.percent", 7.0, T0 + 1)),
            )
        ],
        NOW,
    )
    runner = RollupRunner(sqlite_store.engine)
    first = runner.run(NOW)
    before = rows(sqlite_store.engine, "SELECT * FROM metric_rollup_1m")
    # A mark for the same minute again (as if re-marked): recomputing replaces, never adds.
    sqlite_store.write_batches([batch(dealer, "a1", 2, (sample("cpu.percent", 7.0, T0 + 1),))], NOW)
    runner.run(NOW)
    assert first.marks == 1
    (row,) = rows(sqlite_store.engine, "SELECT * FROM metric_rollup_1m")
    assert before[0].value_count == 2
    assert (row.value_count, row.value_sum) == (3, 19.0)


def test_marks_older_than_the_raw_retention_are_dropped_not_recomputed(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    dealer = add_dealer(sqlite_store, "acme")
    sqlite_store.write_batches([batch(dealer, "a1", 1, (sample("cpu.percent", 5.0, T0),))], NOW)
    runner = RollupRunner(sqlite_store.engine)
    runner.run(NOW)
    sqlite_store.write_batches([batch(dealer, "a1", 2, (sample("cpu.percent", 9.0, T0),))], NOW)
    # 31 days later the raw rows may be gone: the rollup made before must stay.
    report = runner.run(NOW + timedelta(days=31))
    assert report.expired_marks == 1
    assert rows(sqlite_store.engine, "SELECT value_count FROM metric_rollup_1m")[0].value_count == 1
    assert rows(sqlite_store.engine, "SELECT * FROM rollup_dirty") == []


def test_writes_racing_the_job_are_all_rolled_up(store: SQLAlchemyMetricStore) -> None:
    dealer = add_dealer(store, "acme")
    runner = RollupRunner(store.engine)
    done = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for seq in range(1, 41):
                at = T0 + (seq % 7) * 15_000
                batch_ = batch(dealer, "a1", seq, (sample("cpu.percent", float(seq), at),))
                store.write_batches([batch_], NOW)
        except BaseException as error:  # reported below
            failures.append(error)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    runs = 0
    while not done.is_set() and runs < 200:
        runner.run(NOW)
        runs += 1
    writer.join(timeout=60)
    assert not writer.is_alive() and failures == []
    runner.run(NOW)
    _assert_rollups_match_raw(store, "a1")
    assert rows(store.engine, "SELECT * FROM rollup_dirty") == []
    assert from_unix_ms(T0) < NOW
