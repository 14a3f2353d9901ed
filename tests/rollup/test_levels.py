"""The "*" rows (an agent's traffic, probes apart) and the 1-day endpoint rollups equal
the raw data, and read_analytics, which reads them instead of every row, answers as
if it had merged the raw values of its window: edges of partial days and hours too."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.rollup.bins import decode
from collector.rollup.rollups import RollupRunner
from collector.store import SQLAlchemyMetricStore
from dealerpulse.clock import from_unix_ms
from dealerpulse.model import EndpointStat
from dealerpulse.sketch import DDSketch
from reporter.model import TimeRange
from reporter.queries import read_analytics
from reporter.queries.latency import endpoint_spans
from reporter.queries.window import window_of

from .factories import HOUR_MS, MINUTE_MS, NOW, NOW_MS, add_dealer, batch, endpoint, rows

DAY_MS = 86_400_000
# Midnight (UTC) three days before NOW: the data spans day boundaries.
DAY0 = NOW_MS - NOW_MS % DAY_MS - 3 * DAY_MS
ROUTES = ("/api/leads", "/api/sales", "/health")
_dealers = itertools.count()

# (route index, seconds after DAY0, latencies): stats of one 10 s interval.
stats = st.lists(
    st.tuples(
        st.integers(0, len(ROUTES) - 1),
        st.integers(10, 3 * DAY_MS // 1000 - 1),
        st.lists(st.floats(0.5, 5000.0), min_size=1, max_size=5),
    ),
    min_size=1,
    max_size=12,
)


def _stat(route: int, second: int, latencies: list[float]) -> EndpointStat:
    source = "probe" if ROUTES[route] == "/health" else ""
    return endpoint(ROUTES[route], DAY0 + second * 1000, latencies, source=source)


def _write(store: SQLAlchemyMetricStore, dealer: str, parts: Iterable[EndpointStat]) -> None:
    ordered = sorted(parts, key=lambda s: s.end_ms)
    for seq, start in enumerate(range(0, len(ordered), 20), start=1):
        chunk = tuple(ordered[start : start + 20])
        store.write_batches([batch(dealer, f"agent-{dealer}", seq, endpoints=chunk)], NOW)


Made = list[tuple[EndpointStat, list[float]]]
"""Stats with the latencies they were made of."""


def _expected(made: Made, size_ms: int) -> dict[tuple[str, int], list[float]]:
    """(route or "*", bucket) -> the raw latencies; "*" leaves the probes out."""
    found: dict[tuple[str, int], list[float]] = {}
    for part, values in made:
        bucket = part.end_ms - part.end_ms % size_ms
        found.setdefault((part.route, bucket), []).extend(values)
        if part.source != "probe":
            found.setdefault(("*", bucket), []).extend(values)
    return found


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(parts=stats)
def test_all_traffic_rows_and_days_equal_the_raw_data(
    sqlite_store: SQLAlchemyMetricStore, parts: list[tuple[int, int, list[float]]]
) -> None:
    dealer = add_dealer(sqlite_store, f"dealer-{next(_dealers)}")
    made = [(_stat(*part), part[2]) for part in parts]
    _write(sqlite_store, dealer, [stat for stat, _ in made])
    RollupRunner(sqlite_store.engine).run(NOW)

    for table, size_ms in (
        ("endpoint_rollup_1m", MINUTE_MS),
        ("endpoint_rollup_1h", HOUR_MS),
        ("endpoint_rollup_1d", DAY_MS),
    ):
        expected = _expected(made, size_ms)
        got = {
            (r.endpoint, r.bucket_ms): r
            for r in rows(
                sqlite_store.engine,
                f"SELECT * FROM {table} WHERE dealer_id = :d",
                d=dealer,
            )
        }
        assert got.keys() == expected.keys(), table
        for key, values in expected.items():
            row = got[key]
            assert row.request_count == len(values)
            assert row.duration_sum_ms == pytest.approx(sum(values), rel=1e-9)
            assert (row.duration_min_ms, row.duration_max_ms) == (min(values), max(values))
            exact = DDSketch.of(values).to_model()
            merged = decode(bytes(row.latency_sketch))
            assert merged.offset == exact.offset, (table, key)
            assert [int(c) for c in merged.counts] == list(exact.bin_counts)


def _traffic(seed: int) -> Made:
    """Three days of both routes and a probe at random minutes, denser on hours 23-31."""
    rng = random.Random(seed)
    minutes = rng.sample(range(3 * 24 * 60), 50) + rng.sample(range(23 * 60, 31 * 60), 40)
    made = []
    for minute in sorted(set(minutes)):
        for route in range(len(ROUTES)):
            count = rng.randint(1, 4)
            values = [round(rng.lognormvariate(3.0 + route, 0.8), 3) for _ in range(count)]
            made.append((_stat(route, minute * 60 + 10 + route, values), values))
    return made


WINDOWS = [
    # Partial days at both ends (hourly window: days inside, hours at the edges).
    (DAY0 + 5 * HOUR_MS + 17 * MINUTE_MS, DAY0 + 2 * DAY_MS + 7 * HOUR_MS + 5, timedelta(hours=1)),
    # Partial hours at both ends (minute window: hours inside, minutes at the edges).
    (
        DAY0 + 23 * HOUR_MS + 7 * MINUTE_MS,
        DAY0 + 27 * HOUR_MS + 43 * MINUTE_MS,
        timedelta(minutes=10),
    ),
    # Within one hour: minutes only.
    (
        DAY0 + 30 * HOUR_MS + 5 * MINUTE_MS,
        DAY0 + 30 * HOUR_MS + 50 * MINUTE_MS,
        timedelta(minutes=5),
    ),
]


def test_percentiles_equal_the_raw_values_of_the_window(store: SQLAlchemyMetricStore) -> None:
    dealer = add_dealer(store, "acme")
    made = _traffic(seed=7)
    _write(store, dealer, [stat for stat, _ in made])
    RollupRunner(store.engine).run(NOW)
    for start_ms, end_ms, step in WINDOWS:
        _assert_window_matches(
            store, dealer, made, TimeRange(from_unix_ms(start_ms), from_unix_ms(end_ms)), step
        )


def _assert_window_matches(
    store: SQLAlchemyMetricStore, dealer: str, made: Made, time_range: TimeRange, step: timedelta
) -> None:
    window = window_of(time_range, step)
    fine_ms = HOUR_MS if not step % timedelta(hours=1) else MINUTE_MS

    def bucket(stat: EndpointStat) -> int:
        return stat.end_ms - stat.end_ms % fine_ms

    traffic = [
        (s, v)
        for s, v in made
        if window.start_ms <= bucket(s) < window.end_ms and s.source != "probe"
    ]
    data = read_analytics(store.engine, dealer, time_range, step)

    everything = DDSketch.of([x for _, v in traffic for x in v])
    summary = data.summary
    assert summary.requests == sum(len(v) for _, v in traffic)
    for q, got in ((0.5, summary.p50_ms), (0.95, summary.p95_ms), (0.99, summary.p99_ms)):
        assert got == pytest.approx(everything.quantile(q), rel=1e-12)
    assert {e.route for e in data.endpoints} == {"/api/leads", "/api/sales"}
    for found in data.endpoints:
        exact = DDSketch.of([x for s, v in traffic if s.route == found.route for x in v])
        assert (found.p50_ms, found.p95_ms, found.p99_ms) == pytest.approx(
            (exact.quantile(0.5), exact.quantile(0.95), exact.quantile(0.99)), rel=1e-12
        )
    for index, point in enumerate(data.response_time_p95.points):
        first = window.start_ms + index * window.step_ms
        values = [x for s, v in traffic if first <= bucket(s) < first + window.step_ms for x in v]
        if not values:
            assert point.value is None, index
            continue
        assert point.value == pytest.approx(DDSketch.of(values).quantile(0.95), rel=1e-12), index


@given(
    start_minute=st.integers(0, 5 * 24 * 60),
    minutes=st.integers(1, 5 * 24 * 60),
    step_minutes=st.sampled_from([1, 5, 10, 30, 60, 120, 1440]),
)
def test_endpoint_spans_cover_the_window_exactly(
    start_minute: int, minutes: int, step_minutes: int
) -> None:
    start_ms = DAY0 + start_minute * MINUTE_MS + 1234
    time_range = TimeRange(from_unix_ms(start_ms), from_unix_ms(start_ms + minutes * MINUTE_MS))
    window = window_of(time_range, timedelta(minutes=step_minutes))
    fine_ms = HOUR_MS if window.hourly else MINUTE_MS
    spans = endpoint_spans(window)
    # Contiguous, from the window start to the end of the last bucket starting before its end.
    assert spans[0][1] == window.start_ms
    assert spans[-1][2] == -(-window.end_ms // fine_ms) * fine_ms
    assert all(a[2] == b[1] for a, b in itertools.pairwise(spans))
    for table, low, high in spans:
        size = {"endpoint_rollup_1d": DAY_MS, "endpoint_rollup_1h": HOUR_MS}.get(table.name)
        if size is not None and size > fine_ms:  # a coarse span: whole coarse buckets
            assert low % size == 0 and high % size == 0
        assert low < high
