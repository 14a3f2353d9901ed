"""Series ids: created once, found again by a collector with a cold cache, any label text."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from collector.store import SQLAlchemyMetricStore, open_store
from collector.store.schema import series
from dealerpulse.clock import from_unix_ms

from .store_factories import DEALER, NOW, T0, add_dealer, batch, sample

# Text that a PostgreSQL array literal must quote or escape.
AWKWARD = ['a "quoted" value', "back\\slash", "{braces},commas", "NULL", " spaced ", "ünïcødé ✓"]


def test_a_second_collector_finds_the_series_the_first_created(
    store: SQLAlchemyMetricStore, db_url: str
) -> None:
    add_dealer(store)
    first = (sample("cpu.percent", 1.0, T0), sample("disk.used_percent", 2.0, T0, mount="/"))
    store.write_batches([batch("agent-1", 1, samples=first)], NOW)
    other = open_store(db_url, pool_size=2)  # its own, empty caches: a restarted collector
    try:
        later = (
            sample("cpu.percent", 3.0, T0 + 1000),
            sample("disk.used_percent", 4.0, T0 + 1000, mount="/"),
            sample("memory.used_percent", 5.0, T0 + 1000),
        )
        other.write_batches([batch("agent-1", 2, samples=later)], NOW)
    finally:
        other.close()
    count = select(func.count()).select_from(series).where(series.c.agent_id == "agent-1")
    with store.engine.connect() as connection:
        assert connection.scalar(count) == 3
    points = store.query_samples(
        DEALER, "cpu.percent", from_unix_ms(T0), NOW + timedelta(days=1), agent_id="agent-1"
    )
    assert [p.value for p in points] == [1.0, 3.0]


def test_labels_of_any_text_name_their_own_series(store: SQLAlchemyMetricStore) -> None:
    add_dealer(store)
    points = tuple(
        sample("disk.used_percent", float(i), T0, mount=text) for i, text in enumerate(AWKWARD)
    )
    store.write_batches([batch("agent-2", 1, samples=points)], NOW)
    stored = store.query_samples(
        DEALER, "disk.used_percent", from_unix_ms(T0), NOW + timedelta(days=1), agent_id="agent-2"
    )
    assert sorted((dict(p.labels)["mount"], p.value) for p in stored) == sorted(
        (text, float(i)) for i, text in enumerate(AWKWARD)
    )
