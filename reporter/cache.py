"""Result caches of the reporter: in-process (TTL + bounded LRU) or Redis (shared).

A cached answer is served only while it is fresh:

- never older than its TTL (which suits the range: seconds for real time,
  minutes for 30 days; see :class:`reporter.settings.CacheTtls`);
- and the dealer's data has not moved since it was computed. Every entry
  remembers the dealer's *watermark* (the newest ``agents.last_seen``, one
  indexed query) at computation. When the watermark has moved, a real-time
  entry is recomputed at once, and a long-range entry is kept only while
  younger than ``min_fresh_s`` (new data barely changes 30 days of figures,
  and recomputing them on every agent batch would defeat the cache).

Ages come from the injected clock's wall time, so that several reporters
sharing one Redis agree on them, and tests drive expiry with a FakeClock.
Redis also expires keys itself after the TTL, so that nothing lingers.

Single flight: concurrent misses for the same (kind, key) in one process
compute once. The first caller computes; the others wait for it and take its
answer if it is fresh for them too (the same rules, with their own watermark:
an answer computed before data they have seen is not taken, they compute
their own). When the computation raises, every waiter gets that error: a
failing database is not asked again by each of a hundred waiting requests.
The flight is per process (also with Redis: reporters sharing one Redis
each compute once per key, not once overall).

Values: the in-process cache keeps the frozen model objects themselves; Redis
keeps JSON (protobuf's JSON mapping, :func:`reporter.codec.to_json`) in an
envelope, and never unpickles anything it reads.
"""

from __future__ import annotations

import json
import logging
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from dealerpulse.clock import Clock

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
ENVELOPE_VERSION = 1


@dataclass(frozen=True, slots=True)
class CacheEntry:
    value: Any
    # Clock wall time of the computation, as unix seconds.
    stored_at: float
    # The dealer's data watermark at computation (unix seconds; None: no data yet).
    watermark: float | None


@dataclass(frozen=True, slots=True)
class Freshness:
    """How long one kind of answer may be served from the cache."""

    ttl_s: float
    # While younger than this, an entry survives new data (0: new data invalidates it).
    min_fresh_s: float = 0.0


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    # Found, but older than its TTL.
    expired: int = 0
    # Found, but the dealer's data moved since.
    invalidated: int = 0
    stores: int = 0
    # The backend failed (Redis down): the answer was computed instead.
    errors: int = 0
    # Misses that took the answer another caller was computing (single flight).
    shared: int = 0


