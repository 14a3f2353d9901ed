"""Migration 0002 on a database holding the seed's alerts (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, text

from collector.store.engine import create_store_engine
from collector.store.migrate import MIGRATIONS_DIR

from .factories import NOW


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    created = create_store_engine(db_url, pool_size=2)
    try:
        yield created
    finally:
        created.dispose()


def _migrate(engine: Engine, target: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, target)


def test_seed_alerts_become_episodes_and_survive_a_downgrade(engine: Engine) -> None:
    _migrate(engine, "0001")
    insert = text(
        "INSERT INTO system_alerts (dealer_id, type, severity, message, resolved, created_at) "
        "VALUES (NULL, 'cpu', 'warning', :message, :resolved, :at)"
    )
    at = NOW.replace(tzinfo=None) if engine.dialect.name == "sqlite" else NOW
    with engine.begin() as connection:
        connection.execute(insert, {"message": "old and done", "resolved": True, "at": at})
        connection.execute(insert, {"message": "still open", "resolved": False, "at": at})

    _migrate(engine, "head")
    query = text("SELECT message, state, rule_id FROM system_alerts ORDER BY id")
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(query)]
    assert rows == [("old and done", "resolved", None), ("still open", "firing", None)]

    _migrate(engine, "0001", down=True)
    with engine.connect() as connection:
        messages = list(connection.scalars(text("SELECT message FROM system_alerts ORDER BY id")))
        tables = set(inspect(connection).get_table_names())
    assert messages == ["old and done", "still open"]
    assert not tables & {"alert_rules", "alert_states", "notification_outbox", "silences"}
