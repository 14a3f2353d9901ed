"""Result caching: served from the cache while fresh, recomputed on new data or after the TTL."""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock
from reporter.cache import CacheStats, Freshness, InProcessResultCache
from reporter.core import ReporterCore
from reporter.settings import CacheTtls

from .factories import ACME, NOW, ZENITH, add_dealers, endpoint, fill_acme, fill_zenith, write


def _core(store: SQLAlchemyMetricStore, clock: FakeClock) -> ReporterCore:
    return ReporterCore(store, clock)


def test_a_second_realtime_call_is_served_from_the_cache(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    add_dealers(sqlite_store)
    fill_acme(sqlite_store)
    clock = FakeClock(NOW)
    core = _core(sqlite_store, clock)

    first = core.realtime(ACME)
    clock.advance(1)
    second = core.realtime(ACME)

    assert second is first
    assert core.cache_stats() == CacheStats(hits=1, misses=1, stores=1)


def test_new_data_for_the_dealer_invalidates_its_realtime_entry_only(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    add_dealers(sqlite_store)
    fill_acme(sqlite_store)
    fill_zenith(sqlite_store)
    clock = FakeClock(NOW)
    core = _core(sqlite_store, clock)
    before = core.realtime(ACME)
    zenith_before = core.realtime(ZENITH)
    assert before.health.requests == 150

    clock.advance(1)
    write(
        sqlite_store,
        ACME,
        2,
        clock.now(),
        endpoints=(endpoint("/api/vehicles", 30, 0, 300.0, clock.now() - timedelta(seconds=1)),),
    )
    after = core.realtime(ACME)

    assert after.health.requests == 180
    assert core.realtime(ZENITH) is zenith_before
    stats = core.cache_stats()
    assert (stats.invalidated, stats.hits) == (1, 1)


def test_a_realtime_entry_expires_after_its_ttl(sqlite_store: SQLAlchemyMetricStore) -> None:
    add_dealers(sqlite_store)
    fill_acme(sqlite_store)
    clock = FakeClock(NOW)
    core = _core(sqlite_store, clock)
    first = core.realtime(ACME)

    clock.advance(4.9)
    assert core.realtime(ACME) is first
    clock.advance(0.1)
    fresh = core.realtime(ACME)

    assert fresh is not first
    assert fresh.as_of == NOW + timedelta(seconds=5)
    assert core.cache_stats().expired == 1


def test_new_data_invalidates_a_cached_answer_within_the_watermark_ttl(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    add_dealers(sqlite_store)
    fill_acme(sqlite_store)
    clock = FakeClock(NOW)
    core = ReporterCore(sqlite_store, clock, watermark_ttl_s=0.5)
    first = core.realtime(ACME)
    batch = (endpoint("/api/vehicles", 30, 0, 300.0, NOW - timedelta(seconds=1)),)
    write(sqlite_store, ACME, 2, NOW, endpoints=batch)

    clock.advance(0.4)
    assert core.realtime(ACME) is first  # the watermark read 0.4 s ago is trusted
    clock.advance(0.1)
    assert core.realtime(ACME).health.requests == 180  # read again: the batch shows


def test_without_a_watermark_ttl_new_data_shows_at_once(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    add_dealers(sqlite_store)
    fill_acme(sqlite_store)
    core = ReporterCore(sqlite_store, FakeClock(NOW), watermark_ttl_s=0)
    assert core.realtime(ACME).health.requests == 150
    batch = (endpoint("/api/vehicles", 30, 0, 300.0, NOW - timedelta(seconds=1)),)
    write(sqlite_store, ACME, 2, NOW, endpoints=batch)

    assert core.realtime(ACME).health.requests == 180


def test_an_answer_at_hand_is_the_one_realtime_gives_and_obeys_the_same_freshness(
    sqlite_store: SQLAlchemyMetricStore,
) -> None:
    add_dealers(sqlite_store)
    fill_acme(sqlite_store)
    clock = FakeClock(NOW)
    core = ReporterCore(sqlite_store, clock, watermark_ttl_s=0.5)
    assert core.realtime_if_ready(ACME) is None  # nothing computed yet

    computed = core.realtime(ACME)
    assert core.realtime_if_ready(ACME) is computed

    clock.advance(0.5)  # the watermark must be read again: only realtime() does that
    assert core.realtime_if_ready(ACME) is None
    assert core.realtime(ACME) is computed  # no new data: still the cached answer
    assert core.cache_stats() == CacheStats(hits=2, misses=1, stores=1)


def test_the_ttl_suits_the_range() -> None:
    ttls = CacheTtls()
    assert ttls.realtime() == Freshness(5.0, 0.0)
    assert ttls.for_range(timedelta(hours=1)).ttl_s == 15.0
    assert ttls.for_range(timedelta(hours=24)).ttl_s == 60.0
    assert ttls.for_range(timedelta(days=7)).ttl_s == 300.0
    assert ttls.for_range(timedelta(days=30)).ttl_s == 600.0
    assert ttls.for_range(timedelta(days=30)).min_fresh_s == 5.0


def test_a_long_range_entry_outlives_new_data_only_for_the_minimum_freshness() -> None:
    clock = FakeClock(NOW)
    cache = InProcessResultCache(clock)
    month = Freshness(ttl_s=600, min_fresh_s=5)
    computed: list[int] = []

    def compute() -> int:
        computed.append(len(computed))
        return computed[-1]

    assert cache.get_or_compute("analytics", "k", month, 1.0, compute) == 0
    clock.advance(4)
    assert cache.get_or_compute("analytics", "k", month, 2.0, compute) == 0  # data moved, young
    clock.advance(1)
    assert cache.get_or_compute("analytics", "k", month, 2.0, compute) == 1  # now too old for it
    clock.advance(100)
    assert cache.get_or_compute("analytics", "k", month, 2.0, compute) == 1  # no new data since
    assert cache.stats().invalidated == 1


def test_the_in_process_cache_drops_the_least_recently_used_entry() -> None:
    clock = FakeClock(NOW)
    cache = InProcessResultCache(clock, max_entries=2)
    fresh = Freshness(60)
    cache.get_or_compute("k", "a", fresh, None, lambda: "a")
    cache.get_or_compute("k", "b", fresh, None, lambda: "b")
    cache.get_or_compute("k", "a", fresh, None, lambda: "a2")  # a is now the recent one
    cache.get_or_compute("k", "c", fresh, None, lambda: "c")  # drops b

    assert len(cache) == 2
    assert cache.get_or_compute("k", "a", fresh, None, lambda: "a3") == "a"
    assert cache.get_or_compute("k", "b", fresh, None, lambda: "b2") == "b2"


def test_a_bad_cache_size_is_refused() -> None:
    with pytest.raises(ValueError, match="cache_max_entries"):
        InProcessResultCache(FakeClock(NOW), max_entries=0)


# Each step: advance the clock by some seconds, maybe move the watermark, then ask.
_steps = st.lists(
    st.tuples(st.floats(0, 20, allow_nan=False), st.booleans()), min_size=1, max_size=40
)


@settings(max_examples=100, deadline=None)
@given(_steps, st.floats(0.5, 30), st.floats(0, 10))
def test_a_served_answer_is_never_older_than_its_ttl_nor_blind_to_new_data(
    steps: list[tuple[float, bool]], ttl_s: float, min_fresh_s: float
) -> None:
    clock = FakeClock(NOW)
    cache = InProcessResultCache(clock, max_entries=4)
    freshness = Freshness(ttl_s, min_fresh_s)
    watermark = 0.0
    # When the served value was computed, and the watermark then.
    served_from: dict[int, tuple[float, float]] = {}
    for advance, new_data in steps:
        clock.advance(advance)
        if new_data:
            watermark += 1
        now = clock.now().timestamp()
        made = len(served_from)
        answer: int = cache.get_or_compute(
            "realtime", "acme", freshness, watermark, functools.partial(int, made)
        )
        served_from.setdefault(answer, (now, watermark))
        computed_at, seen_watermark = served_from[answer]
        age = now - computed_at
        assert age < ttl_s
        assert seen_watermark == watermark or age < min_fresh_s
