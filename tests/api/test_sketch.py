"""The latency sketch: its accuracy guarantee, exact merges, strict encoding.

"True quantile" here is what the sketch promises to estimate: the lower
rank-based quantile, the element at 0-based rank floor(q * (n - 1)) of the
sorted data.
"""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dealerpulse.model import LatencySketch
from dealerpulse.sketch import MIN_INDEXABLE_MS, DDSketch, SketchDecodeError, SketchError

QUANTILES = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)
# Latency-like values: exact zeros, sub-ns noise, and a span of 13 decades that
# needs ~1500 of the 2048 buckets at 1 % (no collapse).
latencies = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.0, max_value=MIN_INDEXABLE_MS, exclude_max=True),
    st.floats(min_value=MIN_INDEXABLE_MS, max_value=1e7),
)
datasets = st.lists(latencies, min_size=1, max_size=300)
# (relative accuracy, max bins) pairs whose bins span the 13 decades above:
# the span is log(1e13) / log(gamma) buckets, ~1500 at 1 %, ~15000 at 0.1 %.
accuracies = st.sampled_from([(0.001, 16384), (0.01, 2048), (0.05, 2048), (0.2, 2048)])


def true_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def assert_within_bound(estimate: float, truth: float, accuracy: float) -> None:
    # Values under MIN_INDEXABLE_MS share the zero bucket: absolute error < 1 ns.
    slack = MIN_INDEXABLE_MS if truth < MIN_INDEXABLE_MS else 0.0
    assert abs(estimate - truth) <= accuracy * truth * (1 + 1e-9) + slack, (estimate, truth)


def state(sketch: DDSketch) -> tuple[LatencySketch, int, float, float]:
    return sketch.to_model(), sketch.count, sketch.min, sketch.max


@given(datasets, accuracies)
def test_every_quantile_is_within_the_relative_accuracy(
    values: list[float], accuracy: tuple[float, int]
) -> None:
    a, max_bins = accuracy
    sketch = DDSketch.of(values, relative_accuracy=a, max_bins=max_bins)
    assert sketch.bin_count() <= max_bins
    for q in QUANTILES:
        assert_within_bound(sketch.quantile(q), true_quantile(values, q), a)


@given(datasets)
def test_count_sum_min_max_are_exact(values: list[float]) -> None:
    sketch = DDSketch.of(values)
    assert sketch.count == len(values)
    assert sketch.sum == pytest.approx(math.fsum(values), rel=1e-9, abs=1e-12)
    assert (sketch.min, sketch.max) == (min(values), max(values))


@given(st.lists(datasets, min_size=3, max_size=3))
def test_merge_is_associative_commutative_and_equals_the_sketch_of_all_data(
    parts: list[list[float]],
) -> None:
    a, b, c = (DDSketch.of(p) for p in parts)
    left = a.copy()
    left.merge(b)
    left.merge(c)  # (a + b) + c
    bc = b.copy()
    bc.merge(a)  # b + a, commuted
    right = c.copy()
    right.merge(bc)  # c + (b + a)
    everything = DDSketch.of([v for part in parts for v in part])
    assert state(left) == state(right) == state(everything)
    assert left.sum == pytest.approx(everything.sum, rel=1e-9, abs=1e-12)


def test_merge_refuses_other_accuracy() -> None:
    with pytest.raises(SketchError, match="relative accuracy"):
        DDSketch(0.01).merge(DDSketch(0.02))


@given(datasets)
def test_bytes_round_trip(values: list[float]) -> None:
    sketch = DDSketch.of(values)
    back = DDSketch.from_bytes(sketch.to_bytes())
    assert state(back) == state(sketch)
    assert back.sum == sketch.sum
    assert back.to_bytes() == sketch.to_bytes()


@given(datasets)
def test_model_round_trip_keeps_buckets_and_given_stats(values: list[float]) -> None:
    sketch = DDSketch.of(values)
    back = DDSketch.from_model(
        sketch.to_model(), sum_ms=sketch.sum, min_ms=sketch.min, max_ms=sketch.max
    )
    assert state(back) == state(sketch)
    for q in QUANTILES:
        assert back.quantile(q) == sketch.quantile(q)


