"""The Redis result cache, shared by several reporters (the real Redis at 127.0.0.1:6379).

Skipped with the reason when Redis cannot be reached, except under CI=true,
where that fails: CI must not go green without the shared cache tested.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from datetime import timedelta
from itertools import islice
from typing import Any

import pytest
import redis

from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock
from reporter.cache import CacheStats, RedisResultCache
from reporter.core import ReporterCore

from .factories import ACME, NOW, add_dealers, endpoint, fill_acme, write
from .single_flight import BlockedComputation, ask_at_once

REDIS_URL = os.environ.get("DEALERPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        reason = f"Redis at {REDIS_URL} is unreachable ({exc}); set DEALERPULSE_TEST_REDIS_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (Redis tests are mandatory under CI=true)")
        pytest.skip(reason)
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    unique = f"dp-test:{secrets.token_hex(6)}:"
    yield unique
    keys = list(islice(redis_client.scan_iter(match=unique + "*", count=100), 1000))
    if keys:
        redis_client.delete(*keys)


def _reporter(
    store: SQLAlchemyMetricStore, clock: FakeClock, prefix: str
) -> tuple[ReporterCore, RedisResultCache]:
    # Each reporter has its own connection, as separate processes would.
    cache = RedisResultCache(redis.Redis.from_url(REDIS_URL), clock, prefix)
    return ReporterCore(store, clock, cache=cache), cache


def test_two_reporters_share_answers_through_redis(
    sqlite_store: SQLAlchemyMetricStore, prefix: str
) -> None:
    add_dealers(sqlite_store)
    fill_acme(sqlite_store)
    clock = FakeClock(NOW)
    first, first_cache = _reporter(sqlite_store, clock, prefix)
    second, second_cache = _reporter(sqlite_store, clock, prefix)
    try:
        computed = first.realtime(ACME)
        shared = second.realtime(ACME)

        assert shared == computed  # decoded from JSON, equal in every field
        assert shared is not computed
        assert (first.cache_stats().misses, first.cache_stats().stores) == (1, 1)
        assert (second.cache_stats().hits, second.cache_stats().stores) == (1, 0)

        clock.advance(1)
        write(
            sqlite_store,
            ACME,
            2,
            clock.now(),
            endpoints=(endpoint("/api/x", 5, 0, 50.0, clock.now() - timedelta(seconds=1)),),
        )
        # New data: the shared entry is stale for both of them.
        assert second.realtime(ACME).health.requests == 155
        assert second.cache_stats().invalidated == 1
        assert first.realtime(ACME).health.requests == 155
        assert first.cache_stats().hits == 1
    finally:
        first_cache.close()
        second_cache.close()


def test_redis_holds_json_that_expires_with_the_ttl(
    sqlite_store: SQLAlchemyMetricStore, prefix: str, redis_client: redis.Redis
) -> None:
    add_dealers(sqlite_store)
    fill_acme(sqlite_store)
    core, cache = _reporter(sqlite_store, FakeClock(NOW), prefix)
    try:
        core.realtime(ACME)
    finally:
        cache.close()
    key = f"{prefix}realtime:{ACME}"
    raw: Any = redis_client.get(key)
    envelope = json.loads(raw)  # JSON, not a pickle
    assert envelope["v"] == 1 and envelope["stored_at"] == NOW.timestamp()
    assert json.loads(envelope["value"])["health"]["dealer_id"] == ACME
    ttl_ms: Any = redis_client.pttl(key)
    assert 0 < ttl_ms <= 5000


def test_an_unreadable_entry_is_recomputed_not_trusted(
    sqlite_store: SQLAlchemyMetricStore, prefix: str, redis_client: redis.Redis
) -> None:
    add_dealers(sqlite_store)
    fill_acme(sqlite_store)
    redis_client.set(f"{prefix}realtime:{ACME}", b"\x80\x04garbage", px=5000)
    core, cache = _reporter(sqlite_store, FakeClock(NOW), prefix)
    try:
        assert core.realtime(ACME).health.requests == 150
        assert core.cache_stats().misses == 1
    finally:
        cache.close()


def test_a_redis_that_is_down_is_bypassed(sqlite_store: SQLAlchemyMetricStore) -> None:
    add_dealers(sqlite_store)
    fill_acme(sqlite_store)
    clock = FakeClock(NOW)
    # Nothing listens on port 1 of the loopback: connections are refused at once.
    cache = RedisResultCache.from_url("redis://127.0.0.1:1/0", clock, timeout_s=0.5)
    core = ReporterCore(sqlite_store, clock, cache=cache)
    try:
        assert core.realtime(ACME).health.requests == 150
        assert core.cache_stats().errors == 2  # the read and the write
    finally:
        cache.close()


def test_concurrent_misses_through_redis_compute_once_per_process(prefix: str) -> None:
    cache = RedisResultCache(
        redis.Redis.from_url(REDIS_URL),
        FakeClock(NOW),
        prefix,
        encode=lambda kind, value: json.dumps(value),
        decode=lambda kind, raw: json.loads(raw),
    )
    compute = BlockedComputation()
    try:
        futures = ask_at_once(cache, 20, compute)

        assert compute.runs == 1
        assert [f.result() for f in futures] == ["answer-1"] * 20
        assert cache.stats() == CacheStats(misses=20, stores=1, shared=19)
        assert cache.in_flight_keys() == 0
    finally:
        cache.close()