class _Flight:
    """One computation in progress, and what it ended with, for the callers waiting on it."""

    __slots__ = ("done", "entry", "error", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.entry: CacheEntry | None = None
        self.error: Exception | None = None
        self.waiters = 0


class ResultCache(ABC):
    """Look up an answer or compute and remember it; see the module doc for freshness."""

    # Lookups stay in memory (no I/O): safe to try on an event loop.
    in_memory = False

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._counts = {name: 0 for name in CacheStats.__dataclass_fields__}
        self._counts_lock = threading.Lock()
        # (kind, key) -> the computation in progress; removed as it ends.
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._flights_lock = threading.Lock()

    def get_or_compute(
        self,
        kind: str,
        key: str,
        freshness: Freshness,
        watermark: float | None,
        compute: Callable[[], _T],
    ) -> _T:
        """The cached answer for (kind, key) if fresh, else ``compute()`` (remembered).

        Concurrent misses for the same (kind, key) share one ``compute()``.
        """
        now = self._clock.now().timestamp()
        entry = self._safe_fetch(kind, key)
        if entry is not None:
            verdict = _verdict(entry, now, freshness, watermark)
            self._count(verdict)
            if verdict == "hits":
                value: _T = entry.value
                return value
        else:
            self._count("misses")
        flight, leading = self._join((kind, key))
        if leading:
            # When and against which watermark the computation starts.
            started = CacheEntry(None, now, watermark)
            return self._lead(flight, kind, key, freshness, started, compute)
        return self._follow(flight, kind, key, freshness, watermark, compute)

    def fresh_entry(
        self, kind: str, key: str, freshness: Freshness, watermark: float | None
    ) -> CacheEntry | None:
        """The entry of (kind, key) when it may be served now (counted as a hit), else None
        (nothing counted: the caller goes on to :meth:`get_or_compute`)."""
        entry = self._safe_fetch(kind, key)
        if entry is None:
            return None
        if _verdict(entry, self._clock.now().timestamp(), freshness, watermark) != "hits":
            return None
        self._count("hits")
        return entry

    def in_flight(self, kind: str, key: str) -> int | None:
        """How many callers wait on the computation of (kind, key); None: none in progress."""
        with self._flights_lock:
            flight = self._flights.get((kind, key))
            return None if flight is None else flight.waiters

    def in_flight_keys(self) -> int:
        """How many computations are in progress (0 when idle: nothing is left behind)."""
        with self._flights_lock:
            return len(self._flights)

    def _join(self, flight_key: tuple[str, str]) -> tuple[_Flight, bool]:
        """The flight of ``flight_key`` and whether this caller leads (computes) it."""
        with self._flights_lock:
            flight = self._flights.get(flight_key)
            if flight is not None:
                flight.waiters += 1
                return flight, False
            flight = self._flights[flight_key] = _Flight()
            return flight, True

    def _lead(
        self,
        flight: _Flight,
        kind: str,
        key: str,
        freshness: Freshness,
        started: CacheEntry,
        compute: Callable[[], _T],
    ) -> _T:
        """Compute, remember, and hand the outcome to the waiters (also when it raises)."""
        try:
            value = compute()
            flight.entry = CacheEntry(value, started.stored_at, started.watermark)
            self._safe_store(kind, key, flight.entry, freshness.ttl_s)
            return value
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            # Stored before the flight ends: a later caller finds the entry instead.
            with self._flights_lock:
                del self._flights[(kind, key)]
            flight.done.set()

    def _follow(
        self,
        flight: _Flight,
        kind: str,
        key: str,
        freshness: Freshness,
        watermark: float | None,
        compute: Callable[[], _T],
    ) -> _T:
        """The leader's answer when it is fresh for this caller too, else its own."""
        flight.done.wait()
        if flight.error is not None:
            raise flight.error
        now = self._clock.now().timestamp()
        if flight.entry is not None and _verdict(flight.entry, now, freshness, watermark) == "hits":
            self._count("shared")
            value: _T = flight.entry.value
            return value
        # The leader read an older watermark than this caller (or was interrupted).
        value = compute()
        self._safe_store(kind, key, CacheEntry(value, now, watermark), freshness.ttl_s)
        return value

    def _safe_store(self, kind: str, key: str, entry: CacheEntry, ttl_s: float) -> None:
        try:
            self._store(kind, key, entry, ttl_s)
            self._count("stores")
        except Exception as exc:  # a cache that fails must not fail the answer
            self._count("errors")
            logger.warning("cannot store %s in the result cache: %s", kind, exc)

    def stats(self) -> CacheStats:
        with self._counts_lock:
            return CacheStats(**self._counts)

    def close(self) -> None:  # noqa: B027 -- optional hook: most caches hold nothing
        """Release connections; the default holds none."""

    def _safe_fetch(self, kind: str, key: str) -> CacheEntry | None:
        try:
            return self._fetch(kind, key)
        except Exception as exc:
            self._count("errors")
            logger.warning("cannot read %s from the result cache: %s", kind, exc)
            return None

    def _count(self, name: str) -> None:
        with self._counts_lock:
            self._counts[name] += 1

    @abstractmethod
    def _fetch(self, kind: str, key: str) -> CacheEntry | None: ...

    @abstractmethod
    def _store(self, kind: str, key: str, entry: CacheEntry, ttl_s: float) -> None: ...


def _verdict(entry: CacheEntry, now: float, freshness: Freshness, watermark: float | None) -> str:
    age = now - entry.stored_at
    if age >= freshness.ttl_s or age < 0:
        return "expired"
    if watermark != entry.watermark and age >= freshness.min_fresh_s:
        return "invalidated"
    return "hits"


class InProcessResultCache(ResultCache):
    """A dict in this process: TTL by the clock, at most ``max_entries`` (least recently
    used dropped first). Thread-safe."""

    in_memory = True

    def __init__(self, clock: Clock, max_entries: int = 1024) -> None:
        super().__init__(clock)
        if max_entries <= 0:
            raise ValueError(f"cache_max_entries must be positive, got {max_entries}")
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, str], tuple[CacheEntry, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _fetch(self, kind: str, key: str) -> CacheEntry | None:
        now = self._clock.now().timestamp()
        with self._lock:
            found = self._entries.get((kind, key))
            if found is None:
                return None
            entry, expires_at = found
            if now >= expires_at:
                del self._entries[(kind, key)]
            else:
                self._entries.move_to_end((kind, key))
            return entry

    def _store(self, kind: str, key: str, entry: CacheEntry, ttl_s: float) -> None:
        with self._lock:
            self._entries[(kind, key)] = (entry, entry.stored_at + ttl_s)
            self._entries.move_to_end((kind, key))
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


Encoder = Callable[[str, Any], str]
Decoder = Callable[[str, str | bytes], Any]


class RedisResultCache(ResultCache):
    """Entries in Redis, shared by every reporter that uses the same URL and prefix.

    ``client`` is a ``redis.Redis``; values go through ``encode``/``decode``
    (by default the protobuf JSON of :mod:`reporter.codec`). A Redis that
    fails is logged and bypassed: answers are computed instead.
    """

    def __init__(
        self,
        client: Any,
        clock: Clock,
        prefix: str = "dealerpulse:reporter:",
        encode: Encoder | None = None,
        decode: Decoder | None = None,
    ) -> None:
        super().__init__(clock)
        if encode is None or decode is None:
            from reporter import codec

            encode, decode = encode or codec.to_json, decode or codec.from_json
        self._redis = client
        self._prefix = prefix
        self._encode, self._decode = encode, decode

    @classmethod
    def from_url(
        cls, url: str, clock: Clock, prefix: str = "dealerpulse:reporter:", timeout_s: float = 1.0
    ) -> RedisResultCache:
        import redis

        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        return cls(client, clock, prefix)

    def _key(self, kind: str, key: str) -> str:
        return f"{self._prefix}{kind}:{key}"

    def _fetch(self, kind: str, key: str) -> CacheEntry | None:
        raw = self._redis.get(self._key(kind, key))
        if raw is None:
            return None
        try:
            envelope = json.loads(raw)
            if envelope.get("v") != ENVELOPE_VERSION:
                return None  # written by another version: recompute
            return CacheEntry(
                value=self._decode(kind, envelope["value"]),
                stored_at=float(envelope["stored_at"]),
                watermark=None if envelope["watermark"] is None else float(envelope["watermark"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring an unreadable %s entry in Redis: %s", kind, exc)
            return None

    def _store(self, kind: str, key: str, entry: CacheEntry, ttl_s: float) -> None:
        envelope = {
            "v": ENVELOPE_VERSION,
            "stored_at": entry.stored_at,
            "watermark": entry.watermark,
            "value": self._encode(kind, entry.value),
        }
        self._redis.set(self._key(kind, key), json.dumps(envelope), px=max(1, int(ttl_s * 1000)))

    def close(self) -> None:
        self._redis.close()
