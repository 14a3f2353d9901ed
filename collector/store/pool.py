"""Connection pool options shared by collector and reporter, and the slow-query log.

The seed's pool: up to 20 connections, 30 s idle timeout, 2 s connect
timeout. ``dealerpulse collector`` and ``dealerpulse reporter`` take them as
flags, environment variables or config file keys (flag > env > file >
default, :data:`POOL_OPTIONS`) and hand a :class:`PoolSettings` to the store;
a store opened without one reads the environment (a ``pool_size`` argument
stands in for an unset DB_POOL_SIZE). How they map onto SQLAlchemy's QueuePool:

- ``db_pool_size`` (``DB_POOL_SIZE``, 20): connections the pool keeps open
  (``pool_size``). PostgreSQL engines may open as many again under a burst
  (``max_overflow``); those are closed when returned.
- ``db_pool_idle_timeout_s`` (``DB_POOL_IDLE_TIMEOUT_S``, 30): a pooled
  connection unused for longer is closed and replaced when it is next checked
  out (a checkout event; SQLAlchemy has no idle timer of its own). This is
  *not* ``pool_recycle``, which counts from when a connection was opened,
  however busy it is since; nor ``pool_timeout``, how long a checkout waits
  for a free connection when all are in use (SQLAlchemy's 30 s is kept).
  0 switches the idle check off.
  The pool hands out the most recently returned connection first (LIFO): the
  few connections a steady load needs stay hot, and the others stay idle until
  the idle check closes them. A FIFO pool would cycle through all of them, so
  every connection would grow its own page cache and prepared statements.
- ``db_connect_timeout_s`` (``DB_CONNECT_TIMEOUT_S``, 2): how long opening a
  PostgreSQL connection may take (libpq ``connect_timeout``, whole seconds,
  at least 2 by libpq's rule). SQLite opens a local file and has none.
- ``slow_query_ms`` (``SLOW_QUERY_MS``, 200): any statement that runs longer
  is logged as a WARNING with its duration and the first 200 characters of
  its SQL, never its parameters (they may hold tokens). 0 switches it off.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, event, exc

from collector.pool_settings import POOL_OPTIONS, PoolSettings

__all__ = [
    "POOL_OPTIONS",
    "PoolSettings",
    "connect_args",
    "install_idle_timeout",
    "install_slow_query_log",
]

logger = logging.getLogger(__name__)

SQL_SHOWN_CHARS = 200
_STARTED = "dealerpulse_query_started"
_RETURNED_AT = "dealerpulse_returned_at"


def connect_args(backend: str, settings: PoolSettings) -> dict[str, Any]:
    """Driver arguments for the connect timeout (PostgreSQL only)."""
    if backend != "postgresql":
        return {}
    # libpq takes whole seconds and treats anything below 2 as 2.
    return {"connect_timeout": max(2, math.ceil(settings.connect_timeout_s))}


def install_idle_timeout(
    engine: Engine, idle_timeout_s: float, monotonic: Callable[[], float] = time.monotonic
) -> None:
    """Close pooled connections idle longer than ``idle_timeout_s`` when next checked out."""
    if idle_timeout_s <= 0:
        return

    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_RETURNED_AT] = monotonic()

    def on_checkout(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.pop(_RETURNED_AT, None)
        if returned is not None and monotonic() - returned > idle_timeout_s:
            # The pool closes this connection and retries the checkout with a new one.
            raise exc.DisconnectionError(f"connection idle for more than {idle_timeout_s:g} s")

    event.listen(engine, "checkin", on_checkin)
    event.listen(engine, "checkout", on_checkout)


def install_slow_query_log(
    engine: Engine, threshold_ms: float, monotonic: Callable[[], float] = time.monotonic
) -> None:
    """Log a WARNING naming every statement slower than ``threshold_ms``."""
    if threshold_ms <= 0:
        return

    def before(conn: Any, _cursor: Any, _statement: str, *_args: Any) -> None:
        conn.info.setdefault(_STARTED, []).append(monotonic())

    def after(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        started = conn.info.get(_STARTED)
        if not started:
            return
        elapsed_ms = (monotonic() - started.pop()) * 1000
        if elapsed_ms > threshold_ms:
            logger.warning(
                "slow query: %.0f ms (over %g ms): %s",
                elapsed_ms,
                threshold_ms,
                shown_sql(statement),
            )

    def failed(context: Any) -> None:
        # A statement that raised never reaches "after": drop its start time.
        started = context.connection.info.get(_STARTED) if context.connection else None
        if started:
            started.pop()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", failed)


def shown_sql(statement: str) -> str:
    """The statement on one line, cut to :data:`SQL_SHOWN_CHARS` (no parameters exist in it:
    SQLAlchemy sends them separately)."""
    flat = re.sub(r"\s+", " ", statement).strip()
    return flat if len(flat) <= SQL_SHOWN_CHARS else flat[:SQL_SHOWN_CHARS] + "..."
