"""EndpointAggregator: what one interval of API traffic turns into."""

from __future__ import annotations

import threading

import pytest

from agent.aggregate import (
    OVERFLOW_METHOD,
    OVERFLOW_ROUTE,
    EndpointAggregator,
    InvalidRecord,
    RequestRecord,
)
from dealerpulse.clock import FakeClock, unix_ms
from dealerpulse.model import EndpointStat
from dealerpulse.sketch import DDSketch


def request(
    route: str = "/api/vehicles/{id}",
    method: str = "GET",
    status: int = 200,
    duration_ms: float = 10.0,
    time_ms: int = 1_000,
    error: str = "",
) -> RequestRecord:
    return RequestRecord(route, method, status, duration_ms, time_ms, error)


def only(stats: list[EndpointStat]) -> EndpointStat:
    assert len(stats) == 1
    return stats[0]


def test_counts_errors_apart_from_client_errors() -> None:
    aggregator = EndpointAggregator(clock=FakeClock())
    for status in (200, 201, 404, 422, 500, 503):
        aggregator.record(request(status=status))
    aggregator.record(request(status=500, error="KeyError: 'vin'", time_ms=1_500))
    aggregator.record(request(status=200, error="RuntimeError: after headers", time_ms=1_200))

    stat = only(aggregator.drain(2_000))
    assert stat.count == 8
    assert stat.errors == 4  # 500, 503, and both requests that raised
    assert stat.client_errors == 2
    assert dict(stat.status_counts) == {200: 2, 201: 1, 404: 1, 422: 1, 500: 2, 503: 1}
    assert (stat.last_error, stat.last_error_ms) == ("KeyError: 'vin'", 1_500)


def test_a_4xx_that_raised_is_an_error_not_a_client_error() -> None:
    aggregator = EndpointAggregator(clock=FakeClock())
    aggregator.record(request(status=400, error="ValidationError: year"))
    stat = only(aggregator.drain(2_000))
    assert (stat.errors, stat.client_errors) == (1, 0)


def test_durations_and_sketch_per_route_and_method() -> None:
    aggregator = EndpointAggregator(clock=FakeClock())
    for duration in (5.0, 15.0, 40.0):
        aggregator.record(request(duration_ms=duration))
    aggregator.record(request(method="POST", duration_ms=100.0))

    get, post = aggregator.drain(2_000)
    assert (get.method, post.method) == ("GET", "POST")
    assert (get.count, get.duration_sum_ms) == (3, 60.0)
    assert (get.duration_min_ms, get.duration_max_ms) == (5.0, 40.0)
    assert get.latency is not None
    assert DDSketch.from_model(get.latency).quantile(0.5) == pytest.approx(15.0, rel=0.01)
    assert post.count == 1
    assert get.source == "middleware"


def test_drain_covers_the_interval_and_resets_it() -> None:
    clock = FakeClock()
    start = unix_ms(clock)
    aggregator = EndpointAggregator(clock=clock)
    aggregator.record(request())

    stat = only(aggregator.drain(start + 10_000))
    assert (stat.start_ms, stat.end_ms) == (start, start + 10_000)
    assert aggregator.drain(start + 20_000) == []

    aggregator.record(request(status=503))
    stat = only(aggregator.drain(start + 30_000))
    assert (stat.start_ms, stat.count, stat.errors) == (start + 20_000, 1, 1)


def test_endpoints_past_the_limit_fold_into_one_overflow_series() -> None:
    aggregator = EndpointAggregator(max_endpoints=3, clock=FakeClock())
    for n in range(10):
        aggregator.record(request(route=f"/raw/{n}", duration_ms=float(n)))
    aggregator.record(request(route="/raw/0"))  # known already: keeps its own series

    stats = {(s.route, s.method): s for s in aggregator.drain(2_000)}
    assert len(stats) == 4
    overflow = stats[(OVERFLOW_ROUTE, OVERFLOW_METHOD)]
    assert overflow.count == 7
    assert stats[("/raw/0", "GET")].count == 2
    assert aggregator.overflow_records == 7


def test_the_endpoint_limit_holds_across_intervals() -> None:
    """Raw paths must not add max_endpoints new series every interval."""
    aggregator = EndpointAggregator(max_endpoints=2, clock=FakeClock())
    for interval in range(1, 4):
        for n in range(5):
            aggregator.record(request(route=f"/raw/{interval}/{n}"))
        aggregator.drain(interval * 10_000)
    aggregator.record(request(route="/raw/1/0"))
    aggregator.record(request(route="/raw/9/9"))
    routes = {s.route for s in aggregator.drain(40_000)}
    assert routes == {"/raw/1/0", OVERFLOW_ROUTE}


def test_an_idle_endpoint_gives_its_place_to_a_new_one() -> None:
    aggregator = EndpointAggregator(max_endpoints=1, clock=FakeClock(), endpoint_idle_ms=60_000)
    aggregator.record(request(route="/old"))
    aggregator.drain(10_000)
    aggregator.drain(80_000)  # /old unseen for more than a minute: forgotten
    aggregator.record(request(route="/new"))
    assert only(aggregator.drain(90_000)).route == "/new"


def test_records_from_many_threads_are_all_counted() -> None:
    aggregator = EndpointAggregator(clock=FakeClock())
    per_thread = 2_000
    drained: list[EndpointStat] = []

    def hammer(route: str) -> None:
        for n in range(per_thread):
            aggregator.record(request(route=route, status=500 if n % 4 == 0 else 200))

    threads = [threading.Thread(target=hammer, args=(f"/r{i % 2}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    drained += aggregator.drain(2_000)  # a drain racing the writers loses nothing
    for thread in threads:
        thread.join(timeout=30)
    drained += aggregator.drain(3_000)

    assert sum(s.count for s in drained) == 4 * per_thread
    assert sum(s.errors for s in drained) == 4 * per_thread // 4
    assert aggregator.records == 4 * per_thread


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"route": ""}, "route"),
        ({"route": "/a\n"}, "route"),
        ({"route": "/" * 600}, "route"),
        ({"method": "get"}, "method"),
        ({"status": 99}, "status_code"),
        ({"status": 600}, "status_code"),
        ({"duration_ms": -1.0}, "duration_ms"),
        ({"duration_ms": float("nan")}, "duration_ms"),
        ({"time_ms": -5}, "time_ms"),
        ({"error": "x" * 2000}, "error"),
    ],
)
def test_invalid_records_are_refused_with_the_field_named(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRecord, match=message):
        request(**fields)  # type: ignore[arg-type]


def test_max_endpoints_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_endpoints"):
        EndpointAggregator(max_endpoints=0)
