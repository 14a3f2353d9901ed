"""Giving freed heap memory back to the operating system (glibc's ``malloc_trim``).

Why the collector needs it: it allocates and frees a lot, in many threads
(gRPC decoding on the event loop, the group commit on the writer thread,
store reads on the default thread pool, SQLite's page caches). glibc keeps
what is freed in the arena of the thread that allocated it and gives memory
back to the system on its own only from the top of the main heap, so RSS
climbs although the live heaps (Python's, SQLite's) are flat. ``malloc_trim(0)``
walks every arena and returns its free pages (``madvise(MADV_DONTNEED)``).

On a C library without ``malloc_trim`` (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Any

from sqlalchemy import Engine, event

logger = logging.getLogger(__name__)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def can_release_free_memory() -> bool:
    """True where :func:`release_free_memory` does something (glibc)."""
    return _malloc_trim() is not None


def release_free_memory() -> bool:
    """Return the free pages of every malloc arena to the system.

    True when some memory was released; False when there was none to release
    or the C library has no ``malloc_trim``.
    """
    trim = _malloc_trim()
    return trim is not None and trim(0) == 1


class ThrottledRelease:
    """:func:`release_free_memory` at most once per ``every_s`` seconds, from any thread.

    A trim walks every arena under its lock, so it is spread out in time
    instead of following each transaction.
    """

    def __init__(
        self,
        every_s: float,
        monotonic: Callable[[], float] = time.monotonic,
        release: Callable[[], bool] = release_free_memory,
    ) -> None:
        if not every_s > 0:
            raise ValueError(f"every_s must be a positive number of seconds, not {every_s!r}")
        self._every_s = every_s
        self._monotonic = monotonic
        self._release = release
        self._lock = threading.Lock()
        self._last = monotonic()
        self.releases = 0

    def maybe_release(self) -> None:
        now = self._monotonic()
        with self._lock:
            if now - self._last < self._every_s:
                return
            self._last = now
            self.releases += 1
        started = time.perf_counter()
        released = self._release()
        logger.debug(
            "malloc_trim: %s in %.1f ms",
            "released memory" if released else "nothing to release",
            (time.perf_counter() - started) * 1000,
        )


def install_memory_release(
    engine: Engine,
    every_s: float,
    monotonic: Callable[[], float] = time.monotonic,
    release: Callable[[], bool] = release_free_memory,
) -> ThrottledRelease | None:
    """Trim the malloc arenas when a connection goes back to the pool, at most every ``every_s``.

    Tied to the pool because the store is where the churn is: the group
    commit's rows and SQLite's page caches (in WAL mode a connection drops its
    whole cache when another one has committed since its last transaction).
    ``every_s`` 0 switches it off. The trim runs on the thread that returned
    the connection, after the transaction has ended.
    """
    if every_s == 0 or not can_release_free_memory():
        return None
    throttle = ThrottledRelease(every_s, monotonic, release)

    def on_checkin(_dbapi_connection: Any, _record: Any) -> None:
        throttle.maybe_release()

    event.listen(engine, "checkin", on_checkin)
    return throttle
