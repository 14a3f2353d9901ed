"""Database fixtures shared by every part's tests.

- ``db_url``: parametrised over ``sqlite`` (a file in tmp_path) and
  ``postgresql`` (a fresh database ``dp_test_<random>`` on the server, dropped
  after the test; the PostgreSQL case carries ``pytest.mark.postgres``).
- ``sqlite_url`` / ``pg_url``: one backend only.
- ``store``: an open, migrated :class:`SQLAlchemyMetricStore` on ``db_url``,
  closed after the test.
- ``start_migrated``: requested (directly or by a fixture such as ``store``)
  when the test opens a store on its ``db_url``/``pg_url``/``sqlite_url``
  anyway. The database then starts as a copy of a template migrated once per
  session (``CREATE DATABASE ... TEMPLATE`` / a file copy) instead of empty:
  exactly what ``open_store`` would have made of it, in a fraction of the time.
  ``open_store`` still runs its migration step on the copy (a no-op at the
  newest version). Tests of the migrations themselves take the empty database.

Test databases are dropped by a background thread so that a test does not
wait for the previous one's ``DROP DATABASE``; the session waits for every
drop before it ends.

PostgreSQL is found at ``postgresql+psycopg://postgres@127.0.0.1:5432/test``
(override with ``DEALERPULSE_TEST_PG_URL``; that database is only used to
create and drop the test databases). When it cannot be reached the
PostgreSQL cases are skipped with the reason, except under ``CI=true``, where
they fail: CI must never go green without PostgreSQL.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import secrets
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from collector.store import SQLAlchemyMetricStore

logger = logging.getLogger(__name__)

# No per-example deadline: a deadline is a timed assertion, and on a loaded
# 2-core machine it fails correct code. Speed is measured in bench/.
settings.register_profile("dealerpulse", deadline=None)
settings.load_profile("dealerpulse")

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


def _database_url(name: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(_admin_url()).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def _drop_now(name: str) -> None:
    """Drops ``name`` even if connections to it linger."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(_libpq_url(_admin_url()), autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


class _BackgroundDropper:
    """Drops test databases on one worker thread, in the order they were handed over.

    A drop costs from a tenth of a second to seconds (it waits for disk I/O);
    the next test need not wait for it. ``finish`` waits for every drop.
    """

    def __init__(self) -> None:
        self._names: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="pg-dropper", daemon=True)
        self._thread.start()

    def drop(self, name: str) -> None:
        self._names.put(name)

    def finish(self, timeout_s: float = 120.0) -> None:
        self._names.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (name := self._names.get()) is not None:
            try:
                _drop_now(name)
            except Exception:  # one failed drop must not stop the rest
                logger.warning("could not drop test database %s", name, exc_info=True)


@functools.cache
def _dropper() -> _BackgroundDropper:
    return _BackgroundDropper()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _dropper.cache_info().currsize:
        _dropper().finish()


def _fresh_pg_database(template: str | None = None) -> Iterator[str]:
    """A new database for one test (empty, or a copy of ``template``); dropped afterwards."""
    import psycopg
    from psycopg import sql

    _require_postgres()
    name = f"{_unique_prefix()}_{secrets.token_hex(4)}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create = sql.SQL("{} TEMPLATE {}").format(create, sql.Identifier(template))
    with psycopg.connect(_libpq_url(_admin_url()), autocommit=True) as connection:
        connection.execute(create)
    try:
        yield _database_url(name)
    finally:
        _dropper().drop(name)


class _MigratedTemplates:
    """Databases at the newest schema, each made on first use and copied for every test."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._sqlite: Path | None = None
        self._pg: str | None = None

    def sqlite_file(self) -> Path:
        if self._sqlite is None:
            path = self._directory / "template.db"
            _migrate(f"sqlite:///{path}")
            self._sqlite = path
        return self._sqlite

    def pg_database(self) -> str:
        if self._pg is None:
            name = f"{_unique_prefix()}_template"
            _create_pg_template(name)
            self._pg = name
        return self._pg

    def close(self) -> None:
        if self._pg is not None:
            _dropper().drop(self._pg)


def _migrate(url: str) -> None:
    from collector.store import open_store

    open_store(url, pool_size=1).close()


def _create_pg_template(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(_libpq_url(_admin_url()), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        _migrate(_database_url(name))
    except BaseException:
        _drop_now(name)
        raise


@pytest.fixture(scope="session")
def _migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_MigratedTemplates]:
    templates = _MigratedTemplates(tmp_path_factory.mktemp("migrated-template"))
    try:
        yield templates
    finally:
        templates.close()


@pytest.fixture
def start_migrated() -> None:
    """A flag: the test's database may start as a copy of the migrated template (module doc)."""


def _wants_migrated(request: pytest.FixtureRequest) -> bool:
    return "start_migrated" in request.fixturenames


def _sqlite_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    path = tmp_path / "dealerpulse.db"
    if _wants_migrated(request) and not path.exists():
        templates: _MigratedTemplates = request.getfixturevalue("_migrated_templates")
        shutil.copyfile(templates.sqlite_file(), path)
    return f"sqlite:///{path}"


def _pg_database(request: pytest.FixtureRequest) -> Iterator[str]:
    template = None
    if _wants_migrated(request):
        _require_postgres()
        templates: _MigratedTemplates = request.getfixturevalue("_migrated_templates")
        template = templates.pg_database()
    yield from _fresh_pg_database(template)


@pytest.fixture
def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a SQLite file that does not exist yet (or is migrated: ``start_migrated``)."""
    return _sqlite_database(request, tmp_path)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh PostgreSQL database, empty unless ``start_migrated`` (module doc)."""
    yield from _pg_database(request)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of each backend in turn, empty unless ``start_migrated``."""
    if request.param == "sqlite":
        yield _sqlite_database(request, tmp_path)
    else:
        yield from _pg_database(request)


@pytest.fixture
def store(start_migrated: None, db_url: str) -> Iterator[SQLAlchemyMetricStore]:
    """An open store with the newest schema on ``db_url``."""
    from collector.store import open_store

    opened = open_store(db_url, pool_size=5)
    try:
        yield opened
    finally:
        opened.close()
