"""The MetricStore contract, on SQLite and PostgreSQL: writes, dedup, reads."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, text

from collector.store import SQLAlchemyMetricStore, open_store
from collector.store.schema import samples as samples_table
from collector.store.schema import series as series_table
from dealerpulse.clock import from_unix_ms
from dealerpulse.model import (
    AgentCounters,
    EndpointStat,
    Gap,
    LatencySketch,
    WriteOutcome,
    WriteResult,
    labels_of,
)

from .store_factories import DEALER, NOW, T0, add_dealer, batch, host_samples, sample

STORED, DUPLICATE, CONFLICT = WriteOutcome.STORED, WriteOutcome.DUPLICATE, WriteOutcome.CONFLICT


def _series_count(store: SQLAlchemyMetricStore) -> int:
    with store.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(series_table)) or 0)


def _sample_rows(store: SQLAlchemyMetricStore) -> int:
    with store.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(samples_table)) or 0)


def test_written_samples_read_back_with_labels_units_and_times(
    store: SQLAlchemyMetricStore,
) -> None:
    add_dealer(store)
    first = batch(seq=1, samples=host_samples(T0))
    second = batch(seq=2, samples=host_samples(T0 + 10_000, base=1.0))

    results = store.write_batches([first, second], NOW)

    assert results == [WriteResult(STORED, 4), WriteResult(STORED, 4)]
    disk = store.query_samples(DEALER, "disk.used_percent", NOW - timedelta(hours=1), NOW)
    assert [(p.labels, p.value, p.time) for p in disk] == [
        (labels_of(mount="/"), 70.0, from_unix_ms(T0)),
        (labels_of(mount="/data"), 20.0, from_unix_ms(T0)),
        (labels_of(mount="/"), 71.0, from_unix_ms(T0 + 10_000)),
        (labels_of(mount="/data"), 21.0, from_unix_ms(T0 + 10_000)),
    ]
    assert {p.unit for p in disk} == {"percent"}
    assert store.count_samples("agent-1") == 8
    assert store.committed_batches("agent-1") == {1: 4, 2: 4}


def test_resent_batch_is_a_duplicate_and_adds_no_rows(store: SQLAlchemyMetricStore) -> None:
    add_dealer(store)
    original = batch(seq=7, samples=host_samples(T0))
    store.write_batches([original], NOW)

    again = store.write_batches([original], NOW + timedelta(seconds=5))

    # The stored count is repeated so that an agent whose first ack was lost counts it once.
    assert again == [WriteResult(DUPLICATE, 4)]
    assert store.count_samples("agent-1") == 4
    assert store.committed_batches("agent-1") == {7: 4}


def test_same_seq_with_other_content_is_a_conflict(store: SQLAlchemyMetricStore) -> None:
    add_dealer(store)
    store.write_batches([batch(seq=3, samples=host_samples(T0))], NOW)

    other = batch(seq=3, samples=(sample(value=99.0),))
    assert store.write_batches([other], NOW) == [WriteResult(CONFLICT, 0)]
    assert store.count_samples("agent-1") == 4
    points = store.query_samples(DEALER, "cpu.percent", from_unix_ms(T0), NOW)
    assert [p.value for p in points] == [10.0]


def test_duplicates_within_one_group_store_once(store: SQLAlchemyMetricStore) -> None:
    add_dealer(store)
    first = batch(seq=1, samples=host_samples(T0))
    changed = batch(seq=1, samples=(sample(value=1.0),))

    results = store.write_batches([first, first, changed], NOW)

    assert [r.outcome for r in results] == [STORED, DUPLICATE, CONFLICT]
    assert store.count_samples("agent-1") == 4


def test_series_are_reused_across_batches_and_store_restarts(
    store: SQLAlchemyMetricStore, db_url: str
) -> None:
    add_dealer(store)
    store.write_batches([batch(seq=1, samples=host_samples(T0))], NOW)
    store.write_batches([batch(seq=2, samples=host_samples(T0 + 10_000))], NOW)
    assert _series_count(store) == 4

    # A second store (empty cache, as after a restart or on another collector).
    other = open_store(db_url, pool_size=2)
    try:
        other.write_batches([batch(seq=3, samples=host_samples(T0 + 20_000))], NOW)
        assert _series_count(other) == 4
        assert other.count_samples("agent-1") == 12
    finally:
        other.close()


def test_latest_samples_hold_the_newest_point_and_when_it_arrived(
    store: SQLAlchemyMetricStore,
) -> None:
    add_dealer(store)
    add_dealer(store, "other-dealer")
    newer_arrival = NOW + timedelta(seconds=30)
    store.write_batches([batch(seq=2, samples=host_samples(T0 + 10_000, base=5.0))], NOW)
    # A backfilled older batch arrives later: it must not replace the newer points.
    store.write_batches([batch(seq=1, samples=host_samples(T0))], newer_arrival)
    store.write_batches(
        [batch("agent-9", 1, dealer_id="other-dealer", samples=(sample(value=1.0),))], NOW
    )

    latest = store.latest_samples(DEALER)

    assert [(s.name, s.labels, s.value) for s in latest] == [
        ("cpu.percent", (), 15.0),
        ("disk.used_percent", labels_of(mount="/"), 75.0),
        ("disk.used_percent", labels_of(mount="/data"), 25.0),
        ("memory.used_percent", (), 45.0),
    ]
    assert {s.time for s in latest} == {from_unix_ms(T0 + 10_000)}
    assert {s.received_at for s in latest} == {NOW}
    assert {s.dealer_id for s in latest} == {DEALER}
    only_cpu = store.latest_samples(names=["cpu.percent"])
    assert sorted((s.dealer_id, s.value) for s in only_cpu) == [
        (DEALER, 15.0),
        ("other-dealer", 1.0),
    ]


def test_query_samples_is_half_open_and_filters_dealer_agent_and_name(
    store: SQLAlchemyMetricStore,
) -> None:
    add_dealer(store)
    add_dealer(store, "other-dealer")
    points = tuple(sample(value=float(i), time_ms=T0 + i * 1000) for i in range(5))
    store.write_batches(
        [
            batch("agent-1", 1, samples=points),
            batch("agent-2", 1, samples=(sample(value=50.0, time_ms=T0 + 1000),)),
            batch("agent-9", 1, dealer_id="other-dealer", samples=points),
            batch("agent-1", 2, samples=(sample("memory.used_percent", time_ms=T0 + 1000),)),
        ],
        NOW,
    )
    start, end = from_unix_ms(T0 + 1000), from_unix_ms(T0 + 3000)

    both_agents = store.query_samples(DEALER, "cpu.percent", start, end)
    one_agent = store.query_samples(DEALER, "cpu.percent", start, end, agent_id="agent-1")

    assert sorted(p.value for p in both_agents) == [1.0, 2.0, 50.0]
    assert [p.value for p in one_agent] == [1.0, 2.0]
    assert [p.time for p in both_agents] == sorted(p.time for p in both_agents)
    assert store.query_samples(DEALER, "no.such_metric", start, end) == []


def test_gaps_are_recorded_once_even_when_repeated(store: SQLAlchemyMetricStore) -> None:
    add_dealer(store)
    gap = Gap(
        first_seq=4,
        last_seq=9,
        from_ms=T0,
        to_ms=T0 + 60_000,
        batches=6,
        samples=240,
        reason="spool_full",
    )
    store.write_batches([batch(seq=10, gaps=(gap,)), batch(seq=11, gaps=(gap,))], NOW)

    gaps = store.list_gaps(DEALER)

    assert len(gaps) == 1
    recorded = gaps[0]
    assert (recorded.agent_id, recorded.first_seq, recorded.last_seq) == ("agent-1", 4, 9)
    assert (recorded.batches, recorded.samples, recorded.reason) == (6, 240, "spool_full")
    assert (recorded.from_time, recorded.to_time) == (
        from_unix_ms(T0),
        from_unix_ms(T0 + 60_000),
    )
    assert store.list_gaps("other-dealer") == []


def test_agent_counters_come_from_the_newest_batch(store: SQLAlchemyMetricStore) -> None:
    add_dealer(store)

    def counted(seq: int, generated: int) -> AgentCounters:
        return AgentCounters(
            generated_samples=generated,
            dropped_samples=(("spool_full", seq),),
            spool_bytes=seq * 100,
            spool_batches=seq,
        )

    store.write_batches(
        [batch(seq=1, counters=counted(1, 10)), batch(seq=3, counters=counted(3, 30))], NOW
    )
    # Seq 2 arrives last (backfill): its older totals must not win.
    later = NOW + timedelta(minutes=1)
    store.write_batches([batch(seq=2, counters=counted(2, 20), hostname="old-name")], later)

    (agent,) = store.list_agents(DEALER)
    assert agent.last_seq == 3
    assert agent.generated_samples == 30
    assert agent.dropped_samples == {"spool_full": 3}
    assert (agent.spool_bytes, agent.spool_batches) == (300, 3)
    assert agent.hostname == "dms-01"
    assert agent.first_seen == NOW
    assert agent.last_seen == later


def test_endpoint_stats_become_api_performance_rows(store: SQLAlchemyMetricStore) -> None:
    add_dealer(store)
    sketch = LatencySketch(relative_accuracy=0.01, offset=-2, bin_counts=(3, 0, 5), zero_count=1)
    stat = EndpointStat(
        route="/api/vehicles/{id}",
        method="GET",
        start_ms=T0,
        end_ms=T0 + 60_000,
        count=200,
        errors=10,
        client_errors=4,
        duration_sum_ms=9_000.0,
        duration_min_ms=2.0,
        duration_max_ms=800.0,
        status_counts=((200, 186), (404, 4), (500, 10)),
        last_error="TimeoutError: inventory backend",
        last_error_ms=T0 + 59_000,
        latency=sketch,
        source="middleware",
    )
    store.write_batches([batch(seq=1, endpoints=(stat,))], NOW)

    (record,) = store.query_endpoint_stats(DEALER, NOW, NOW + timedelta(seconds=1))
    assert (record.dealer_id, record.agent_id, record.stat) == (DEALER, "agent-1", stat)
    with store.engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT endpoint, method, request_count, error_count, avg_response_time, "
                "success_rate, timestamp FROM api_performance WHERE dealer_id = :dealer"
            ),
            {"dealer": DEALER},
        ).one()
    assert (row.endpoint, row.method, row.request_count, row.error_count) == (
        "/api/vehicles/{id}",
        "GET",
        200,
        10,
    )
    assert row.avg_response_time == 45.0
    assert row.success_rate == 95.0
    assert store.query_endpoint_stats(DEALER, from_unix_ms(T0), NOW) == []
