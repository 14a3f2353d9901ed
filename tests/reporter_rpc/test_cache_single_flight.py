"""Single flight: concurrent misses for one (kind, key) compute once and share the answer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from dealerpulse.clock import FakeClock
from reporter.cache import CacheStats, InProcessResultCache

from .factories import NOW
from .single_flight import FRESH, WAIT_S, BlockedComputation, ask_at_once, wait_until

CALLERS = 20


def test_a_hundred_callers_of_one_key_share_one_computation() -> None:
    cache = InProcessResultCache(FakeClock(NOW))
    compute = BlockedComputation()

    futures = ask_at_once(cache, 100, compute)

    assert compute.runs == 1
    assert [f.result() for f in futures] == ["answer-1"] * 100
    assert cache.stats() == CacheStats(misses=100, stores=1, shared=99)
    assert cache.in_flight_keys() == 0
    # And it is remembered: the next caller does not compute either.
    assert cache.get_or_compute("realtime", "dealer-1", FRESH, 1.0, compute) == "answer-1"


def test_different_keys_do_not_wait_for_each_other() -> None:
    cache = InProcessResultCache(FakeClock(NOW))
    slow = BlockedComputation("slow")
    with ThreadPoolExecutor(max_workers=1) as pool:
        blocked = pool.submit(cache.get_or_compute, "realtime", "dealer-1", FRESH, 1.0, slow)
        wait_until(lambda: cache.in_flight("realtime", "dealer-1") == 0, "dealer-1 in flight")

        # Another dealer (and another kind of the same key) answer while dealer-1 computes.
        assert cache.get_or_compute("realtime", "dealer-2", FRESH, 1.0, lambda: "other") == "other"
        assert cache.get_or_compute("analytics", "dealer-1", FRESH, 1.0, lambda: "a") == "a"
        assert not blocked.done()

        slow.release()
        assert blocked.result(WAIT_S) == "slow-1"
    assert cache.in_flight_keys() == 0


def test_when_the_computation_fails_every_waiter_gets_its_error_and_nothing_is_kept() -> None:
    cache = InProcessResultCache(FakeClock(NOW))
    failing = BlockedComputation(error=LookupError("no dealer 'dealer-1'"))

    futures = ask_at_once(cache, CALLERS, failing)

    assert failing.runs == 1  # the failing database was asked once, not by every caller
    for future in futures:
        with pytest.raises(LookupError, match="no dealer"):
            future.result()
    assert cache.in_flight_keys() == 0
    assert cache.stats().stores == 0
    # The error is not cached: the next caller computes again.
    assert cache.get_or_compute("realtime", "dealer-1", FRESH, 1.0, lambda: "now") == "now"


def test_a_waiter_that_has_seen_newer_data_computes_its_own_answer() -> None:
    cache = InProcessResultCache(FakeClock(NOW))
    compute = BlockedComputation()
    with ThreadPoolExecutor(max_workers=2) as pool:
        # The first caller read watermark 1.0 and computes from the data of then.
        first = pool.submit(cache.get_or_compute, "realtime", "dealer-1", FRESH, 1.0, compute)
        wait_until(lambda: cache.in_flight("realtime", "dealer-1") == 0, "the first caller")
        # A batch landed since: the second caller read watermark 2.0.
        second = pool.submit(cache.get_or_compute, "realtime", "dealer-1", FRESH, 2.0, compute)
        wait_until(lambda: cache.in_flight("realtime", "dealer-1") == 1, "the second caller")
        compute.release()

        assert first.result(WAIT_S) == "answer-1"
        assert second.result(WAIT_S) == "answer-2"  # not the answer that misses the batch
    assert cache.stats().shared == 0
    # What is kept now is the newer answer.
    assert cache.get_or_compute("realtime", "dealer-1", FRESH, 2.0, compute) == "answer-2"


def test_no_flight_is_left_behind_after_many_keys_and_failures() -> None:
    cache = InProcessResultCache(FakeClock(NOW), max_entries=8)

    def compute_or_fail(key: int) -> int:
        if key % 3 == 0:
            raise ValueError(key)
        return key

    def ask(key: int) -> int | None:
        try:
            return cache.get_or_compute("realtime", str(key % 50), FRESH, None, lambda: key)
        except ValueError:
            return None

    def ask_failing(key: int) -> int | None:
        try:
            return cache.get_or_compute(
                "analytics", str(key), FRESH, None, lambda: compute_or_fail(key)
            )
        except ValueError:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(ask, range(500)))
        list(pool.map(ask_failing, range(500)))
    assert cache.in_flight_keys() == 0
