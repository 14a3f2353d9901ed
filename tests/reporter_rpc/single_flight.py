"""Helpers for the single-flight tests: callers of one cache at once, in threads.

No sleeps as synchronisation: a computation blocks on an Event that the test
sets once the cache reports the expected number of waiters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from reporter.cache import Freshness, ResultCache

WAIT_S = 10.0
FRESH = Freshness(ttl_s=60.0)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.002)


class BlockedComputation:
    """A computation that counts its runs and holds each until :meth:`release`."""

    def __init__(self, value: Any = "answer", error: Exception | None = None) -> None:
        self.value, self.error = value, error
        self.runs = 0
        self._lock = threading.Lock()
        self._released = threading.Event()

    def __call__(self) -> Any:
        with self._lock:
            self.runs += 1
            run = self.runs
        if not self._released.wait(WAIT_S):
            raise TimeoutError("the test never released the computation")
        if self.error is not None:
            raise self.error
        return f"{self.value}-{run}"

    def release(self) -> None:
        self._released.set()


def ask_at_once(
    cache: ResultCache,
    callers: int,
    compute: BlockedComputation,
    key: str = "dealer-1",
    watermark: float | None = 1.0,
) -> list[Future[Any]]:
    """``callers`` threads ask (realtime, key) together; released once all but one wait."""
    with ThreadPoolExecutor(max_workers=callers) as pool:
        futures = [
            pool.submit(cache.get_or_compute, "realtime", key, FRESH, watermark, compute)
            for _ in range(callers)
        ]
        wait_until(
            lambda: cache.in_flight("realtime", key) == callers - 1,
            f"{callers - 1} callers waiting on the first one",
        )
        compute.release()
        for future in futures:
            future.exception(WAIT_S)  # finished, whatever the outcome
    return futures
