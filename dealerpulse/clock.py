"""Injected time: everything that depends on time asks a Clock, never the OS.

Tests pass a FakeClock and drive minutes of behaviour in milliseconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for intervals)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that only moves when told to. Thread-safe."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._mono = 1000.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds


def to_unix_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: DealerPulse only handles timezone-aware UTC times")
    return int(moment.timestamp() * 1000)


def from_unix_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def unix_ms(clock: Clock) -> int:
    return to_unix_ms(clock.now())


async def sleep_until_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait up to timeout_s for event; True if it was set (a shutdown cuts waits short)."""
    try:
        await asyncio.wait_for(event.wait(), timeout=max(0.0, timeout_s))
    except TimeoutError:
        return False
    return True
