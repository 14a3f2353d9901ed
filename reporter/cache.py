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


class ResultCache(ABC):
    """Look up an answer or compute and remember it; see the module doc for freshness."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._counts = {name: 0 for name in CacheStats.__dataclass_fields__}
        self._counts_lock = threading.Lock()

    def get_or_compute(
        self,
        kind: str,
        key: str,
        freshness: Freshness,
        watermark: float | None,
        compute: Callable[[], _T],
    ) -> _T:
        """The cached answer for (kind, key) if fresh, else ``compute()`` (remembered)."""
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
        value = compute()
        stored = CacheEntry(value, now, watermark)
        try:
            self._store(kind, key, stored, freshness.ttl_s)
            self._count("stores")
        except Exception as exc:  # a cache that fails must not fail the answer
            self._count("errors")
            logger.warning("cannot store %s in the result cache: %s", kind, exc)
        return value

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
