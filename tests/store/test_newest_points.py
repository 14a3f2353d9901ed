"""The newest point of each series in a group, as the writer picks it for series_latest."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from collector.store.sample_rows import SampleColumns

# A batch: (series id, time) per sample; few series and times, so repeats are common.
batches = st.lists(
    st.lists(st.tuples(st.integers(1, 6), st.integers(0, 5)), min_size=1, max_size=30),
    min_size=1,
    max_size=4,
)


def reference(rows: list[tuple[int, int, float]]) -> dict[int, tuple[int, float]]:
    """Per series the newest (time, value); on equal times the later row."""
    newest: dict[int, tuple[int, float]] = {}
    for series_id, time_ms, value in rows:
        if series_id not in newest or time_ms >= newest[series_id][0]:
            newest[series_id] = (time_ms, value)
    return newest


@given(batches=batches, in_time_order=st.booleans())
def test_the_newest_point_of_every_series_is_kept(
    batches: list[list[tuple[int, int]]], in_time_order: bool
) -> None:
    columns = SampleColumns()
    rows: list[tuple[int, int, float]] = []
    for batch in batches:
        if in_time_order:  # how agents send them: the fast path
            batch = sorted(batch, key=lambda sample: sample[1])
        # Each value unique, so the test sees which of two equal-time samples won.
        values = [float(len(rows) + i) for i in range(len(batch))]
        columns.add([s for s, _ in batch], [t for _, t in batch], values)
        rows += [(s, t, v) for (s, t), v in zip(batch, values, strict=True)]

    ids, times, values = columns.latest()
    assert ids == sorted(ids)
    assert dict(zip(ids, zip(times, values, strict=True), strict=True)) == reference(rows)
