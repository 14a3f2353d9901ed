"""agent.batching: one interval split into batches the collector takes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.batching import MAX_BATCH_BYTES, estimated_size, split
from agent.codec import encode_batch
from dealerpulse.model import EndpointStat, LatencySketch, MetricBatch, Sample, labels_of


def test_split_respects_the_item_limit_and_keeps_order() -> None:
    items = [Sample("m", float(i), "count", 0) for i in range(12)]
    chunks = split(items, max_items=5)
    assert [len(c) for c in chunks] == [5, 5, 2]
    assert [s.value for c in chunks for s in c.samples] == [float(i) for i in range(12)]


def test_split_respects_the_byte_limit_including_endpoints() -> None:
    stats = [EndpointStat(f"/r/{i}", "GET", 0, 1, 1, last_error="x" * 500) for i in range(10)]
    limit = 3 * estimated_size(stats[0])
    chunks = split([], stats, max_bytes=limit)
    assert all(c.size <= limit for c in chunks)
    assert sum(len(c.endpoints) for c in chunks) == 10


def test_empty_interval_is_still_one_batch() -> None:
    assert [len(c) for c in split([], [])] == [0]


def test_default_limit_keeps_a_huge_interval_under_two_mib() -> None:
    items = [Sample("disk.read_bytes_per_s", 1.0, "bytes_per_second", 0, (("device", "x" * 300),))]
    chunks = split(items * 20_000)
    assert len(chunks) > 1 and all(c.size <= MAX_BATCH_BYTES for c in chunks)


text = st.text(max_size=40)
samples = st.builds(
    Sample,
    name=text,
    value=st.floats(allow_nan=False),
    unit=text,
    time_ms=st.integers(-(2**63), 2**63 - 1),
    labels=st.dictionaries(text, text, max_size=4).map(labels_of),
)
endpoints = st.builds(
    EndpointStat,
    route=text,
    method=st.text(max_size=8),
    start_ms=st.integers(-(2**63), 2**63 - 1),
    end_ms=st.integers(-(2**63), 2**63 - 1),
    count=st.integers(0, 2**64 - 1),
    errors=st.integers(0, 2**64 - 1),
    status_counts=st.dictionaries(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)).map(
        lambda d: tuple(sorted(d.items()))
    ),
    last_error=text,
    latency=st.none()
    | st.builds(
        LatencySketch,
        relative_accuracy=st.floats(allow_nan=False),
        offset=st.integers(-(2**31), 2**31 - 1),
        bin_counts=st.lists(st.integers(0, 2**64 - 1), max_size=8).map(tuple),
        zero_count=st.integers(0, 2**64 - 1),
    ),
    source=st.text(max_size=10),
)


@given(st.lists(samples, max_size=10), st.lists(endpoints, max_size=5))
def test_size_estimate_is_an_upper_bound_of_the_encoding(
    sample_list: list[Sample], endpoint_list: list[EndpointStat]
) -> None:
    empty = MetricBatch("agent", "dealer", 1, "boot", "host", "0.1.0", 0)
    full = MetricBatch(
        "agent", "dealer", 1, "boot", "host", "0.1.0", 0, tuple(sample_list), tuple(endpoint_list)
    )
    encoded_growth = len(encode_batch(full)) - len(encode_batch(empty))
    items: list[Sample | EndpointStat] = [*sample_list, *endpoint_list]
    assert encoded_growth <= sum(estimated_size(item) for item in items)
