"""A batch written in columns stores exactly what the same batch in rows stores.

The writer resolves a columnar batch's series per (name, labels) index pair
and caches that map per agent while the agent's dictionaries stay the same.
These tests write one agent's batches as rows and a twin agent's identical
batches as :class:`SampleTable`, mixed in the same groups, and compare every
stored sample and every newest point, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from collector.store import SQLAlchemyMetricStore
from collector.store.schema import samples, series, series_latest
from collector.store.series import labels_key
from dealerpulse.columns import SampleTable
from dealerpulse.model import MetricBatch, Sample

from .store_factories import DEALER, NOW, T0, add_dealer, batch, with_digest

# Few names and label sets: agents repeat series, pairs and dictionaries often.
names = st.sampled_from(["cpu.percent", "memory.used_percent", "disk.used_percent"])
label_sets = st.sampled_from([(), (("mount", "/"),), (("mount", "/data"),), (("nic", "eth0"),)])
points = st.tuples(names, label_sets, st.integers(0, 5), st.floats(-1e9, 1e9))
batches = st.lists(st.lists(points, min_size=1, max_size=12), min_size=1, max_size=6)
# Which batches go into which group: sizes of consecutive runs.
splits = st.lists(st.integers(1, 3), min_size=1, max_size=6)
_examples = itertools.count()
Row = tuple[object, ...]


Drawn = list[tuple[str, tuple[tuple[str, str], ...], int, float]]


def _samples(seq: int, drawn: Drawn) -> tuple[Sample, ...]:
    # A series may have several points in one batch, never two at one time
    # (validation refuses that): the first drawn wins. Batches never share a
    # time, so the newest point does not depend on the order within a group.
    unique: dict[tuple[str, tuple[tuple[str, str], ...], int], float] = {}
    for name, labels, step, value in drawn:
        unique.setdefault((name, labels, step), value)
    return tuple(
        Sample(name, value, "u", T0 + seq * 10_000 + step * 1000, labels)
        for (name, labels, step), value in unique.items()
    )


def _stored(store: SQLAlchemyMetricStore, agent_id: str) -> tuple[list[Row], list[Row]]:
    """Every sample and every newest point of the agent, as comparable tuples."""
    rows = select(series.c.name, series.c.labels_key, samples.c.time_ms, samples.c.value).join(
        series, series.c.id == samples.c.series_id
    )
    newest = select(
        series.c.name, series.c.labels_key, series_latest.c.time_ms, series_latest.c.value
    ).join(series, series.c.id == series_latest.c.series_id)
    with store.engine.connect() as connection:
        stored = connection.execute(rows.where(series.c.agent_id == agent_id)).all()
        latest = connection.execute(newest.where(series.c.agent_id == agent_id)).all()
    return sorted(map(tuple, stored)), sorted(map(tuple, latest))


def _as_table(built: MetricBatch) -> MetricBatch:
    return with_digest(dataclasses.replace(built, samples=SampleTable.of(built.samples)))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=batches, split=splits, data=st.data())
def test_columns_store_the_same_rows_and_newest_points_as_rows(
    store: SQLAlchemyMetricStore,
    drawn: list[Drawn],
    split: list[int],
    data: st.DataObject,
) -> None:
    if store.get_dealer(DEALER) is None:
        add_dealer(store)
    example = next(_examples)
    row_agent, table_agent = f"rows-{example}", f"cols-{example}"
    sizes = itertools.cycle(split)
    # Groups of drawn sizes; within a group the twins come in a drawn order.
    remaining = [
        (
            batch(row_agent, seq, samples=_samples(seq, d)),
            _as_table(batch(table_agent, seq, samples=_samples(seq, d))),
        )
        for seq, d in enumerate(drawn, start=1)
    ]
    while remaining:
        size = next(sizes)
        group = [b for pair in remaining[:size] for b in pair]
        remaining = remaining[size:]
        group = data.draw(st.permutations(group))
        store.write_batches(group, NOW)

    assert _stored(store, table_agent) == _stored(store, row_agent)
    # And both are right: every point stored, the newest of each series kept.
    points = [p for seq, d in enumerate(drawn, start=1) for p in _samples(seq, d)]
    newest: dict[tuple[str, str], tuple[int, float]] = {}
    for point in points:
        key = (point.name, labels_key(point.labels))
        if key not in newest or point.time_ms >= newest[key][0]:
            newest[key] = (point.time_ms, point.value)
    stored, latest = _stored(store, row_agent)
    assert stored == sorted((p.name, labels_key(p.labels), p.time_ms, p.value) for p in points)
    assert latest == sorted((name, key, t, v) for (name, key), (t, v) in newest.items())
