"""Run the Alembic migrations in code, on one connection, under a lock.

Several collectors may start at once against one PostgreSQL: a transaction
level advisory lock makes them migrate one after the other (the later ones
find the schema current). On SQLite, BEGIN IMMEDIATE does the same.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, text

from collector.store.engine import WRITE_OPTION, translated_errors
from collector.store.errors import MigrationError, StoreUnavailable

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; this one spells "dpmigrat" in ASCII.
_ADVISORY_LOCK_KEY = 0x64706D6967726174


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest schema version the code knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise MigrationError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema version of the database (None before the first migration)."""
    with translated_errors("reading the schema version"), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, attempts: int = 5) -> None:
    """Bring the database to :func:`head_revision` (idempotent, safe to race).

    On SQLite, a collector opening a brand-new file while another migrates it
    can be told "database is locked" before any busy handler runs (switching
    the file to WAL needs it alone); the migration is idempotent, so it is
    simply tried again, a bounded number of times.
    """
    for attempt in range(1, attempts + 1):
        try:
            _upgrade_once(engine)
            return
        except StoreUnavailable:
            if attempt == attempts or engine.dialect.name != "sqlite":
                raise
            logger.info("schema migration found the database locked; retrying (%s)", attempt)
            time.sleep(0.2 * 2**attempt)


def _upgrade_once(engine: Engine) -> None:
    config = _config()
    try:
        with translated_errors("migrating the schema"), engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY}
                    )
                before = MigrationContext.configure(connection).get_current_revision()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                after = MigrationContext.configure(connection).get_current_revision()
    except CommandError as error:
        raise MigrationError(f"migrating the schema failed: {error}") from error
    if before != after:
        logger.info("store schema migrated from %s to %s", before or "empty", after)
