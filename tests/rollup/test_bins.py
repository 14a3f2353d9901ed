"""The rollup sketch format and the vectorised merge, against DDSketch itself."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.rollup.bins import (
    Bins,
    BinsError,
    bins_from_json,
    decode,
    encode,
    merge_encoded,
    merge_groupings,
    merge_groups,
)
from collector.store.sketch import sketch_to_json
from dealerpulse.sketch import DDSketch

latencies = st.lists(
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=40,
)


def _bins(sketch: DDSketch) -> Bins:
    return bins_from_json(sketch_to_json(sketch.to_model()))


@given(latencies)
def test_encode_decode_round_trip(values: list[float]) -> None:
    original = _bins(DDSketch.of(values))
    again = decode(encode(original))
    assert again.relative_accuracy == original.relative_accuracy
    assert again.zero_count == original.zero_count
    assert again.total == original.total == len(values)
    dense_a = {original.offset + i: int(c) for i, c in enumerate(original.counts) if c}
    dense_b = {again.offset + i: int(c) for i, c in enumerate(again.counts) if c}
    assert dense_a == dense_b


def test_counts_beyond_32_bits_survive() -> None:
    big = Bins(0.01, 7, np.asarray([2**40, 3], dtype=np.uint64), 5)
    again = decode(encode(big))
    assert [int(c) for c in again.counts] == [2**40, 3]
    assert again.zero_count == 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00", "shorter than its header"),
        (b"\x00" * 23, "bad magic"),
        (encode(_bins(DDSketch.of([5.0])))[:-1], "not a multiple"),
    ],
)
def test_bad_bytes_are_refused_by_name(data: bytes, message: str) -> None:
    with pytest.raises(BinsError, match=message):
        decode(data)


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 3), latencies), min_size=1, max_size=12))
def test_grouped_quantiles_equal_ddsketch_merges(parts: list[tuple[int, list[float]]]) -> None:
    groups = 4
    expected: list[DDSketch | None] = [None] * groups
    for group, values in parts:
        sketch = DDSketch.of(values)
        if expected[group] is None:
            expected[group] = sketch
        else:
            expected[group].merge(sketch)  # type: ignore[union-attr]
    ids = [g for g, _ in parts]
    sketches = [_bins(DDSketch.of(v)) for _, v in parts]
    merged = merge_groups(ids, sketches, groups)
    together = merge_groupings([(ids, groups), ([0] * len(ids), 1)], sketches)
    assert merged is not None and together is not None
    per_group, everything = together
    straight = merge_encoded([encode(b) for b in sketches], ids, groups)
    assert straight is not None
    assert straight.totals().tolist() == merged.totals().tolist()
    assert merged.totals().tolist() == per_group.totals().tolist()
    assert everything.totals().tolist() == [sum(len(v) for _, v in parts)]
    mins = [s.min if s else 0.0 for s in expected]
    maxs = [s.max if s else 0.0 for s in expected]
    for q in (0.0, 0.25, 0.5, 0.95, 0.99, 1.0):
        got = merged.quantiles(q, mins, maxs)
        assert per_group.quantiles(q, mins, maxs) == got
        assert straight.quantiles(q, mins, maxs) == got
        for group in range(groups):
            want = expected[group]
            if want is None:
                assert got[group] is None
            else:
                assert got[group] == pytest.approx(want.quantile(q), rel=1e-9, abs=1e-12)


def test_sketches_of_another_accuracy_are_left_out() -> None:
    common = _bins(DDSketch.of([10.0, 20.0]))
    other = _bins(DDSketch.of([1000.0], relative_accuracy=0.02))
    merged = merge_groups([0, 0, 0], [common, common, other], 1)
    assert merged is not None
    assert merged.relative_accuracy == 0.01
    assert merged.totals()[0] == 4


def test_buckets_beyond_max_bins_fold_into_the_lowest_kept() -> None:
    low = Bins(0.01, 10, np.asarray([1, 2], dtype=np.uint64))
    high = Bins(0.01, 100, np.asarray([3, 4], dtype=np.uint64))
    for merged in (
        merge_groups([0, 0], [low, high], 1, max_bins=4),
        merge_encoded([encode(low), encode(high)], [0, 0], 1, max_bins=4),
    ):
        assert merged is not None
        assert merged.low == 98
        assert merged.counts[0].tolist() == [3.0, 0.0, 3.0, 4.0]
