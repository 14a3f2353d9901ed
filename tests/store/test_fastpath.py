"""The hand-packed COPY stream PostgreSQL reads, checked against the server itself."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.store.fastpath import array_literal, encode_copy_binary
from collector.store.series import text_array

SampleRow = tuple[int, int, float]

int8 = st.integers(-(2**63), 2**63 - 1)
rows = st.lists(st.tuples(int8, int8, st.floats(allow_nan=False)), max_size=40)


@pytest.fixture
def pg_connection(pg_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    libpq = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE copied (n serial, series_id int8, time_ms int8, value float8)"
        )
        yield connection


@pytest.mark.postgres
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=rows)
def test_postgresql_reads_back_exactly_the_packed_rows(
    pg_connection: psycopg.Connection[tuple[object, ...]], rows: list[SampleRow]
) -> None:
    pg_connection.execute("TRUNCATE copied")
    with pg_connection.cursor() as cursor:
        copy_sql = "COPY copied (series_id, time_ms, value) FROM STDIN (FORMAT BINARY)"
        with cursor.copy(copy_sql) as copy:
            copy.write(
                encode_copy_binary([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
            )
        cursor.execute("SELECT series_id, time_ms, value FROM copied ORDER BY n")
        back = cursor.fetchall()

    # repr tells -0.0 from 0.0, which == does not.
    assert repr(back) == repr(rows)


@pytest.mark.postgres
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\x00")), max_size=20)
)
def test_text_array_literals_read_back_as_the_same_strings(
    pg_connection: psycopg.Connection[tuple[object, ...]], texts: list[str]
) -> None:
    row = pg_connection.execute("SELECT %s::text[]", (text_array(texts),)).fetchone()
    assert row is not None and row[0] == texts


@pytest.mark.postgres
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    numbers=st.lists(int8, max_size=20),
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=20),
)
def test_number_array_literals_read_back_exactly(
    pg_connection: psycopg.Connection[tuple[object, ...]], numbers: list[int], values: list[float]
) -> None:
    query = "SELECT %s::bigint[], %s::float8[]"
    row = pg_connection.execute(query, (array_literal(numbers), array_literal(values))).fetchone()
    assert row is not None
    assert row[0] == numbers
    # repr tells -0.0 from 0.0, which == does not.
    assert repr(row[1]) == repr(values)
