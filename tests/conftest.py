"""Database fixtures shared by every part's tests.

- ``db_url``: parametrised over ``sqlite`` (a file in tmp_path) and
  ``postgresql`` (a fresh database ``dp_test_<random>`` on the server, dropped
  after the test; the PostgreSQL case carries ``pytest.mark.postgres``).
- ``sqlite_url`` / ``pg_url``: one backend only.
- ``store``: an open, migrated :class:`SQLAlchemyMetricStore` on ``db_url``,
  closed after the test.

PostgreSQL is found at ``postgresql+psycopg://postgres@127.0.0.1:5432/test``
(override with ``DEALERPULSE_TEST_PG_URL``; that database is only used to
create and drop the test databases). When it cannot be reached the
PostgreSQL cases are skipped with the reason, except under ``CI=true``, where
they fail: CI must never go green without PostgreSQL.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collector.store import SQLAlchemyMetricStore

PG_URL_ENV = "DEALERPULSE_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _admin_url() -> str:
    return os.environ.get(PG_URL_ENV) or DEFAULT_PG_URL


def _libpq_url(url: str, database: str | None = None) -> str:
    """The SQLAlchemy URL as a plain postgresql:// URL psycopg accepts."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@functools.cache
def _postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or None. Asked once per test session."""
    import psycopg

    try:
        with psycopg.connect(_libpq_url(_admin_url()), connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        return f"PostgreSQL at {_admin_url()} is unreachable ({error}); set {PG_URL_ENV}"
    return None


def _require_postgres() -> None:
    reason = _postgres_unreachable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (PostgreSQL tests are mandatory under CI=true)")
    pytest.skip(reason)


@functools.cache
def _unique_prefix() -> str:
    return f"dp_test_{secrets.token_hex(4)}"


def _fresh_pg_database() -> Iterator[str]:
    """A new empty database for one test; dropped afterwards even if connections linger."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    _require_postgres()
    name = f"{_unique_prefix()}_{secrets.token_hex(4)}"
    admin = _libpq_url(_admin_url())
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_url(_admin_url()).set(drivername="postgresql+psycopg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'dealerpulse.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database (skip/fail rule in the module doc)."""
    yield from _fresh_pg_database()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'dealerpulse.db'}"
    else:
        yield from _fresh_pg_database()


@pytest.fixture
def store(db_url: str) -> Iterator[SQLAlchemyMetricStore]:
    """An open store with the newest schema on ``db_url``."""
    from collector.store import open_store

    opened = open_store(db_url, pool_size=5)
    try:
        yield opened
    finally:
        opened.close()
