"""The ingest writer's own SQLite connection, kept between its transactions.

Why: SQLite's page cache belongs to a connection. Taken from the pool for each
group, the writer's connection was handed to whoever asked next (the pool is
LIFO), so a Hello or a rollup shrank its 64 MiB cache to 4 MiB between two
groups and the writer read its hot set back from disk into fresh memory. Under
the soak (200 agents, a reconnect every 0.5 s) the collector's RSS swung by
60-70 MiB that way. Kept, the writer's connection loses its cache only when
another connection commits (WAL mode), and it keeps its size.

PostgreSQL's cache is the server's, so there every transaction takes a pooled
connection as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

logger = logging.getLogger(__name__)


class WriterConnections:
    """A connection per writer thread: kept on SQLite, taken from the pool elsewhere.

    A transaction that fails gives its connection back (the next one takes a
    fresh connection): after an error its state is not trusted.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._keep = engine.dialect.name == "sqlite"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._kept: set[Connection] = set()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        if not self._keep:
            with self._engine.connect() as connection:
                yield connection
            return
        connection = self._kept_connection()
        try:
            yield connection
        except BaseException:
            self._give_back(connection)
            raise

    def close(self) -> None:
        """Give every kept connection back to the pool (the writers have stopped)."""
        with self._lock:
            kept, self._kept = self._kept, set()
        for connection in kept:
            connection.close()

    def _kept_connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            connection = self._engine.connect()
            self._local.connection = connection
            with self._lock:
                self._kept.add(connection)
        return connection

    def _give_back(self, connection: Connection) -> None:
        self._local.connection = None
        with self._lock:
            self._kept.discard(connection)
        try:
            connection.close()
        except Exception:  # the transaction's error is the one to report
            logger.warning("closing the writer's failed connection failed", exc_info=True)