def test_model_without_stats_still_answers_within_the_bound() -> None:
    values = [float(v) for v in range(1, 1001)]
    back = DDSketch.from_model(DDSketch.of(values).to_model())
    for q in QUANTILES:
        assert_within_bound(back.quantile(q), true_quantile(values, q), 0.01)


def test_empty_sketch_round_trips_and_has_no_quantile() -> None:
    empty = DDSketch()
    assert DDSketch.from_bytes(empty.to_bytes()).count == 0
    assert empty.to_model() == LatencySketch(0.01, 0, (), 0)
    with pytest.raises(SketchError, match="empty"):
        empty.quantile(0.5)


@given(st.binary(max_size=200))
def test_garbage_bytes_raise_the_decode_error_or_decode_validly(data: bytes) -> None:
    try:
        sketch = DDSketch.from_bytes(data)
    except SketchDecodeError:
        return
    assert sketch.to_bytes() == data  # only canonical encodings are accepted


@given(datasets, st.data())
def test_corrupted_encodings_raise_the_decode_error_or_decode_validly(
    values: list[float], data: st.DataObject
) -> None:
    encoded = bytearray(DDSketch.of(values).to_bytes())
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    with contextlib.suppress(SketchDecodeError):
        DDSketch.from_bytes(bytes(encoded[:cut]))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated"),
        (b"\x00\x01", "magic"),
        (b"\xdd\x07", "version"),
        (DDSketch.of([1.0]).to_bytes() + b"\x00", "trailing"),
        (DDSketch.of([1.0]).to_bytes()[:-3], "truncated"),
    ],
)
def test_decode_errors_name_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(SketchDecodeError, match=message):
        DDSketch.from_bytes(data)


@given(
    st.lists(st.floats(min_value=1e-3, max_value=1e6), min_size=1, max_size=200),
    st.integers(min_value=1, max_value=64),
)
def test_collapse_bounds_size_and_keeps_the_guarantee_above_the_collapsed_buckets(
    values: list[float], max_bins: int
) -> None:
    sketch = DDSketch.of(values, max_bins=max_bins)
    assert sketch.bin_count() <= max_bins
    model = sketch.to_model()
    # Everything from the lowest kept bucket up is still bucketed exactly.
    lowest_kept = sketch.value_of_index(model.offset) / (1 + 0.01)
    for q in QUANTILES:
        truth = true_quantile(values, q)
        estimate = sketch.quantile(q)
        if truth > lowest_kept:
            assert_within_bound(estimate, truth, 0.01)
        else:  # collapsed: over-estimated, never beyond the lowest kept bucket
            assert truth <= estimate <= sketch.value_of_index(model.offset) * (1 + 1e-9)


@settings(max_examples=50)
@given(st.lists(st.floats(min_value=1e-3, max_value=1e6), min_size=1, max_size=100))
def test_collapse_is_order_independent(values: list[float]) -> None:
    forward = DDSketch.of(values, max_bins=8)
    backward = DDSketch.of(reversed(values), max_bins=8)
    assert state(forward) == state(backward)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_add_refuses_values_that_are_not_latencies(bad: float) -> None:
    with pytest.raises(SketchError, match="finite number >= 0"):
        DDSketch().add(bad)


@pytest.mark.parametrize("bad", [0.0, 0.9, math.nan])
def test_constructor_refuses_bad_accuracy(bad: float) -> None:
    with pytest.raises(SketchError, match="relative_accuracy"):
        DDSketch(bad)


def test_quantile_outside_0_1_is_refused() -> None:
    with pytest.raises(SketchError, match="between 0 and 1"):
        DDSketch.of([1.0]).quantile(1.5)


def test_from_model_refuses_negative_counts_and_impossible_offsets() -> None:
    with pytest.raises(SketchDecodeError, match=r"bin_counts\[1\]"):
        DDSketch.from_model(LatencySketch(0.01, 10, (1, -1, 1)))
    with pytest.raises(SketchDecodeError, match="index range"):
        DDSketch.from_model(LatencySketch(0.01, 2**30, (1,)))


def test_add_with_count_weights_the_value() -> None:
    sketch = DDSketch()
    sketch.add(10.0, count=99)
    sketch.add(1000.0)
    assert sketch.count == 100
    assert sketch.quantile(0.5) == pytest.approx(10.0, rel=0.01)
    assert sketch.sum == pytest.approx(1990.0)
