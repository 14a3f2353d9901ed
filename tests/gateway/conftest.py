"""Fixtures of the HTTP gateway tests: a filled store, the real reporter core, a served app."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from starlette.applications import Starlette

from collector.store import SQLAlchemyMetricStore, open_store
from dealerpulse.clock import FakeClock
from reporter.core import ReporterCore
from reporter.http.app import create_app
from reporter.http.settings import HttpSettings

from .harness import NOW, Client, Tokens, fill_store, served

AppFactory = Callable[..., Starlette]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def _filled(url: str, clock: FakeClock) -> Iterator[tuple[SQLAlchemyMetricStore, Tokens]]:
    store = open_store(url, clock=clock, pool_size=5)
    try:
        yield store, fill_store(store)
    finally:
        store.close()


@pytest.fixture
def filled(
    start_migrated: None, sqlite_url: str, clock: FakeClock
) -> Iterator[tuple[SQLAlchemyMetricStore, Tokens]]:
    yield from _filled(sqlite_url, clock)


@pytest.fixture
def filled_any(
    start_migrated: None, db_url: str, clock: FakeClock
) -> Iterator[tuple[SQLAlchemyMetricStore, Tokens]]:
    """The same data on SQLite and PostgreSQL."""
    yield from _filled(db_url, clock)


@pytest.fixture
def store(filled: tuple[SQLAlchemyMetricStore, Tokens]) -> SQLAlchemyMetricStore:
    return filled[0]


@pytest.fixture
def tokens(filled: tuple[SQLAlchemyMetricStore, Tokens]) -> Tokens:
    return filled[1]


@pytest.fixture
def make_app(store: SQLAlchemyMetricStore, clock: FakeClock) -> AppFactory:
    def make(**settings: object) -> Starlette:
        values: dict[str, object] = {"rate_limit_requests": 10_000} | settings
        core = ReporterCore(store, clock)
        return create_app(core, store, HttpSettings(**values), clock)  # type: ignore[arg-type]

    return make


@pytest.fixture
def api(make_app: AppFactory, tokens: Tokens) -> Iterator[Client]:
    """A client of the served app, with the admin token."""
    with served(make_app()) as port:
        yield Client(port, tokens.admin)
