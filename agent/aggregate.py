"""Per-endpoint aggregation of API requests into one EndpointStat per interval.

Records arrive from the intake's listener thread; the runner drains once per
interval from its own thread, so every touch of the series happens under one
lock. Cardinality is bounded: past ``max_endpoints`` distinct (route, method)
pairs in an interval, further pairs fold into one overflow series, so a route
template gone wrong (raw ids in paths) cannot exhaust the agent's memory.
The limit resets with every drain, so a new endpoint gets its own series in the
next interval.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field

from agent.abc import EndpointSource
from dealerpulse.clock import Clock, SystemClock, unix_ms
from dealerpulse.model import EndpointStat
from dealerpulse.sketch import DEFAULT_RELATIVE_ACCURACY, DDSketch

logger = logging.getLogger(__name__)

OVERFLOW_ROUTE = "__overflow__"
OVERFLOW_METHOD = "ANY"
# A framework routed the request but no route matched (404s of scanners...).
UNMATCHED_ROUTE = "__unmatched__"
MAX_ROUTE_CHARS = 512
MAX_METHOD_CHARS = 16
MAX_ERROR_CHARS = 1024
DEFAULT_MAX_ENDPOINTS = 500
# An endpoint unseen for this long gives its place under the limit to a new one.
DEFAULT_ENDPOINT_IDLE_MS = 3_600_000


class InvalidRecord(ValueError):
    """A request record with a field out of range; the message names the field."""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One finished API request, as the middleware saw it."""

    route: str
    method: str
    status_code: int
    duration_ms: float
    time_ms: int
    error: str = ""

    def __post_init__(self) -> None:
        _check_text("route", self.route, MAX_ROUTE_CHARS)
        _check_text("method", self.method, MAX_METHOD_CHARS)
        if not self.method.isascii() or not self.method.isupper():
            raise InvalidRecord(f"method must be upper-case ASCII, got {self.method!r}")
        if type(self.status_code) is not int or not 100 <= self.status_code <= 599:
            raise InvalidRecord(f"status_code must be 100..599, got {self.status_code!r}")
        if type(self.duration_ms) not in (int, float) or not 0 <= self.duration_ms < math.inf:
            raise InvalidRecord(
                f"duration_ms must be a finite number >= 0, got {self.duration_ms!r}"
            )
        if type(self.time_ms) is not int or self.time_ms < 0:
            raise InvalidRecord(f"time_ms must be a whole number >= 0, got {self.time_ms!r}")
        if not isinstance(self.error, str) or len(self.error) > MAX_ERROR_CHARS:
            raise InvalidRecord(f"error must be a string of at most {MAX_ERROR_CHARS} characters")

    @property
    def is_error(self) -> bool:
        """5xx answers and requests that raised."""
        return self.status_code >= 500 or bool(self.error)

    @property
    def is_client_error(self) -> bool:
        return 400 <= self.status_code < 500 and not self.error


def _check_text(name: str, value: object, limit: int) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidRecord(f"{name} must be a non-empty string, got {value!r}")
    if len(value) > limit:
        raise InvalidRecord(f"{name} is {len(value)} characters long, the limit is {limit}")
    if not value.isprintable():
        raise InvalidRecord(f"{name} contains control characters: {value!r}")


@dataclass(slots=True)
class _Series:
    sketch: DDSketch
    errors: int = 0
    client_errors: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    last_error: str = ""
    last_error_ms: int = -1

    def add(self, record: RequestRecord) -> None:
        self.sketch.add(record.duration_ms)
        self.status_counts[record.status_code] = self.status_counts.get(record.status_code, 0) + 1
        if record.is_error:
            self.errors += 1
            if record.time_ms >= self.last_error_ms:
                self.last_error_ms = record.time_ms
                self.last_error = record.error or f"HTTP {record.status_code}"
        elif record.is_client_error:
            self.client_errors += 1

    def stat(
        self, route: str, method: str, start_ms: int, end_ms: int, source: str
    ) -> EndpointStat:
        sketch = self.sketch
        return EndpointStat(
            route=route,
            method=method,
            start_ms=start_ms,
            end_ms=end_ms,
            count=sketch.count,
            errors=self.errors,
            client_errors=self.client_errors,
            duration_sum_ms=sketch.sum,
            duration_min_ms=sketch.min,
            duration_max_ms=sketch.max,
            status_counts=tuple(sorted(self.status_counts.items())),
            last_error=self.last_error,
            last_error_ms=max(self.last_error_ms, 0),
            latency=sketch.to_model(),
            source=source,
        )


