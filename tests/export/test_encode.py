"""Stored batches -> OTLP: every sample and endpoint stat arrives as the mapping says."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.export.encode import (
    COUNT_METRIC,
    DURATION_BOUNDS_S,
    DURATION_METRIC,
    ERRORS_METRIC,
    SERVICE_NAME,
    bucket_counts,
    encode_request,
    points_of,
)
from dealerpulse.model import EndpointStat, MetricBatch, Sample
from dealerpulse.sketch import DDSketch

from .batches import LATENCIES_MS, make_batch
from .receiver import flatten

NAMES = st.sampled_from(["cpu.percent", "memory.used", "disk.used_percent", "net.rx"])
UNITS = st.sampled_from(["percent", "bytes", "bytes_per_second", "furlongs"])
LABELS = st.dictionaries(st.sampled_from(["core", "disk", "nic"]), st.text(max_size=5), max_size=2)
SAMPLES = st.builds(
    lambda name, value, unit, time_ms, labels: Sample(
        name, value, unit, time_ms, tuple(sorted(labels.items()))
    ),
    NAMES,
    st.floats(allow_nan=False, allow_infinity=False),
    UNITS,
    st.integers(0, 2**40),
    LABELS,
)
AGENTS = st.sampled_from(["agent-a", "agent-b", "agent-c"])


@st.composite
def batches(draw: st.DrawFn) -> MetricBatch:
    agent = draw(AGENTS)
    batch = make_batch("dealer-1", agent, draw(st.integers(1, 10**6)), 1_760_000_000_000)
    samples = tuple(draw(st.lists(SAMPLES, max_size=12)))
    with_endpoint = draw(st.booleans())
    return dataclasses.replace(
        batch,
        hostname=f"host-of-{agent}",
        samples=samples,
        endpoints=batch.endpoints if with_endpoint else (),
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(batches(), max_size=6))
def test_every_sample_becomes_one_gauge_point_of_its_agent(group: list[MetricBatch]) -> None:
    points = flatten(encode_request(group))
    assert len(points) == sum(points_of(batch) for batch in group)
    gauges = sorted(
        (
            p.resource["agent.id"],
            p.resource["host.name"],
            p.metric,
            p.value,
            p.time_unix_nano,
            tuple(sorted(p.attributes.items())),
        )
        for p in points
        if p.kind == "gauge"
    )
    expected = sorted(
        (b.agent_id, b.hostname, s.name, s.value, s.time_ms * 1_000_000, s.labels)
        for b in group
        for s in b.samples
    )
    assert gauges == expected
    for point in points:
        assert point.resource["service.name"] == SERVICE_NAME
        assert point.resource["dealer.id"] == "dealer-1"


def test_endpoint_stats_become_duration_count_and_error_metrics() -> None:
    batch = make_batch("dealer-1", "agent-1", 1, 1_760_000_000_000, n_samples=0)
    points = flatten(encode_request([batch]))
    route = {"http.route": "/api/vehicles/{id}", "http.request.method": "GET"}
    [duration] = [p for p in points if p.metric == DURATION_METRIC]
    histogram = duration.value
    assert (duration.kind, duration.unit, duration.attributes) == ("histogram", "s", route)
    assert histogram.count == len(LATENCIES_MS)
    assert math.isclose(histogram.sum, sum(LATENCIES_MS) / 1000)
    assert (histogram.min, histogram.max) == (min(LATENCIES_MS) / 1000, max(LATENCIES_MS) / 1000)
    assert list(histogram.explicit_bounds) == list(DURATION_BOUNDS_S)
    # 3, 8, 12, 40, 90, 180, 600 ms and 2.4 s, in the semantic conventions' buckets.
    assert list(histogram.bucket_counts) == [1, 1, 1, 1, 0, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0]
    counts = {
        p.attributes.get("http.response.status_code"): p.value
        for p in points
        if p.metric == COUNT_METRIC
    }
    assert counts == {200: 6, 404: 1, 500: 1}
    [errors] = [p for p in points if p.metric == ERRORS_METRIC]
    assert (errors.kind, errors.value, errors.attributes) == ("sum", 1, route)


def test_a_stat_without_sketch_or_statuses_still_adds_up() -> None:
    stat = EndpointStat("/x", "POST", 0, 10_000, count=5, errors=0, duration_sum_ms=50.0)
    batch = make_batch("dealer-1", "agent-1", 1, 1_760_000_000_000, n_samples=0)
    points = flatten(encode_request([dataclasses.replace(batch, endpoints=(stat,))]))
    [duration] = [p.value for p in points if p.metric == DURATION_METRIC]
    assert (list(duration.bucket_counts), list(duration.explicit_bounds)) == ([5], [])
    [count] = [p for p in points if p.metric == COUNT_METRIC]
    assert (count.value, count.attributes.get("http.response.status_code")) == (5, None)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0.0, 20_000.0), min_size=1, max_size=200))
def test_bucket_counts_are_off_only_for_values_within_accuracy_of_a_bound(
    latencies_ms: list[float],
) -> None:
    sketch = DDSketch.of(latencies_ms)
    counts = bucket_counts(sketch.to_model(), DURATION_BOUNDS_S)
    assert counts is not None and sum(counts) == len(latencies_ms)
    accuracy = sketch.relative_accuracy
    for index, bound_s in enumerate(DURATION_BOUNDS_S):
        below_exact = sum(1 for v in latencies_ms if v / 1000 <= bound_s)
        below_estimated = sum(counts[: index + 1])
        near = sum(1 for v in latencies_ms if abs(v / 1000 - bound_s) <= 1.01 * accuracy * bound_s)
        assert abs(below_estimated - below_exact) <= near
