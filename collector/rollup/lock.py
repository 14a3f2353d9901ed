"""One maintenance run at a time, across collectors: the rollup and retention lock.

Both jobs take the same lock, so they never overlap either: a rollup that
recomputed a minute while retention deleted its raw rows would wipe it.

PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) on a
connection held for the whole run. A run spans many short transactions, so a
transaction-level lock would not do; a collector that dies loses its
connection and with it the lock. A busy lock means another collector is at
work: the run is skipped, not queued.

SQLite: a lock per database file in this process. Only one process of a
collector runs scheduled jobs (``run_jobs``), and SQLite is the single-host
setup, so that is enough there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text

logger = logging.getLogger(__name__)

# Any constant works; this one spells "dpmaintn" in ASCII.
MAINTENANCE_LOCK_KEY = 0x64706D61696E746E

_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()


def _local_lock(engine: Engine) -> threading.Lock:
    key = engine.url.render_as_string(hide_password=True)
    with _local_guard:
        return _local_locks.setdefault(key, threading.Lock())


@contextmanager
def maintenance_lock(engine: Engine) -> Iterator[bool]:
    """Yields True while this process holds the lock, False when another holder has it."""
    if engine.dialect.name != "postgresql":
        lock = _local_lock(engine)
        if not lock.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
        return
    with engine.connect() as connection:
        held = bool(
            connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": MAINTENANCE_LOCK_KEY}
            ).scalar_one()
        )
        connection.commit()
        if not held:
            yield False
            return
        try:
            yield True
        finally:
            try:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": MAINTENANCE_LOCK_KEY}
                )
                connection.commit()
            except Exception:  # the server frees it with the session; do not pool a holder
                logger.warning("could not release the maintenance lock; dropping the connection")
                connection.invalidate()
