"""What both middlewares share: timing a request and handing its record to the sink,
without ever letting a failure of ours reach the dealer's app."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from agent.aggregate import MAX_ERROR_CHARS, RequestRecord
from agent.instrument.routes import normalize_method
from agent.instrument.sink import Sink, default_sink
from dealerpulse.clock import Clock, unix_ms
from dealerpulse.config import redact_url

logger = logging.getLogger(__name__)


class PerfCounterClock:
    """The system clock, with perf_counter (the finest timer) for durations."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.perf_counter()


def describe_error(exc: BaseException) -> str:
    """'ValueError: bad vin' with database passwords masked, cut to fit a record."""
    try:
        message = f"{type(exc).__name__}: {exc}"
    except Exception:  # a __str__ that raises
        message = type(exc).__name__
    return redact_url(message)[:MAX_ERROR_CHARS]


class Recorder:
    """Builds one RequestRecord per finished request and offers it to the sink."""

    def __init__(self, sink: Sink | None, clock: Clock | None) -> None:
        self._sink = sink if sink is not None else default_sink()
        self._clock = clock or PerfCounterClock()
        self._lock = threading.Lock()
        self._failures = 0

    @property
    def failures(self) -> int:
        """Requests we failed to record because of an error of ours (never raised)."""
        with self._lock:
            return self._failures

    def start(self) -> float:
        return self._clock.monotonic()

    def finish(
        self,
        started: float,
        route_of: Callable[[], str],
        method: str,
        status_code: int,
        error: str,
    ) -> None:
        try:
            # Duration first: what the app took, not what our route lookup adds.
            duration_ms = max((self._clock.monotonic() - started) * 1000.0, 0.0)
            record = RequestRecord(
                route_of(),
                normalize_method(method),
                status_code,
                duration_ms,
                unix_ms(self._clock),
                error,
            )
            self._sink.offer(record)
        except Exception:
            if self._count_failure() == 1:
                logger.warning("DealerPulse could not record a request", exc_info=True)

    def _count_failure(self) -> int:
        with self._lock:
            self._failures += 1
            return self._failures
