"""series_latest keeps the newest point of every series, whatever order points come in.

upsert_latest updates rows in place and falls back to an upsert when a series
has no row yet or a point is older than the stored one; both paths are
checked against a model on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from collector.store import SQLAlchemyMetricStore
from collector.store.fastpath import upsert_latest
from collector.store.schema import series, series_latest

from .store_factories import DEALER, NOW, T0, add_dealer, batch, sample

SERIES = 12
Points = dict[int, tuple[int, float]]
# Per round: series index -> (time offset, value); few times, so ties happen.
rounds = st.lists(
    st.dictionaries(
        st.integers(0, SERIES - 1),
        st.tuples(st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False)),
        max_size=SERIES,
    ),
    min_size=1,
    max_size=4,
)
_examples = itertools.count()


def _series_ids(store: SQLAlchemyMetricStore, agent_id: str) -> list[int]:
    """Ids of SERIES new series of a new agent; each with its first point at T0."""
    points = tuple(sample("cpu.core_percent", 1.0, T0, core=str(i)) for i in range(SERIES))
    store.write_batches([batch(agent_id, 1, samples=points)], NOW)
    query = select(series.c.id).where(series.c.agent_id == agent_id).order_by(series.c.id)
    with store.engine.connect() as connection:
        return list(connection.scalars(query))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=rounds, forgotten=st.sets(st.integers(0, SERIES - 1)))
def test_the_newest_point_wins_and_a_tie_takes_the_later_write(
    store: SQLAlchemyMetricStore, drawn: list[dict[int, tuple[int, float]]], forgotten: set[int]
) -> None:
    if store.get_dealer(DEALER) is None:
        add_dealer(store)
    ids = _series_ids(store, f"latest-{next(_examples)}")
    expected: Points = {sid: (T0, 1.0) for sid in ids}
    with store.engine.begin() as connection:
        # Series without a row: the path a brand-new series takes.
        gone = [ids[i] for i in forgotten]
        connection.execute(delete(series_latest).where(series_latest.c.series_id.in_(gone)))
        for sid in gone:
            del expected[sid]
    for received_ms, points in enumerate(drawn, start=1):
        chosen = sorted((ids[i], (T0 + dt, value)) for i, (dt, value) in points.items())
        with store.engine.begin() as connection:
            upsert_latest(
                connection,
                [sid for sid, _ in chosen],
                [time_ms for _, (time_ms, _) in chosen],
                [value for _, (_, value) in chosen],
                received_ms,
            )
        for sid, point in chosen:
            if sid not in expected or point[0] >= expected[sid][0]:
                expected[sid] = point
    query = select(series_latest.c.series_id, series_latest.c.time_ms, series_latest.c.value)
    with store.engine.connect() as connection:
        stored = {
            row.series_id: (row.time_ms, row.value)
            for row in connection.execute(query.where(series_latest.c.series_id.in_(ids)))
        }
    assert stored == expected