class EndpointAggregator(EndpointSource):
    """Aggregates RequestRecords per (route, method); thread-safe."""

    name = "api"

    def __init__(
        self,
        max_endpoints: int = DEFAULT_MAX_ENDPOINTS,
        clock: Clock | None = None,
        *,
        source: str = "middleware",
        relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
        endpoint_idle_ms: int = DEFAULT_ENDPOINT_IDLE_MS,
    ) -> None:
        if type(max_endpoints) is not int or max_endpoints < 1:
            raise ValueError(f"max_endpoints must be a whole number >= 1, got {max_endpoints!r}")
        self._max_endpoints = max_endpoints
        self._source = source
        self._accuracy = relative_accuracy
        DDSketch(relative_accuracy)  # fail now, not on the first record, if it is invalid
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}
        # The endpoints admitted under the limit, with when each was last seen. The
        # limit holds across intervals: an app whose routes are raw paths must not
        # add max_endpoints new series to the database every interval.
        self._admitted: dict[tuple[str, str], int] = {}
        self._endpoint_idle_ms = endpoint_idle_ms
        self._start_ms = unix_ms(clock or SystemClock())
        self._overflow_records = 0
        self._records = 0

    @property
    def overflow_records(self) -> int:
        """Records folded into the overflow series since start (cumulative)."""
        with self._lock:
            return self._overflow_records

    @property
    def records(self) -> int:
        """Records aggregated since start (cumulative)."""
        with self._lock:
            return self._records

    def record(self, record: RequestRecord) -> None:
        key = (record.route, record.method)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._new_series(key)
            series.add(record)
            self._records += 1

    def drain(self, now_ms: int) -> list[EndpointStat]:
        """Statistics of [previous drain, now_ms), and a fresh interval."""
        with self._lock:
            series, self._series = self._series, {}
            start_ms, self._start_ms = self._start_ms, now_ms
            self._forget_idle(series, now_ms)
        end_ms = max(now_ms, start_ms)
        return [
            one.stat(route, method, start_ms, end_ms, self._source)
            for (route, method), one in sorted(series.items())
        ]

    def _forget_idle(self, drained: dict[tuple[str, str], _Series], now_ms: int) -> None:
        """Called with the lock held: refresh what was seen, drop what went idle."""
        for key in drained:
            if key in self._admitted:
                self._admitted[key] = now_ms
        horizon = now_ms - self._endpoint_idle_ms
        for key in [k for k, seen in self._admitted.items() if seen < horizon]:
            del self._admitted[key]

    def _new_series(self, key: tuple[str, str]) -> _Series:
        """Called with the lock held."""
        overflow_key = (OVERFLOW_ROUTE, OVERFLOW_METHOD)
        if key not in self._admitted and len(self._admitted) < self._max_endpoints:
            self._admitted[key] = self._start_ms
        if key not in self._admitted:
            if not self._overflow_records:
                logger.warning(
                    "more than %s distinct endpoints in one interval; folding the rest "
                    "into %s (are route templates raw paths?)",
                    self._max_endpoints,
                    OVERFLOW_ROUTE,
                )
            self._overflow_records += 1
            key = overflow_key
            existing = self._series.get(key)
            if existing is not None:
                return existing
        series = _Series(DDSketch(self._accuracy))
        self._series[key] = series
        return series
