"""The ingest hot path's shortcuts give the same answers as the plain rules.

Validation checks samples column-wise and remembers series that passed
(CheckedSeries); SQLite takes sample rows and newest points in multi-row
statements. None of them may
change what is accepted, what is refused (and the field named), or what is
stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_batches import CORRUPTIONS, Corruption, endpoint, good_batch, sample, valid_batches
from sqlalchemy import Engine, create_engine

from collector.ingest.validate import Caller, CheckedSeries, Limits, validate_batch
from collector.store.fastpath import (
    SQLITE_ROWS_PER_INSERT,
    insert_samples,
    upsert_latest,
)
from collector.store.migrate import upgrade
from dealerpulse.model import MetricBatch

NOW_MS = 1_767_225_600_000
LIMITS = Limits(max_samples=50)
DEALER = "sunrise-motors"
CALLER = Caller(DEALER, True, 100, NOW_MS)


@given(valid_batches(NOW_MS, LIMITS), st.sampled_from(CORRUPTIONS))
def test_remembered_series_do_not_let_a_spoiled_batch_through(
    batch: MetricBatch, corruption: Corruption
) -> None:
    # Corruptions spoil the first sample and endpoint: make sure there are ones.
    batch = dataclasses.replace(
        batch,
        samples=(sample(NOW_MS, name="zz.first", value=1.0), *batch.samples),
        endpoints=(endpoint(NOW_MS), *batch.endpoints),
    )
    checked = CheckedSeries()
    assert validate_batch(batch, CALLER, LIMITS, checked) is None
    spoiled = corruption.spoil(batch, NOW_MS, LIMITS)
    # Same answer with the series of the good batch remembered as without.
    assert validate_batch(spoiled, CALLER, LIMITS, checked) == validate_batch(
        spoiled, CALLER, LIMITS
    )


def test_a_bad_value_is_named_although_its_series_was_checked_before() -> None:
    checked = CheckedSeries()
    good = good_batch(DEALER, "agent-1", 1, NOW_MS)
    assert validate_batch(good, CALLER, LIMITS, checked) is None
    bad = dataclasses.replace(
        good, seq=2, samples=(*good.samples, sample(NOW_MS - 1000, value=float("nan")))
    )
    rejection = validate_batch(bad, CALLER, LIMITS, checked)
    assert rejection is not None
    assert rejection.field == f"samples[{len(good.samples)}].value"


def test_huge_finite_values_pass_although_their_sum_overflows() -> None:
    batch = good_batch(DEALER, "agent-1", 1, NOW_MS)
    huge = tuple(sample(NOW_MS - 1000 * i, name="disk.free", value=1e308) for i in range(1, 4))
    batch = dataclasses.replace(batch, samples=huge)
    assert validate_batch(batch, CALLER, LIMITS, CheckedSeries()) is None


def test_checked_series_stay_bounded() -> None:
    checked = CheckedSeries(max_entries=10)
    for i in range(25):
        checked.add({(f"m{i}", "count", ())})
    assert 0 < len(checked.specs) <= 10


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    # One migrated database for every example: migrating per example is slow.
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('fastpath')}/fastpath.db")
    upgrade(engine)
    yield engine
    engine.dispose()


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(1, 2**62),
            st.integers(0, 2**62),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        max_size=3 * SQLITE_ROWS_PER_INSERT // 2,
    )
)
def test_sqlite_multi_row_inserts_store_every_row_exactly(
    sqlite_engine: Engine, rows: list[tuple[int, int, float]]
) -> None:
    with sqlite_engine.connect() as connection, connection.begin():
        connection.exec_driver_sql("DELETE FROM samples")
        insert_samples(connection, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
        back = connection.exec_driver_sql(
            "SELECT series_id, time_ms, value FROM samples ORDER BY id"
        ).all()
    # Values compare with ==: SQLite stores -0.0 as 0.0 (equal, only the sign of zero goes).
    assert [tuple(row) for row in back] == [tuple(row) for row in rows]


points = st.tuples(st.integers(0, 2**40), st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=20, deadline=None)
@given(
    before=st.dictionaries(st.integers(1, 2_000), points, max_size=3 * SQLITE_ROWS_PER_INSERT),
    after=st.dictionaries(st.integers(1, 2_000), points, max_size=3 * SQLITE_ROWS_PER_INSERT),
)
def test_sqlite_multi_row_latest_keeps_the_newest_point_of_every_series(
    sqlite_engine: Engine,
    before: dict[int, tuple[int, float]],
    after: dict[int, tuple[int, float]],
) -> None:
    with sqlite_engine.connect() as connection, connection.begin():
        connection.exec_driver_sql("DELETE FROM series_latest")
        for points, received_ms in ((before, 1), (after, 2)):
            ids = sorted(points)
            times = [points[i][0] for i in ids]
            values = [points[i][1] for i in ids]
            upsert_latest(connection, ids, times, values, received_ms)
        back = connection.exec_driver_sql(
            "SELECT series_id, time_ms, value, received_ms FROM series_latest"
        ).all()
    expected = {sid: (t, v, 1) for sid, (t, v) in before.items()}
    for sid, (t, v) in after.items():
        # An older point never hides a newer one; an equal time takes the later write.
        if sid not in expected or t >= expected[sid][0]:
            expected[sid] = (t, v, 2)
    assert {row[0]: tuple(row[1:]) for row in back} == expected
