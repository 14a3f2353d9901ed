"""The SQLAlchemy store: schema, Alembic migrations, the batch writer and reads.

Import :func:`open_store` to get a migrated, ready store::

    store = open_store("sqlite:///var/lib/dealerpulse/dealerpulse.db")

See ``docs/notes/store.md`` for the table layout and the measured reasons behind it.
"""

from __future__ import annotations

from collector.store.errors import (
    AgentConflict,
    MigrationError,
    StoreUnavailable,
    StoreWriteError,
)
from collector.store.records import EndpointRecord
from collector.store.sketch import sketch_from_json, sketch_to_json
from collector.store.store import SQLAlchemyMetricStore, open_store

__all__ = [
    "AgentConflict",
    "EndpointRecord",
    "MigrationError",
    "SQLAlchemyMetricStore",
    "StoreUnavailable",
    "StoreWriteError",
    "open_store",
    "sketch_from_json",
    "sketch_to_json",
]
