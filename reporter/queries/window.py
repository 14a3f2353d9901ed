"""The steps a query reads: bucket alignment, point times, and the Series they make."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import repeat

import numpy as np
import numpy.typing as npt

from dealerpulse.clock import from_unix_ms, to_unix_ms
from reporter.model import Point, RangeError, Series, TimeRange

Floats = npt.NDArray[np.float64]
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
MAX_POINTS = 10_000


@dataclass(frozen=True, slots=True)
class Window:
    """Steps of ``step_ms`` from ``start_ms`` (range start floored to the step) to ``end_ms``."""

    step_ms: int
    start_ms: int
    end_ms: int
    hourly: bool  # whole-hour steps: the 1-hour rollups serve them
    # The step starts as datetimes, made once: thousands of points share them.
    moments: tuple[datetime, ...] = field(default=(), compare=False)

    @property
    def steps(self) -> int:
        return -(-(self.end_ms - self.start_ms) // self.step_ms)

    @property
    def minutes(self) -> float:
        return (self.end_ms - self.start_ms) / 60_000

    def minutes_per_step(self) -> Floats:
        """Minutes each step covers (the last one may end early, at the range end)."""
        starts = self.start_ms + self.step_ms * np.arange(self.steps, dtype=np.float64)
        ends = np.minimum(starts + self.step_ms, self.end_ms)
        minutes: Floats = (ends - starts) / 60_000
        return minutes


def window_of(time_range: TimeRange, step: timedelta) -> Window:
    """The buckets a range reads; RangeError names a step that cannot be served."""
    if step <= timedelta(0) or step % MINUTE:
        raise RangeError(f"step {step} must be a positive whole number of minutes")
    step_ms = int(step / timedelta(milliseconds=1))
    start_ms = to_unix_ms(time_range.start)
    start_ms -= start_ms % step_ms
    end_ms = to_unix_ms(time_range.end)
    steps = -(-(end_ms - start_ms) // step_ms)
    if steps > MAX_POINTS:
        raise RangeError(
            f"step {step} over {time_range.duration} makes {steps} points "
            f"(at most {MAX_POINTS}); use a longer step"
        )
    moments = tuple(from_unix_ms(start_ms + i * step_ms) for i in range(steps))
    return Window(step_ms, start_ms, end_ms, hourly=not step % HOUR, moments=moments)


def series_of(
    name: str, unit: str, step: timedelta, window: Window, values: Sequence[float | None]
) -> Series:
    if len(values) != len(window.moments):
        raise ValueError(f"series {name}: {len(values)} values for {len(window.moments)} steps")
    return Series(name=name, unit=unit, step=step, points=points_of(window.moments, values))


# Point is a frozen dataclass: its __init__ goes through object.__setattr__ per
# field, about 1.6 us a point, and a month of analytics holds ~35k points. The
# slots' own descriptors fill the same fields four times faster.
_new_object = object.__new__
_set_time: Callable[[Point, datetime], None] = vars(Point)["time"].__set__
_set_value: Callable[[Point, float | None], None] = vars(Point)["value"].__set__


def points_of(moments: Sequence[datetime], values: Sequence[float | None]) -> tuple[Point, ...]:
    """``tuple(map(Point, moments, values))``, equal to it, built in bulk."""
    points = list(map(_new_object, repeat(Point, len(moments))))
    # any() drains each map (the setters return None) without a Python loop.
    any(map(_set_time, points, moments))
    any(map(_set_value, points, values))
    return tuple(points)


def ratio(top: Floats, bottom: Floats, present: npt.NDArray[np.bool_]) -> list[float | None]:
    """``top / bottom`` where ``present``, else None; built in C through an object array."""
    values = np.full(top.shape, None, dtype=object)
    values[present] = top[present] / bottom[present]
    result: list[float | None] = values.tolist()
    return result


class _GcPause:
    """The collector is off while any thread is inside :func:`gc_paused`.

    Counted under a lock: with a plain "disable, and enable again if it was
    enabled", two threads interleaving (one reading "disabled" while the other
    is inside, the other enabling before the first disables) leave it off for
    good, and answers are computed on several worker threads at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._was_enabled = False

    def enter(self) -> None:
        with self._lock:
            if self._inside == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._inside += 1

    def leave(self) -> None:
        with self._lock:
            self._inside -= 1
            if self._inside == 0 and self._was_enabled:
                gc.enable()


_GC_PAUSE = _GcPause()


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: an answer allocates ~35k points, which
    would run it dozens of times over every object of the process (~30 % of a
    month's query) to find no cycles. Reference counting still frees as usual.
    Thread-safe: the collector is on again once no thread is inside."""
    _GC_PAUSE.enter()
    try:
        yield
    finally:
        _GC_PAUSE.leave()
