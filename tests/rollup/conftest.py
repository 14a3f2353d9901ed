"""A SQLite-only store for tests whose subject does not depend on the backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from collector.store import SQLAlchemyMetricStore, open_store


@pytest.fixture
def sqlite_store(start_migrated: None, sqlite_url: str) -> Iterator[SQLAlchemyMetricStore]:
    opened = open_store(sqlite_url, pool_size=5)
    try:
        yield opened
    finally:
        opened.close()
