"""100 requests at once against the served app: every one answered, each with its own dealer.

The seed's performance test asks that at least 95 % of 100 concurrent
requests to /api/ai/performance-monitoring succeed; here all of them must,
with the figures of the dealer whose token asked (no answer crosses over to
another dealer under concurrency). How fast they are is bench/http_load.py's
business, not a test's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import FakeClock
from dealerpulse.model import EndpointStat, MetricBatch, Sample
from dealerpulse.tokens import hash_token, new_token
from reporter.core import ReporterCore
from reporter.http.app import create_app
from reporter.http.settings import HttpSettings
from reporter.settings import CacheTtls, ReporterSettings

from .harness import NOW, T0, Answer, Client, Tokens, served

DEALERS = 20
CONCURRENT = 100
WAIT_S = 30.0
MONITORING = "/api/ai/performance-monitoring"


def _dealer_id(index: int) -> str:
    return f"dealer-{index:02d}"


def _requests_of(index: int) -> int:
    """Each dealer its own traffic: 10 + 5 * index requests in the 5-minute window."""
    return 10 + 5 * index


def _cpu_of(index: int) -> float:
    return 10.0 + index


def _batch(index: int) -> MetricBatch:
    count = _requests_of(index)
    stat = EndpointStat(
        route="/api/inventory",
        method="GET",
        start_ms=T0,
        end_ms=T0 + 10_000,
        count=count,
        errors=index % 3,
        duration_sum_ms=20.0 * count,
        duration_min_ms=20.0,
        duration_max_ms=20.0,
        source="middleware",
    )
    samples = (
        Sample("cpu.percent", _cpu_of(index), "percent", T0),
        Sample("memory.percent", 50.0, "percent", T0),
    )
    return MetricBatch(
        f"agent-{index:02d}", _dealer_id(index), 1, "boot", "host", "test", T0, samples, (stat,)
    )


@pytest.fixture
def dealer_tokens(filled_any: tuple[SQLAlchemyMetricStore, Tokens]) -> dict[int, str]:
    """DEALERS more dealers (beside the harness's two), each with its own figures and token."""
    store, _ = filled_any
    tokens = {}
    for index in range(DEALERS):
        tokens[index] = new_token(_dealer_id(index))
        store.create_dealer(_dealer_id(index), f"Dealer {index}", hash_token(tokens[index]), NOW)
    store.write_batches([_batch(index) for index in range(DEALERS)], NOW)
    return tokens


@pytest.fixture
def port(filled_any: tuple[SQLAlchemyMetricStore, Tokens], clock: FakeClock) -> Iterator[int]:
    """The app with the default HTTP settings (rate limit included), the result cache off:
    every request reads the store, so the requests really overlap in the database."""
    store, _ = filled_any
    settings = ReporterSettings(ttls=CacheTtls(realtime_s=0.0))
    app = create_app(ReporterCore(store, clock, settings), store, HttpSettings(), clock)
    with served(app) as bound:
        yield bound


def _all_at_once(port: int, tokens: dict[int, str]) -> list[tuple[int, Answer]]:
    """CONCURRENT requests released together, request i with the token of dealer i % DEALERS."""
    start = threading.Barrier(CONCURRENT, timeout=WAIT_S)

    def ask(i: int) -> tuple[int, Answer]:
        index = i % DEALERS
        start.wait()
        return index, Client(port, tokens[index]).get(MONITORING)

    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        futures = [pool.submit(ask, i) for i in range(CONCURRENT)]
        return [future.result(timeout=WAIT_S * 2) for future in futures]


def test_100_concurrent_requests_all_succeed_with_their_own_dealer(
    port: int, dealer_tokens: dict[int, str]
) -> None:
    answers = _all_at_once(port, dealer_tokens)

    assert [answer.status for _, answer in answers] == [200] * CONCURRENT
    for index, answer in answers:
        data = answer.data
        assert data["dealerId"] == _dealer_id(index)
        assert data["resourceUsage"]["cpu"] == pytest.approx(_cpu_of(index))
        # The dealer's own requests over the 5-minute window, per minute.
        assert data["systemHealth"]["throughput"] == pytest.approx(_requests_of(index) / 5)
        assert data["systemHealth"]["errorRate"] == pytest.approx(
            100.0 * (index % 3) / _requests_of(index)
        )
        assert int(answer.headers["ratelimit-remaining"]) >= 0
