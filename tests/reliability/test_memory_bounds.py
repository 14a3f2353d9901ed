"""What the soak found unbounded: the writer's series-id cache (issue 7).

The cache kept every series id ever written, per agent, for the collector's
life. It now holds at most ``max_series`` ids, forgetting the least recently
written agents first; a forgotten id is read back from the store.
"""

from __future__ import annotations

import pytest
from store.store_factories import NOW, T0, add_dealer, batch, sample

from collector.store import SQLAlchemyMetricStore
from collector.store.series import SeriesCache, SeriesKey
from dealerpulse.model import labels_of


def ids_of(agent: str, count: int, first_id: int = 1) -> dict[SeriesKey, int]:
    return {
        ("dealer", agent, f"m{i}", labels_of(instance=str(i))): first_id + i for i in range(count)
    }


def test_cache_never_holds_more_than_its_bound() -> None:
    cache = SeriesCache(max_series=250)
    for agent in range(40):  # 40 agents x 100 series: 4,000 learnt
        cache.remember(ids_of(f"agent-{agent}", 100, agent * 100))
        assert len(cache) <= 250
    # The newest agents are kept whole, the oldest forgotten.
    assert len(cache.of_agent("dealer", "agent-39")) == 100
    assert len(cache.of_agent("dealer", "agent-38")) == 100
    assert cache.of_agent("dealer", "agent-0") == {}


def test_an_agent_looked_up_recently_is_kept() -> None:
    cache = SeriesCache(max_series=200)
    cache.remember(ids_of("old", 100))
    cache.remember(ids_of("middle", 100))
    cache.of_agent("dealer", "old")  # written again: now the most recent
    cache.remember(ids_of("new", 100))
    assert len(cache.of_agent("dealer", "old")) == 100
    assert cache.of_agent("dealer", "middle") == {}
    assert len(cache) == 200


def test_one_agent_over_the_bound_is_still_cached() -> None:
    cache = SeriesCache(max_series=10)
    cache.remember(ids_of("big", 50))
    assert len(cache.of_agent("dealer", "big")) == 50


def test_relearning_a_series_does_not_count_it_twice() -> None:
    cache = SeriesCache(max_series=100)
    cache.remember(ids_of("a", 60))
    cache.remember(ids_of("a", 60))
    assert len(cache) == 60


def test_bad_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_series"):
        SeriesCache(max_series=0)


def test_evicted_agents_keep_their_series_in_the_store(store: SQLAlchemyMetricStore) -> None:
    """After eviction a series is found again, not created twice; samples all stored."""
    add_dealer(store)
    store._writer._series = SeriesCache(max_series=3)  # tiny, so every write evicts
    agents = [f"agent-{i}" for i in range(4)]
    for seq in (1, 2, 3):
        for agent in agents:
            samples = tuple(sample(f"m{i}", float(seq), T0 + seq * 1000) for i in range(3))
            store.write_batches([batch(agent, seq, samples=samples)], NOW)
    for agent in agents:
        assert len(store.agent_series(agent)) == 3
        assert store.count_samples(agent) == 9
